"""Gates as parsed objects with a pure check (DESIGN.md §8). The default policy is data.

A gate compares one metric value with a threshold; severity "fail" blocks a release, "warn" only
reports. Each gate names the Problem-Map symptoms its failure evidences.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from awqguard.errors import ConfigError
from awqguard.gates.problem_map import SYMPTOMS

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
SEVERITIES = ("fail", "warn")


@dataclass(frozen=True)
class Verdict:
    gate: str
    value: float | None
    passed: bool
    message: str


@dataclass(frozen=True)
class Gate:
    id: str
    metric: str
    op: str
    threshold: float
    severity: str = "fail"
    symptoms: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ConfigError(f"gate {self.id}: op must be one of {', '.join(OPS)}; got {self.op!r}")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"gate {self.id}: severity must be fail or warn; got {self.severity!r}")
        unknown = [s for s in self.symptoms if s not in SYMPTOMS]
        if unknown:
            raise ConfigError(f"gate {self.id}: unknown symptom(s) {unknown}; known: {sorted(SYMPTOMS)}")

    def check(self, value: float | None) -> Verdict:
        """Pass/fail for one measured value; a missing or NaN value never passes silently."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return Verdict(self.id, None, False, f"{self.metric} could not be measured")
        passed = OPS[self.op](value, self.threshold)
        word = "passes" if passed else "fails"
        return Verdict(self.id, value, passed, f"{self.metric} = {value:.4g} {word} {self.op} {self.threshold:g}")


DEFAULT_GATES: tuple[Gate, ...] = (
    Gate("retrieval-ds-mean", "ds_qr.mean", "<=", 0.40, symptoms=("retrieval-drift",),
         description="ΔS(question, top-1 chunk), suite mean"),
    Gate("retrieval-ds-item", "ds_qr.item_max", "<=", 0.45, symptoms=("retrieval-drift",),
         description="ΔS(question, top-1 chunk), worst item"),
    Gate("coverage", "coverage.mean", ">=", 0.70, symptoms=("retrieval-drift",),
         description="share of the anchor's tokens inside the retrieved chunks"),
    Gate("lambda-convergence", "lambda.convergence_rate", ">=", 0.80, symptoms=("synthesis-drift",),
         description="items whose runs (3 paraphrases x 2 seeds + question) all hit and agree"),
    Gate("lambda-chaotic", "lambda.chaotic_count", "<=", 0, symptoms=("synthesis-drift",),
         description="items with a run that misses with ΔS(answer, anchor) >= 0.60"),
    Gate("drift-mean", "drift.answer_ds_mean", "<=", 0.10, symptoms=("ppl-drift", "synthesis-drift"),
         description="ΔS(candidate answer, reference answer), mean over items"),
    Gate("drift-item", "drift.answer_ds_item_max", "<=", 0.15, severity="warn", symptoms=("ppl-drift",),
         description="ΔS(candidate answer, reference answer), worst item"),
    Gate("anchor-gap", "anchor_gap.answer_mean", ">", 0.05, symptoms=("boundary-flattened",),
         description="ΔS to distractor minus ΔS to anchor, candidate answers"),
    Gate("entropy-onset", "entropy.onset_shift", "<=", 0.10, symptoms=("entropy-collapse",),
         description="how much earlier (share of length) the candidate's entropy onset comes"),
    Gate("entropy-slope", "entropy.slope_excess", "<=", 0.02, symptoms=("entropy-collapse",),
         description="candidate entropy slope minus reference slope, per 100 tokens"),
    Gate("perplexity-ratio", "perplexity.ratio", "<=", 1.20, symptoms=("ppl-drift",),
         description="held-out perplexity, candidate / reference"),
    Gate("kl-mean", "kl.mean", "<=", 0.10, severity="warn", symptoms=("ppl-drift",),
         description="mean KL(reference ‖ candidate) per token, nats"),
    Gate("json-validity", "json.validity_drop", "<=", 0.05, symptoms=("json-unstable",),
         description="reference JSON-valid rate minus candidate's"),
)
