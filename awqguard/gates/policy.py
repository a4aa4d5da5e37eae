"""Gates as parsed objects with a pure check (docs/architecture.md §10). The default policy is data.

A gate compares one metric value with a threshold, on the end of the value's 95% interval that is
worse for the candidate; severity "fail" blocks a release, "warn" only reports. A gate whose
interval straddles its bar, or that rests on too few units, is inconclusive (which moves the
verdict only for a fail-severity gate, document.undecided_blocks); one that could not
fail whatever the candidate did is uninformative. Each gate names a declared metric (gates/registry.py) and the Problem-Map symptoms its
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
class Decision:
    """How gates turn measurements into verdicts: the fewest resampling units a gate may decide on,
    and whether an undecided (inconclusive) gate fails the check."""

    min_items: int = 8
    strict: bool = False

    @classmethod
    def of(cls, section: dict | None) -> "Decision":
        section = section or {}
        return cls(int(section.get("min_items", cls.min_items)), bool(section.get("strict", cls.strict)))


@dataclass(frozen=True)
class Verdict:
    gate: str
    value: float | None
    message: str
    status: str               # pass | fail | warn | skip | inconclusive | uninformative
    basis: str = "absolute"   # absolute | reference (the reference misses the bar too) | none
    reference: float | None = None

    @property
    def passed(self) -> bool:
        """Only a failed fail-severity gate blocks; whether an inconclusive one does is the check's policy."""
        return self.status != "fail"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def holds(op: str, interval: tuple[float, float], bar: float) -> bool | None:
    """Whether `value op bar` holds over the whole interval (True), nowhere in it (False), or the
    interval straddles the bar (None)."""
    low, high = interval
    sure, anywhere = (high, low) if op in ("<=", "<") else (low, high)
    if OPS[op](sure, bar):
        return True
    return None if OPS[op](anywhere, bar) else False


def either(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued or: true if either surely holds, false if both surely fail, else undecided."""
    if a is True or b is True:
        return True
    return False if a is False and b is False else None


def open_route(absolute: bool | None, relative: bool | None) -> bool | None:
    """The verdict where the reference cannot be shown to meet the bar: a candidate surely within it
    passes; otherwise the comparison with the reference decides. A candidate surely worse than the
    reference by more than the tolerance fails even while its own interval straddles the bar (the
    bar is then near the reference, and the difference is the sharper evidence)."""
    if absolute is True:
        return True
    if relative is False:
        return False
    return either(absolute, relative)


def _span(ci: tuple[float, float] | None) -> str:
    return f" (95% interval {ci[0]:.4g} to {ci[1]:.4g})" if ci is not None else ""


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

    @property
    def lower_is_better(self) -> bool:
        return self.op in ("<=", "<")

    def _relative_bar(self, m: Measurement) -> float | None:
        """The bar on candidate − reference, where it applies: the gate has a tolerance and the
        reference cannot be shown to meet the absolute bar (its own interval does not wholly pass)."""
        if self.tolerance is None or _missing(m.reference):
            return None
        if holds(self.op, m.reference_ci or (m.reference, m.reference), self.threshold) is True:
            return None
        return self.tolerance if self.lower_is_better else -self.tolerance

    def uninformative(self, m: Measurement) -> str | None:
        """Why this gate could not fail whatever the candidate did, or None."""
        if m.fixed:
            return m.fixed
        worst = m.worst if m.worst is not None else METRICS[self.metric].worst_value
        if worst is None:
            return None
        if OPS[self.op](worst, self.threshold):
            return f"even the worst possible {self.metric} ({worst:g}) passes {self.op} {self.threshold:g}"
        bar = self._relative_bar(m)
        if bar is not None and OPS[self.op](worst - m.reference, bar):
            edge = "ceiling" if self.lower_is_better else "floor"
            return (f"the reference sits at {m.reference:.4g}, so near the {edge} of {self.metric} that any candidate "
                    f"is within the tolerance of {self.tolerance:g}")
        return None

    def check(self, m: Measurement, decision: Decision = Decision()) -> Verdict:
        """The verdict on one measurement: decided on the end of its interval worse for the candidate.

        A value missing with a reason (not applicable to this suite) is skipped and says why;
        missing without one, or NaN, never passes silently. A gate that could not fail is
        uninformative; one on too few units, or whose interval straddles its bar, inconclusive."""
        value, reference = m.gated, m.reference
        if _missing(value):
            if m.reason:
                return Verdict(self.id, None, f"{self.metric} not measured: {m.reason}", "skip", "none", reference)
            return Verdict(self.id, None, f"{self.metric} could not be measured", self._failed(), "none",
                           reference)
        shown = f"{self.metric} = {value:.4g}{_span(m.ci)}"
        why_not = self.uninformative(m)
        if why_not:
            return Verdict(self.id, value, f"{shown}; uninformative: {why_not}", "uninformative", "none",
                           reference)
        absolute = holds(self.op, m.ci or (value, value), self.threshold)
        bar = self._relative_bar(m)
        relative = None if bar is None else holds(self.op, m.diff_ci or (value - reference,) * 2, bar)
        ok = absolute if bar is None else open_route(absolute, relative)
        basis = "absolute" if bar is None or absolute is True else "reference"
        message = self._message(shown, ok, absolute, bar, reference)
        if m.n is not None and m.n < decision.min_items:
            return Verdict(self.id, value, f"{shown}; inconclusive: only {m.n} units, fewer than the "
                           f"{decision.min_items} a gate decides on (decision.min_items)", "inconclusive", basis,
                           reference)
        if ok is None:
            return Verdict(self.id, value, f"{message}; inconclusive: the interval straddles the bar",
                           "inconclusive", basis, reference)
        return Verdict(self.id, value, message, "pass" if ok else self._failed(), basis, reference)

    def _message(self, shown: str, ok: bool | None, absolute: bool | None, bar: float | None,
                 reference: float | None) -> str:
        word = {True: "passes", False: "fails", None: "is undecided against"}
        if bar is None or absolute is True:
            return f"{shown} {word[ok]} {self.op} {self.threshold:g}"
        bound = reference + bar
        misses = "misses" if absolute is False else "is undecided against"
        against = {True: "passes", False: "fails", None: "is undecided"}[ok]
        return (f"{shown} {misses} {self.op} {self.threshold:g}, like the reference ({reference:.4g}); "
                f"{against} against the reference ({self.op} {bound:.4g})")

    def _failed(self) -> str:
        return "fail" if self.severity == "fail" else "warn"

    def judge(self, measured: Measurement | None, worst_items: tuple[WorstItem, ...] = (),
              decision: Decision = Decision()) -> GateResult:
        """The gate's result on its metric's measurement (None: the metric was not produced at all)."""
        measured = measured or Measurement()
        verdict = self.check(measured, decision)
        failing = verdict.status in ("fail", "warn")
        fixes = dict.fromkeys(f for s in self.symptoms for f in SYMPTOMS[s].fixes) if failing else {}
        estimate = measured.details.get("estimate")
        message = f"{verdict.message} [{estimate}]" if estimate and verdict.status != "skip" else verdict.message
        return GateResult(
            self.id, self.metric, self.description, _rounded(verdict.value), _rounded(verdict.reference),
            self.threshold, self.op, self.tolerance, self.severity, verdict.status, verdict.passed, verdict.basis,
            message, measured.ci, tuple((s, SYMPTOMS[s].title) for s in self.symptoms), tuple(fixes),
            worst_items if verdict.status not in ("skip", "uninformative") else (), measured.n)


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
    # a rate over runs, not the share of items with any bad run: that label flips on one run in eight,
    # and against a reference that is itself chaotic its interval straddled any useful tolerance
    Gate("lambda-chaotic", "lambda.bad_miss_rate", "<=", 0, symptoms=("synthesis-drift",), tolerance=0.10,
         description="share of runs that miss the anchor badly (ΔS(answer, anchor) >= 0.60), mean over items"),
    Gate("drift-mean", "drift.answer_ds_excess", "<=", 0.10, symptoms=("ppl-drift", "synthesis-drift"),
         description="ΔS(candidate answer, reference answer) on the same prompt and seed, mean over the items "
                     "whose retrieval matched, minus the reference's own seed-to-seed ΔS (the sampling noise floor)"),
    Gate("retrieval-drift", "drift.retrieval_answer_ds_excess", "<=", 0.10, severity="warn",
         symptoms=("retrieval-drift",),
         description="answer drift beyond the noise floor on runs whose retrieved chunks changed: what the "
                     "candidate's retrieval, not its generator, moved"),
    Gate("drift-item", "drift.answer_ds_item_excess_max", "<=", 0.15, severity="warn", symptoms=("ppl-drift",),
         description="the same drift beyond the noise floor, worst item"),
    Gate("anchor-gap", "anchor_gap.answer_mean", ">", 0.05, symptoms=("boundary-flattened",), tolerance=0.02,
         description="ΔS(answer, distractor) minus ΔS(answer, anchor), mean over items"),
    Gate("entropy-onset", "entropy.onset_share", "<=", 0.15, symptoms=("entropy-collapse",),
         description="share of the continuation where the candidate's smoothed entropy runs above the reference's "
                     "own at the same position (toward 2x; 1.5x counts half)"),
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
