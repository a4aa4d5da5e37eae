"""The typed results of a check and their one serialisation, results.json (docs/architecture.md §9b).

Stages hand these objects to each other; only `ResultsDocument.to_json` turns them into the plain
data written to results.json (the report reads that file back, validated against its schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from awqguard import files
from awqguard.gates.records import ItemSummary, Record

SCHEMA_VERSION = 1          # the results.json format this awqguard writes and reads


@dataclass(frozen=True)
class Measurement:
    """One metric's figures: a value per variant, or one `value` for the pair (drift, ratios).

    `ci` is the 95% interval of the gated figure over `n` resampled units (None: the figure has no
    sampling noise, as a byte count); for figures per variant `reference_ci` is the reference's
    interval and `diff_ci` that of candidate − reference. `reason` says why it was not measured (its gates are skipped); `fixed` why it
    cannot move in this configuration (its gates are uninformative); `worst` the worst value the
    gated figure could take in this run, where the metric's own bounds do not say it; `details` are
    extra figures shown beside it (the two perplexities, the estimate label, ...)."""

    reference: float | None = None
    candidate: float | None = None
    value: float | None = None
    per_variant: bool = False
    reason: str | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None
    diff_ci: tuple[float, float] | None = None
    reference_ci: tuple[float, float] | None = None
    fixed: str | None = None
    worst: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_variants(cls, reference: float | None, candidate: float | None, ci: tuple[float, float] | None = None,
                    diff_ci: tuple[float, float] | None = None, n: int | None = None,
                    reference_ci: tuple[float, float] | None = None) -> "Measurement":
        return cls(reference=reference, candidate=candidate, per_variant=True, ci=ci, diff_ci=diff_ci, n=n,
                   reference_ci=reference_ci)

    @classmethod
    def paired(cls, value: float | None, ci: tuple[float, float] | None = None, n: int | None = None,
               **details: Any) -> "Measurement":
        return cls(value=value, ci=ci, n=n, details=details)

    @classmethod
    def not_measured(cls, reason: str) -> "Measurement":
        return cls(reason=reason)

    @property
    def gated(self) -> float | None:
        """The figure a gate compares with its threshold: the candidate's, or the pair's value."""
        return self.candidate if self.per_variant else self.value

    def numbers(self) -> list[float]:
        return [v for v in (self.reference, self.candidate, self.value, *self.details.values())
                if isinstance(v, float)]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = ({"reference": self.reference, "candidate": self.candidate} if self.per_variant
                               else {"value": self.value})
        for key in ("reason", "ci", "n", "reference_ci", "diff_ci", "fixed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return {**out, **self.details}


@dataclass(frozen=True)
class WorstItem:
    item: str
    value: float | None
    probe: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"item": self.item, "value": self.value}
        return {**out, "probe": self.probe} if self.probe is not None else out


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict with everything needed to act on it."""

    id: str
    metric: str
    description: str
    value: float | None
    reference: float | None
    threshold: float
    op: str
    tolerance: float | None
    severity: str
    status: str                    # pass | fail | warn | skip | inconclusive | uninformative
    passed: bool                   # False only for a failed fail-severity gate
    basis: str                     # absolute | reference | none
    message: str
    ci: tuple[float, float] | None
    symptoms: tuple[tuple[str, str], ...]      # (id, title)
    fixes: tuple[str, ...]
    worst_items: tuple[WorstItem, ...]
    n: int | None = None           # the units the interval rests on

    @property
    def failing(self) -> bool:
        return self.status in ("fail", "warn")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "metric": self.metric, "description": self.description, "value": self.value,
                "reference": self.reference, "threshold": self.threshold, "op": self.op, "tolerance": self.tolerance,
                "severity": self.severity, "status": self.status, "passed": self.passed, "basis": self.basis,
                "message": self.message, "ci": list(self.ci) if self.ci is not None else None, "n": self.n,
                "symptoms": [{"id": i, "title": t} for i, t in self.symptoms], "fixes": list(self.fixes),
                "worst_items": [w.to_json() for w in self.worst_items]}


def failing_symptoms(gates: list[GateResult]) -> tuple[str, ...]:
    """The ids of the symptoms that failed or warned gates evidence, sorted."""
    return tuple(sorted({s for g in gates if g.failing for s, _ in g.symptoms}))


@dataclass(frozen=True)
class Summary:
    gates: int
    failed: int
    warned: int
    skipped: int
    symptoms: tuple[str, ...]
    items: int
    runs: int
    inconclusive: int = 0
    uninformative: int = 0

    @classmethod
    def of(cls, gates: list[GateResult], items: int, runs: int) -> "Summary":
        count = lambda status: sum(g.status == status for g in gates)
        return cls(len(gates), count("fail"), count("warn"), count("skip"), failing_symptoms(gates), items, runs,
                   count("inconclusive"), count("uninformative"))

    def to_json(self) -> dict[str, Any]:
        return {"gates": self.gates, "failed": self.failed, "warned": self.warned, "skipped": self.skipped,
                "inconclusive": self.inconclusive, "uninformative": self.uninformative,
                "symptoms": list(self.symptoms), "items": self.items, "runs": self.runs}


@dataclass(frozen=True)
class ResultsDocument:
    """Everything results.json holds, plus the per-run records (written to items.jsonl instead)."""

    awqguard_version: str
    created: str
    warn_only: bool
    gates: list[GateResult]
    summary: Summary
    symptoms: list[dict]
    notices: list[str]
    metrics: dict[str, Measurement]
    items: dict[str, ItemSummary]
    probes: dict[str, dict]
    entropy: dict[str, Any]
    perplexity: dict[str, float] | None
    cost: dict[str, Any]
    environment: dict[str, Any]
    evidence: dict[str, Any]
    cache: dict[str, Any]
    timing: dict[str, Any]
    records: list[Record]
    strict: bool = False           # undecided fail-severity gates fail the check

    @property
    def verdict(self) -> str:
        return verdict_of([(g.status, g.severity) for g in self.gates], self.strict)

    @property
    def passed(self) -> bool:
        return self.verdict != "fail"

    def to_json(self) -> dict[str, Any]:
        """Plain, strict-JSON data (a NaN is written as null: its gate already failed)."""
        return files.finite({
            "schema_version": SCHEMA_VERSION, "awqguard_version": self.awqguard_version, "created": self.created,
            "passed": self.passed, "verdict": self.verdict, "strict": self.strict, "warn_only": self.warn_only,
            "summary": self.summary.to_json(),
            "gates": [g.to_json() for g in self.gates], "symptoms": self.symptoms, "notices": self.notices,
            "metrics": rounded({k: m.to_json() for k, m in self.metrics.items()}),
            "items": rounded({k: s.to_json() for k, s in self.items.items()}),
            "probes": rounded(self.probes), "entropy": rounded(self.entropy), "perplexity": self.perplexity,
            "cost": self.cost, "environment": self.environment, "evidence": self.evidence, "cache": self.cache,
            "timing": self.timing, "records": [r.to_json() for r in self.records]})


def undecided_blocks(status: str, severity: str) -> bool:
    """Whether a gate's status leaves the release undecided: an inconclusive gate of fail severity.
    An undecided warn-severity gate is reported, but like its warning it never moves the verdict
    (otherwise --strict would fail a candidate on a gate that, failing outright, only warns)."""
    return status == "inconclusive" and severity == "fail"


def verdict_of(outcomes: list[tuple[str, str]], strict: bool = False) -> str:
    """From each gate's (status, severity): fail when a gate failed (or, strict, a fail-severity
    gate could not be decided); inconclusive when none failed but such a gate could not be
    decided; else pass."""
    undecided = any(undecided_blocks(status, severity) for status, severity in outcomes)
    if any(status == "fail" for status, _ in outcomes) or (strict and undecided):
        return "fail"
    return "inconclusive" if undecided else "pass"


def rounded(value):
    """`value` with every float rounded to 6 digits and numpy scalars and arrays made plain."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (np.floating, np.integer)):
        return rounded(value.item())
    if isinstance(value, np.ndarray):
        return rounded(value.tolist())
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value
