"""How every output writes numbers, thresholds and the verdict: pure functions from results to text.

The terminal table and printout, summary.md, junit.xml and report.html all take their wording from
here, so a gate reads the same wherever a person meets it. Nothing here escapes markup: each
output escapes for its own format (rich, Markdown, XML, HTML).
"""

from __future__ import annotations

from typing import Callable

from awqguard.gates.document import undecided_blocks, verdict_of

MISSING = "–"           # a value that was not measured


def number(value, digits: int = 3) -> str:
    """A measured value: fixed decimals so a column of them lines up, whole from 1000 on (a perplexity),
    an integer (a count) as it is, yes/no for a flag, "–" when it was not measured."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def bound(value) -> str:
    """A configured number (threshold, tolerance) as people write it: 0.4, not 0.400."""
    return f"{value:g}"


def tick(value: float) -> str:
    """An axis tick: short, and small non-zero ticks in exponent form (1e-03) rather than rounded to 0."""
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.0e}"


def interval(pair) -> str:
    """A (low, high) interval: [0.120, 0.340]."""
    return f"[{number(pair[0])}, {number(pair[1])}]"


def threshold_text(gate: dict, tolerance: bool = False) -> str:
    """"<= 0.1", marked "(vs ref)" where the gate was judged against the reference (with its tolerance)."""
    bar = f"{gate['op']} {bound(gate['threshold'])}"
    if gate["basis"] != "reference":
        return bar
    return bar + (f" (vs ref, tolerance {bound(gate['tolerance'])})" if tolerance else " (vs ref)")


def estimate_note(results: dict, metric: str) -> str:
    """" (top-K estimate)" after a metric a served variant could only estimate, else ""."""
    estimate = results.get("metrics", {}).get(metric, {}).get("estimate")
    return f" ({estimate})" if estimate else ""


VERDICT_WORDS = {"pass": "PASSED", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}
ALWAYS_COUNTED = ("failed", "warned", "skipped")
COUNT_ORDER = ("failed", "warned", "inconclusive", "uninformative", "skipped")


def verdict(results: dict) -> str:
    """"pass", "fail" or "inconclusive"; a results.json written before verdicts existed has only `passed`."""
    return results.get("verdict") or ("pass" if results["passed"] else "fail")


def is_strict(results: dict) -> bool:
    """Whether inconclusive gates failed the check (False for a results.json written before strict mode)."""
    return bool(results.get("strict", False))


def verdict_word(value: str) -> str:
    """PASSED, FAILED or INCONCLUSIVE for a verdict from `verdict`."""
    return VERDICT_WORDS[value]


def status_counts(summary: dict, keys: tuple[str, ...] = COUNT_ORDER) -> str:
    """"1 failed, 2 warned, 0 skipped": inconclusive and uninformative only when some gate is, so a
    check without them reads as it always did (and an older results.json, which lacks them, too)."""
    return ", ".join(f"{summary.get(k, 0)} {k}" for k in keys if k in ALWAYS_COUNTED or summary.get(k))


def gate_counts(summary: dict) -> str:
    """"1 failed, 2 warned, 0 skipped of 15 gates"."""
    return f"{status_counts(summary)} of {summary['gates']} gates"


def failed_of(summary: dict) -> str:
    """"1 of 15 gates failed": the headline where the failed gates are named right after it."""
    return f"{summary['failed']} of {summary['gates']} gates failed"


def run_counts(summary: dict) -> str:
    """"48 items, 384 paired runs"."""
    return f"{summary['items']} items, {summary['runs']} paired runs"


def verdict_sentence(results: dict, mark: Callable[[str], str] = str) -> str:
    """"FAILED: 1 failed, 2 warned, 0 skipped of 15 gates"; `mark` dresses the verdict word for its
    output (colour on a terminal, bold and an icon in Markdown)."""
    return f"{mark(verdict_word(verdict(results)))}: {gate_counts(results['summary'])}"


def verdict_note(results: dict, flag: str = "--strict") -> str:
    """What an inconclusive gate did to the verdict, for the line after `verdict_sentence`; "" when none is.
    `flag` is the front end's name for strict mode."""
    count = results["summary"].get("inconclusive", 0)
    if not count:
        return ""
    outcomes = [(g["status"], g["severity"]) for g in results["gates"]]
    blocking = sum(undecided_blocks(*outcome) for outcome in outcomes)
    # the reader accepts the verdict of today's rule or, from a file written before, of the rule
    # that counted every undecided gate: a verdict other than today's is the earlier rule's
    earlier_rule = verdict(results) != verdict_of(outcomes, is_strict(results))
    if not blocking and not earlier_rule:
        gates = f"{count} warn-severity gate{'s' if count != 1 else ''}"
        return f"{gates} could not be decided on this evidence; like a warning, that does not move the verdict"
    count = blocking or count
    gates = f"{count} gate{'s' if count != 1 else ''}"
    if is_strict(results):
        return f"{gates} could not be decided on this evidence, which fails the check under strict mode"
    failed = "no gate failed; " if results["summary"]["failed"] == 0 else ""
    return f"{failed}{gates} could not be decided on this evidence ({flag} makes that fail)"


def evidence_lines(gate: dict) -> list[str]:
    """What explains a failed, warned or inconclusive gate after its message: interval (and how many
    resampling units it rests on), reference value, worst items, symptoms, fixes, one line each."""
    lines = []
    n = gate.get("n")                                  # absent from a results.json written before it
    if gate["ci"]:
        over = "items" if n is None else f"{n} resampling units"
        lines.append(f"95% interval over {over}: {interval(gate['ci'])}")
    elif n is not None:
        lines.append(f"resampling units: {n}")
    if gate["reference"] is not None:
        lines.append(f"reference: {number(gate['reference'])}")
    if gate["worst_items"]:
        lines.append("worst items: " + ", ".join(_worst(w) for w in gate["worst_items"]))
    lines += [f"symptom: {s['title']} ({s['id']})" for s in gate["symptoms"]]
    lines += [f"fix: {f}" for f in gate["fixes"]]
    return lines


def _worst(w: dict) -> str:
    """`q001 (0.856)`, or `q001 k=5 (0.856)` for a probe of the item."""
    probe = f" {w['probe']}" if w.get("probe") else ""
    return f"{w['item']}{probe} ({number(w['value'])})"


def gate_failure_text(gate: dict) -> str:
    """A failed, warned or inconclusive gate as plain text: "id: message", then its evidence lines."""
    return "\n".join([f"{gate['id']}: {gate['message']}", *evidence_lines(gate)])
