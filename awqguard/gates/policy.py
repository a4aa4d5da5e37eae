"""Gates as parsed objects with a pure check (docs/architecture.md §10). The default policy is data.

A gate compares one metric value with a threshold; severity "fail" blocks a release, "warn" only
reports. Each gate names a declared metric (gates/registry.py) and the Problem-Map symptoms its
failure evidences; a configuration may override the fields in OVERRIDE_SCHEMA, keyed by gate id.
"""

from __future__ import annotations

import difflib
import math
import operator
from dataclasses import dataclass

from awqguard.errors import ConfigError
from awqguard.gates.document import GateResult, Measurement, WorstItem
from awqguard.gates.problem_map import SYMPTOMS
from awqguard.gates.registry import METRICS, Worst

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
SEVERITIES = ("fail", "warn")


@dataclass(frozen=True)
class Verdict:
    gate: str
    value: float | None
    passed: bool
    message: str
    status: str = ""          # pass | fail | warn (a failed warn-severity gate) | skip (not applicable)
    basis: str = "absolute"   # absolute | reference (the reference misses the bar too) | none
    reference: float | None = None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Gate:
    """One gate. `tolerance`, when set, applies where the reference itself misses the absolute bar:
    the candidate then passes if it is no worse than the reference by more than `tolerance`."""

    id: str
    metric: str
    op: str
    threshold: float
    severity: str = "fail"
    symptoms: tuple[str, ...] = ()
    description: str = ""
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ConfigError(f"gate {self.id}: op must be one of {', '.join(OPS)}; got {self.op!r}")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"gate {self.id}: severity must be fail or warn; got {self.severity!r}")
        for name in ("threshold", "tolerance"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(f"gate {self.id}: {name} must be a finite number; got {value!r}")
        unknown = [s for s in self.symptoms if s not in SYMPTOMS]
        if unknown:
            raise ConfigError(f"gate {self.id}: unknown symptom(s) {unknown}; known: {sorted(SYMPTOMS)}")
        if self.metric not in METRICS:
            close = difflib.get_close_matches(self.metric, list(METRICS), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"gate {self.id}: unknown metric {self.metric!r}{hint}; known metrics: "
                              f"{', '.join(sorted(METRICS))}")

    @property
    def worst(self) -> Worst | None:
        """How this gate's worst items are found (declared with its metric)."""
        return METRICS[self.metric].worst

    def check(self, value: float | None, reference: float | None = None, reason: str | None = None) -> Verdict:
        """Pass/fail for one measured value (the candidate's, or a paired figure).

        A value that is missing with a `reason` (not applicable to this suite) is skipped and says
        why; missing without one, or NaN, never passes silently.
        """
        if _missing(value):
            if reason:
                return Verdict(self.id, None, True, f"{self.metric} not measured: {reason}", "skip", "none", reference)
            return Verdict(self.id, None, False, f"{self.metric} could not be measured", self._failed(), "none",
                           reference)
        if OPS[self.op](value, self.threshold):
            return Verdict(self.id, value, True, f"{self.metric} = {value:.4g} passes {self.op} {self.threshold:g}",
                           "pass", "absolute", reference)
        if self.tolerance is not None and not _missing(reference) and not OPS[self.op](reference, self.threshold):
            lower_is_better = self.op in ("<=", "<")
            bound = reference + self.tolerance if lower_is_better else reference - self.tolerance
            ok = value <= bound if lower_is_better else value >= bound
            word = "passes" if ok else "fails"
            return Verdict(self.id, value, ok,
                           f"{self.metric} = {value:.4g} misses {self.op} {self.threshold:g}, as the reference does "
                           f"({reference:.4g}); {word} against the reference ({'<=' if lower_is_better else '>='} "
                           f"{bound:.4g})", "pass" if ok else self._failed(), "reference", reference)
        return Verdict(self.id, value, False, f"{self.metric} = {value:.4g} fails {self.op} {self.threshold:g}",
                       self._failed(), "absolute", reference)

    def _failed(self) -> str:
        return "fail" if self.severity == "fail" else "warn"

    def judge(self, measured: Measurement | None, worst_items: tuple[WorstItem, ...] = ()) -> GateResult:
        """The gate's result on its metric's measurement (None: the metric was not produced at all)."""
        measured = measured or Measurement()
        verdict = self.check(measured.gated, measured.reference, measured.reason)
        failing = verdict.status in ("fail", "warn")
        fixes = dict.fromkeys(f for s in self.symptoms for f in SYMPTOMS[s].fixes) if failing else {}
        estimate = measured.details.get("estimate")
        message = f"{verdict.message} [{estimate}]" if estimate and verdict.status != "skip" else verdict.message
        return GateResult(
            self.id, self.metric, self.description, _rounded(verdict.value), _rounded(verdict.reference),
            self.threshold, self.op, self.tolerance, self.severity, verdict.status, verdict.passed, verdict.basis,
            message, measured.ci, tuple((s, SYMPTOMS[s].title) for s in self.symptoms), tuple(fixes),
            worst_items if verdict.status != "skip" else ())


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


OVERRIDE_SCHEMA = {   # what a configuration may change of a gate, keyed by its id under `gates:`
    "type": "object", "additionalProperties": False,
    "properties": {"threshold": {"type": "number"}, "severity": {"enum": list(SEVERITIES)},
                   "op": {"enum": list(OPS)}, "enabled": {"type": "boolean"},
                   "tolerance": {"type": ["number", "null"], "minimum": 0}}}


DEFAULT_GATES: tuple[Gate, ...] = (
    Gate("retrieval-ds-mean", "ds_qr.mean", "<=", 0.40, symptoms=("retrieval-drift",), tolerance=0.02,
         description="ΔS(question, top-1 chunk), suite mean"),
    Gate("retrieval-ds-item", "ds_qr.item_max", "<=", 0.45, symptoms=("retrieval-drift",), tolerance=0.05,
         description="ΔS(question, top-1 chunk), worst item"),
    Gate("coverage", "coverage.mean", ">=", 0.70, symptoms=("retrieval-drift",), tolerance=0.05,
         description="share of the anchor's tokens inside the top-k chunks"),
    Gate("lambda-convergence", "lambda.convergence_rate", ">=", 0.80, symptoms=("synthesis-drift",), tolerance=0.10,
         description="items whose runs (question + paraphrases x seeds) all hit the anchor and agree"),
    # a share, not a count: against a reference that is itself chaotic, sampling alone moves the
    # count by several items on a 48-item suite, so the tolerance is 10% of the items
    Gate("lambda-chaotic", "lambda.chaotic_share", "<=", 0, symptoms=("synthesis-drift",), tolerance=0.10,
         description="share of items with a run that misses the anchor badly (ΔS(answer, anchor) >= 0.60)"),
    Gate("drift-mean", "drift.answer_ds_excess", "<=", 0.10, symptoms=("ppl-drift", "synthesis-drift"),
         description="ΔS(candidate answer, reference answer) on the same prompt and seed, mean over items, "
                     "minus the reference's own seed-to-seed ΔS (the sampling noise floor)"),
    Gate("drift-item", "drift.answer_ds_item_excess_max", "<=", 0.15, severity="warn", symptoms=("ppl-drift",),
         description="the same drift beyond the noise floor, worst item"),
    Gate("anchor-gap", "anchor_gap.answer_mean", ">", 0.05, symptoms=("boundary-flattened",), tolerance=0.02,
         description="ΔS(answer, distractor) minus ΔS(answer, anchor), mean over items"),
    Gate("entropy-onset", "entropy.onset_shift", "<=", 0.10, symptoms=("entropy-collapse",),
         description="how much earlier (share of length) the candidate's entropy onset comes"),
    Gate("entropy-slope", "entropy.slope_excess", "<=", 0.02, symptoms=("entropy-collapse",),
         description="candidate entropy slope minus reference slope, per 100 tokens"),
    Gate("perplexity-ratio", "perplexity.ratio", "<=", 1.20, symptoms=("ppl-drift",),
         description="perplexity on the suite's corpus, candidate / reference"),
    Gate("kl-mean", "kl.mean", "<=", 0.10, severity="warn", symptoms=("ppl-drift",),
         description="mean KL(reference ‖ candidate) per token on the suite's corpus, nats"),
    Gate("json-validity", "json.validity_drop", "<=", 0.05, symptoms=("json-unstable",),
         description="reference JSON-valid rate minus the candidate's"),
    Gate("probe-flips", "probes.flip_excess", "<=", 0.15, severity="warn", symptoms=("synthesis-drift",),
         description="candidate minus reference share of answers that flip under deeper retrieval or shuffled headers"),
    Gate("weight-bytes", "cost.weight_bytes_ratio", "<=", 0.60, severity="warn", symptoms=("no-gain",),
         description="candidate / reference bytes of the block linears' weights as stored"),
)
