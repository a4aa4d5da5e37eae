"""The teacher-forced stages: both backends score the same tokens (docs/architecture.md §9).

Entropy against length is measured on the reference's long continuations; perplexity, KL and
top-token agreement on windows of the suite's own corpus. Metrics come from the backends' scores
through pure functions (gates/entropy.py, gates/perplexity.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from awqguard.backends import Backend
from awqguard.gates.document import Measurement
from awqguard.gates.entropy import entropy_verdict, position_curves
from awqguard.gates.fixtures import Suite
from awqguard.gates.perplexity import LogitDrift, compare_scores, heldout_windows


@dataclass(frozen=True)
class EntropyResult:
    metrics: dict[str, Measurement]
    curves: dict[str, Any] = field(default_factory=dict)       # results.json's "entropy" section


@dataclass(frozen=True)
class PerplexityResult:
    metrics: dict[str, Measurement]
    drift: LogitDrift | None


def entropy_stage(reference: Backend, candidate: Backend, continuations: dict[str, dict]) -> EntropyResult:
    """Entropy onset and slope of both models along the reference's long continuations."""
    curves = position_curves(_continuation_pairs(reference, candidate, continuations))
    if curves is None:
        reason = "the suite has no long items"
        return EntropyResult({"entropy.onset_shift": Measurement.not_measured(reason),
                              "entropy.slope_excess": Measurement.not_measured(reason)})
    verdict = entropy_verdict(curves["entropy_reference"], curves["entropy_candidate"])
    metrics = {"entropy.onset_shift": Measurement.paired(verdict["onset_shift"]),
               "entropy.slope_excess": Measurement.paired(verdict["slope_excess"]),
               "continuation.kl_mean": Measurement.paired(float(curves["kl"].mean())),
               "continuation.top1_agreement": Measurement.paired(float(curves["top1_agreement"].mean()))}
    return EntropyResult(metrics, {k: _listify(v) for k, v in {**verdict, **curves}.items()})


def _continuation_pairs(reference: Backend, candidate: Backend, continuations: dict[str, dict]):
    """(reference scores, candidate scores) of each continuation, one at a time (they are large)."""
    for cont in continuations.values():
        prompt_ids = reference.tokenizer(cont["prompt"], add_special_tokens=False)["input_ids"]
        sequence = [list(prompt_ids) + list(cont["tokens"])]
        yield (next(reference.score(sequence, len(prompt_ids))), next(candidate.score(sequence, len(prompt_ids))))


def perplexity_stage(reference: Backend, candidate: Backend, suite: Suite, window: int, max_windows: int) -> PerplexityResult:
    """Perplexity ratio, KL and same-top rate on the suite's corpus, cut into windows by the reference's tokenizer."""
    texts = [d.text for d in sorted(suite.documents.values(), key=lambda d: d.stem)]
    try:
        windows = heldout_windows(reference.tokenizer, texts, window, max_windows).tolist()
    except ValueError as exc:
        reason = f"the suite's corpus is too short ({exc})"
        return PerplexityResult({name: Measurement.not_measured(reason) for name in ("perplexity.ratio", "kl.mean")},
                                None)
    drift = compare_scores(zip(reference.score(windows, 1), candidate.score(windows, 1)))
    metrics = {"perplexity.ratio": Measurement.paired(drift.ppl_candidate / drift.ppl_reference,
                                                      ppl_reference=drift.ppl_reference,
                                                      ppl_candidate=drift.ppl_candidate),
               "kl.mean": Measurement.paired(drift.mean_kl), "kl.p99": Measurement.paired(drift.p99_kl),
               "same_top.rate": Measurement.paired(drift.same_top_rate)}
    return PerplexityResult(metrics, drift)


def _listify(v):
    return v.tolist() if isinstance(v, np.ndarray) else v
