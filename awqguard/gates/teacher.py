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
from awqguard.gates import topk
from awqguard.gates.fixtures import Suite
from awqguard.gates.perplexity import LogitDrift, compare_scores, heldout_windows
from awqguard.gates.resample import Resampler


@dataclass(frozen=True)
class EntropyResult:
    metrics: dict[str, Measurement]
    curves: dict[str, Any] = field(default_factory=dict)       # results.json's "entropy" section


@dataclass(frozen=True)
class PerplexityResult:
    metrics: dict[str, Measurement]
    drift: LogitDrift | None


ENTROPY_METRICS = ("entropy.onset_share", "entropy.slope_excess", "continuation.kl_mean", "continuation.top1_agreement")
PERPLEXITY_METRICS = ("perplexity.ratio", "kl.mean", "kl.p99", "same_top.rate")
ESTIMATED = {"entropy.onset_share", "entropy.slope_excess", "continuation.kl_mean", "kl.mean", "kl.p99"}


def entropy_stage(reference: Backend, candidate: Backend, continuations: dict[str, dict],
                  resampler: Resampler) -> EntropyResult:
    """Entropy onset and slope of both models along the reference's long continuations, with
    intervals over the continuations."""
    reason = _cannot_score(reference, candidate) or (None if continuations else "the suite has no long items")
    if reason:
        return EntropyResult({name: Measurement.not_measured(reason) for name in ENTROPY_METRICS[:2]})
    curves = position_curves(_continuation_pairs(reference, candidate, continuations))
    rows = curves.pop("rows")
    verdict = entropy_verdict(*rows, resampler)
    n = curves["sequences"]
    estimate = curves.get("estimate")
    metrics = {"entropy.onset_share": _measured("entropy.onset_share", verdict["onset_share"], estimate,
                                                verdict["onset_share_ci"], n),
               "entropy.slope_excess": _measured("entropy.slope_excess", verdict["slope_excess"], estimate,
                                                 verdict["slope_excess_ci"], n),
               "continuation.kl_mean": _measured("continuation.kl_mean", float(curves["kl"].mean()), estimate),
               "continuation.top1_agreement": _measured("continuation.top1_agreement",
                                                        float(curves["top1_agreement"].mean()), estimate)}
    return EntropyResult(metrics, {k: _listify(v) for k, v in {**verdict, **curves}.items()})


def _measured(name: str, value: float, estimate: str | None, ci: tuple[float, float] | None = None,
              n: int | None = None, **details) -> Measurement:
    """A paired figure, labelled as a top-K estimate where it is one."""
    if estimate is not None and name in ESTIMATED:
        details["estimate"] = estimate
    return Measurement.paired(value, ci, n, **details)


def _cannot_score(*backends: Backend) -> str | None:
    reasons = [b.scoring_unavailable for b in backends if b.scoring_unavailable]
    return "; ".join(reasons) if reasons else None


def prefixed(sequence: list[int], start: int, prefix: tuple[int, ...]) -> tuple[list[int], int]:
    """The sequence with the backends' required leading tokens (when it lacks them) and its new start."""
    if not prefix or tuple(sequence[:len(prefix)]) == prefix:
        return sequence, start
    return list(prefix) + sequence, start + len(prefix)


def _prefix(*backends: Backend) -> tuple[int, ...]:
    return max((tuple(b.score_prefix) for b in backends), key=len)


def _continuation_pairs(reference: Backend, candidate: Backend, continuations: dict[str, dict]):
    """(reference scores, candidate scores) of each continuation, one at a time (they are large)."""
    prefix = _prefix(reference, candidate)
    for cont in continuations.values():
        prompt_ids = reference.tokenizer(cont["prompt"], add_special_tokens=False)["input_ids"]
        sequence, start = prefixed(list(prompt_ids) + list(cont["tokens"]), len(prompt_ids), prefix)
        yield next(reference.score([sequence], start)), next(candidate.score([sequence], start))


def perplexity_stage(reference: Backend, candidate: Backend, suite: Suite, window: int, max_windows: int,
                     resampler: Resampler) -> PerplexityResult:
    """Perplexity ratio, KL and same-top rate on the suite's corpus, cut into windows by the
    reference's tokenizer; the ratio's and KL's intervals resample windows."""
    texts = [d.text for d in sorted(suite.documents.values(), key=lambda d: d.stem)]
    reason = _cannot_score(reference, candidate)
    try:
        windows = heldout_windows(reference.tokenizer, texts, window, max_windows).tolist()
    except ValueError as exc:
        reason = f"the suite's corpus is too short ({exc})"
    if reason:
        return PerplexityResult({name: Measurement.not_measured(reason) for name in PERPLEXITY_METRICS[:2]}, None)
    prefix = list(_prefix(reference, candidate))      # always added: every window must start at the same place
    sequences, start = [prefix + w for w in windows], len(prefix) + 1
    drift = compare_scores(zip(reference.score(sequences, start), candidate.score(sequences, start)))
    estimate = topk.estimate_label(drift.top_k)
    w, n = drift.windows, len(windows)
    ratio_ci, kl_ci = resampler.of_each(n, lambda idx: (w.ratio(idx), w.mean_kl(idx)))
    metrics = {"perplexity.ratio": Measurement.paired(drift.ppl_candidate / drift.ppl_reference, ratio_ci, n,
                                                      ppl_reference=drift.ppl_reference,
                                                      ppl_candidate=drift.ppl_candidate),
               "kl.mean": _measured("kl.mean", drift.mean_kl, estimate, kl_ci, n),
               "kl.p99": _measured("kl.p99", drift.p99_kl, estimate),
               "same_top.rate": _measured("same_top.rate", drift.same_top_rate, estimate)}
    return PerplexityResult(metrics, drift)


def _listify(v):
    return v.tolist() if isinstance(v, np.ndarray) else v
