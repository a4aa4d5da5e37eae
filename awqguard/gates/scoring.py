"""Per-run, per-item and suite metrics for a paired reference/candidate run (docs/architecture.md §9).

Everything is measured with the measuring-stick embedder (always full precision), through a
`Stick` that embeds each distinct text once. The anchor is compared at evidence level: ΔS to an
anchor (or distractor) section is the smallest ΔS to the section or to any of its sentences, so a
one-sentence answer that states the anchor's fact scores as close to it (a short answer against a
whole section sits near 0.6 even when it is right).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from awqguard.gates import metrics as m
from awqguard.gates.chunker import section_token_span
from awqguard.gates.embedder import embed
from awqguard.gates.fixtures import Item, Suite

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CITATION = re.compile(r"\[([a-z0-9_.-]+#[a-z0-9-]+)\]")


def sentences(text: str) -> list[str]:
    """Sentences and lines of at least three words (headings and list markers stripped)."""
    out = []
    for piece in _SENTENCE.split(text):
        piece = piece.strip().lstrip("#*->0123456789. ").strip()
        if len(piece.split()) >= 3:
            out.append(piece)
    return out


def cited_sections(answer: str) -> list[str]:
    return _CITATION.findall(answer)


class Stick:
    """The measuring stick: embeddings of distinct texts, computed once, unit-normalised."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}

    def add(self, texts: Sequence[str]) -> None:
        new = sorted({t for t in texts if t not in self.vectors})
        for text, vec in zip(new, embed(self.embedder, new)):
            self.vectors[text] = vec

    def ds(self, a: str, b: str) -> float:
        return float(m.delta_s(self.vectors[a], self.vectors[b]))

    def answer_ds(self, a: str, b: str) -> float:
        """ΔS between two answers: 0 when equal, 1 when exactly one of them is empty."""
        if a == b:
            return 0.0
        return self.ds(a, b) if a and b else 1.0

    def ds_evidence(self, text: str, evidence: Sequence[str]) -> float:
        """Smallest ΔS from `text` to any piece of evidence."""
        return min(self.ds(text, e) for e in evidence)


@dataclass
class Evidence:
    """The texts that stand for an item's anchor(s) and distractor."""

    anchor_sections: list[str]
    anchor_pieces: list[str]
    distractor_section: str
    distractor_pieces: list[str]


def evidence_for(suite: Suite, item: Item) -> Evidence:
    anchors = [suite.section_text(a) for a in item.anchors]
    distractor = suite.section_text(item.distractor)
    return Evidence(anchors, anchors + [s for a in anchors for s in sentences(a)],
                    distractor, [distractor] + sentences(distractor))


def score_answer(stick: Stick, item: Item, ev: Evidence, question: str, answer: str, aborted: bool) -> dict:
    """Answer-side metrics of one run."""
    if aborted:
        return {"ds_aa": 1.0, "ds_aq": 1.0, "gap_answer": 0.0, "cites_anchor": False}
    ds_aa = stick.ds_evidence(answer, ev.anchor_pieces)
    return {"ds_aa": ds_aa, "ds_aq": stick.ds(answer, question),
            "gap_answer": m.anchor_gap(stick.ds_evidence(answer, ev.distractor_pieces), ds_aa),
            "cites_anchor": any(c in item.anchors for c in cited_sections(answer))}


def score_retrieval(stick: Stick, suite: Suite, item: Item, ev: Evidence, question: str, chunk_texts: list[str],
                    chunk_spans: list) -> dict:
    """Retrieval-side metrics of one run (the same for every seed)."""
    top1 = chunk_texts[0]
    anchor_spans = [section_token_span(*suite.sections[a]) for a in item.anchors]
    ds_ra = min(stick.ds(top1, a) for a in ev.anchor_sections)
    return {"ds_qr": stick.ds(question, top1),
            "ds_qr_topk": float(np.mean([stick.ds(question, c) for c in chunk_texts])),
            "ds_ra": ds_ra, "coverage": m.coverage(anchor_spans, chunk_spans),
            "gap_chunk": m.anchor_gap(stick.ds(top1, ev.distractor_section), ds_ra)}


def step_prefixes(answer: str) -> list[str]:
    """The prefixes of a long answer, one sentence longer each: what its step trace is measured on."""
    steps = sentences(answer)
    return [" ".join(steps[: t + 1]) for t in range(len(steps))]


def step_trace(stick: Stick, ev: Evidence, answer: str) -> list[float]:
    """s_t = ΔS(prefix of the first t sentences, anchor) for a long answer (its prefixes already embedded)."""
    return [stick.ds_evidence(p, ev.anchor_sections) for p in step_prefixes(answer)]
