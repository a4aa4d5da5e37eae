"""Typed per-run records and per-item summaries (docs/architecture.md §9b).

A `Record` pairs the reference and the candidate on one item, prompt and seed; an `ItemSummary`
gathers an item's records. Both serialise to the plain JSON of items.jsonl and results.json's
"items"; fields that apply to one kind of item only (json validity, step labels) are left out of
the JSON when they do not apply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

VARIANTS = ("reference", "candidate")


def _plain(obj, renames: dict[str, str] | None = None) -> dict[str, Any]:
    """A dataclass as a dict in field order, optional fields that are None left out."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None and f.metadata.get("optional"):
            continue
        out[(renames or {}).get(f.name, f.name)] = value.to_json() if hasattr(value, "to_json") else value
    return out


OPTIONAL = {"optional": True}


@dataclass(frozen=True)
class RunSide:
    """One variant's retrieval, answer and scores on one run."""

    retrieved: list[str]           # section ids of the top-k chunks, best first
    answer: str
    tokens: int
    aborted: bool                  # an empty answer
    loop: bool                     # caught in a repetition loop
    ds_qr: float
    ds_qr_topk: float
    ds_ra: float
    coverage: float
    gap_chunk: float
    ds_aa: float
    ds_aq: float
    gap_answer: float
    cites_anchor: bool
    hit: bool
    json_valid: bool | None = dataclasses.field(default=None, metadata=OPTIONAL)         # json items
    step_labels: list[str] | None = dataclasses.field(default=None, metadata=OPTIONAL)   # long items
    prompt_tokens: int | None = dataclasses.field(default=None, metadata=OPTIONAL)      # the rendered prompt's length

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class RecordDrift:
    answer_ds: float               # ΔS(candidate answer, reference answer)
    same_top1: bool
    same_context: bool             # both prompts showed the same chunks in the same order
    ds_qr: float                   # |candidate − reference| of each figure
    coverage: float
    ds_aa: float

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Record:
    item: str
    kind: str
    prompt: int                    # 0 = the question, 1.. = its paraphrases
    seed: int
    question: str
    reference: RunSide
    candidate: RunSide
    drift: RecordDrift

    def side(self, variant: str) -> RunSide:
        return getattr(self, variant)

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class VariantSummary:
    """One variant on one item: λ across its runs and the means of the run figures."""

    lambda_label: str
    agreement: float
    hit_rate: float
    ds_qr: float
    ds_qr_topk: float
    ds_ra: float
    ds_aa: float
    ds_aq: float
    coverage: float
    gap_answer: float
    gap_chunk: float
    loop_rate: float
    retrieved: list[str]           # of the question under the first seed
    answer: str
    json_valid: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    bad_miss_rate: float = 0.0     # share of the runs that miss the anchor badly (the run-level ×)

    def to_json(self) -> dict[str, Any]:
        return _plain(self, {"lambda_label": "lambda"})


@dataclass(frozen=True)
class ItemDrift:
    answer_ds: float
    ds_qr: float
    coverage: float
    ds_aa: float
    answer_ds_ci: list[float]      # over the item's prompts and seeds
    seed_noise: float | None       # None where seeds cannot vary (one seed, greedy)
    answer_ds_excess: float
    matched_share: float = 1.0     # share of the runs whose prompts showed both variants the same chunks
    retrieval_answer_ds: float | None = dataclasses.field(default=None, metadata=OPTIONAL)  # over the other runs

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class ItemSummary:
    kind: str
    question: str
    reference: VariantSummary
    candidate: VariantSummary
    drift: ItemDrift

    def side(self, variant: str) -> VariantSummary:
        return getattr(self, variant)

    def to_json(self) -> dict[str, Any]:
        return _plain(self)
