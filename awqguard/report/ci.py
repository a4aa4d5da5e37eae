"""Files for CI systems, written beside results.json: junit.xml and summary.md.

JUnit: one testcase per gate; a failed fail-severity gate is a <failure>, a skipped, inconclusive or
uninformative gate <skipped> (an inconclusive one is a <failure> under strict mode, which fails the
check for it), and a run that could not finish is one <error> (a runtime problem, not a verdict). The Markdown
summary is short enough for a CI step summary or a pull-request comment.

Every value in them can come from a user (fixture ids, model paths) or an exception (ANSI colours
from torch): XML gets only characters XML 1.0 allows, and Markdown shows values as text, never markup.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from awqguard.errors import strip_ansi
from awqguard.gates.document import undecided_blocks
from awqguard.report.format import (estimate_note, gate_failure_text, is_strict, number, run_counts, threshold_text,
                                    verdict, verdict_note, verdict_sentence)

SUITE_NAME = "awqguard.gates"
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")   # what XML 1.0 forbids
# what could open code, emphasis or a link; "_" between letters or digits (ds_qr) cannot
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*\[\]~]|(?<![^\W_])_|_(?![^\W_]))")
ICON = {"pass": "✅", "fail": "❌", "warn": "⚠️", "skip": "⏭️", "inconclusive": "❔", "uninformative": "➖"}
DETAILED = {"fail": "failed", "warn": "warned", "inconclusive": "inconclusive"}   # evidence under <details>


def clean_text(value) -> str:
    """str(value) without ANSI escape sequences, each other character XML 1.0 forbids shown as \\x1b or \\ud800."""
    text = strip_ansi(str(value))
    return NOT_XML.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def md_text(value) -> str:
    """A value as Markdown text: no markup, no HTML, no line break, no pipe that splits a table cell."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", clean_text(value))
    return html.escape(MARKDOWN_PUNCTUATION.sub(r"\\\1", text), quote=False).replace("|", "&#124;")


def md_code(value) -> str:
    return f"<code>{md_text(value)}</code>"


def md_fenced(text: str) -> list[str]:
    """`text` as a fenced code block whose fence is longer than any run of backticks inside it."""
    text = re.sub(r"\r\n?", "\n", clean_text(text))
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [fence, text, fence]


def _element(parent: ET.Element | None, tag: str, text=None, **attrs) -> ET.Element:
    """A (sub)element whose attribute values and text are made XML 1.0-safe by clean_text."""
    safe = {k: clean_text(v) for k, v in attrs.items()}
    element = ET.Element(tag, safe) if parent is None else ET.SubElement(parent, tag, safe)
    if text is not None:
        element.text = clean_text(text)
    return element


def junit_xml(results: dict) -> str:
    """One testcase per gate. Property values are the raw numbers, for tools that read them back."""
    gates, env, strict = results["gates"], results["environment"], is_strict(results)
    outcomes = [_junit_outcome(g, strict) for g in gates]
    suite = _element(None, "testsuite", name=SUITE_NAME, tests=len(gates), failures=outcomes.count("failure"),
                     errors=0, skipped=outcomes.count("skipped"), time=f"{results['timing']['wall_s']:.1f}",
                     timestamp=results["created"])
    props = _element(suite, "properties")
    for name, value in (("passed", results["passed"]), ("verdict", verdict(results)), ("strict", strict),
                        ("candidate", env["candidate"]["source"]), ("reference", env["reference"]["source"])):
        _element(props, "property", name=name, value=value)
    for g, outcome in zip(gates, outcomes):
        case = _element(suite, "testcase", classname=SUITE_NAME, name=g["id"], time="0")
        case_props = _element(case, "properties")
        for key in ("metric", "value", "reference", "threshold", "op", "severity", "status"):
            _element(case_props, "property", name=key, value=g[key])
        _junit_result(case, g, outcome)
    return _document(suite)


def _junit_outcome(gate: dict, strict: bool) -> str | None:
    """The JUnit element a gate's status becomes: "failure", "skipped", "system-out" (warned) or None
    (passed); an undecided gate fails under strict only if it could block a release (fail severity)."""
    status = gate["status"]
    if status == "fail" or (strict and undecided_blocks(status, gate["severity"])):
        return "failure"
    if status in ("skip", "inconclusive", "uninformative"):
        return "skipped"
    return "system-out" if status == "warn" else None


def _junit_result(case: ET.Element, gate: dict, outcome: str | None) -> None:
    """The gate's outcome element; an inconclusive or uninformative one says so, since JUnit has no such status."""
    status = gate["status"]
    message = gate["message"] if status in ("fail", "skip") else f"{status}: {gate['message']}"
    if outcome == "failure":
        kind = "GateInconclusive" if status == "inconclusive" else "GateFailed"
        _element(case, "failure", gate_failure_text(gate), message=message, type=kind)
    elif outcome == "skipped":
        _element(case, "skipped", gate_failure_text(gate) if status == "inconclusive" else None, message=message)
    elif outcome == "system-out":
        _element(case, "system-out", "WARNING " + gate_failure_text(gate))


def junit_error_xml(message: str, kind: str = "RuntimeError") -> str:
    """A JUnit file for a run that could not produce results (bad config, unreadable model, crash)."""
    suite = _element(None, "testsuite", name=SUITE_NAME, tests=1, failures=0, errors=1, skipped=0, time=0)
    case = _element(suite, "testcase", classname=SUITE_NAME, name="awqguard-check", time=0)
    _element(case, "error", message, message=message, type=kind)
    return _document(suite)


def _document(suite: ET.Element) -> str:
    root = _element(None, "testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_markdown(results: dict, report_name: str = "report.html") -> str:
    """The verdict, gate table and failed, warned and inconclusive gates' evidence in Markdown; every
    value escaped (see md_text)."""
    env = results["environment"]
    icon = ICON[verdict(results)]
    note = verdict_note(results)
    verdict_line = verdict_sentence(results, lambda word: f"{icon} **awqguard: {word}**")
    lines = [f"{verdict_line} ({run_counts(results['summary'])})", ""]
    if note:
        lines += [md_text(note[0].upper() + note[1:] + "."), ""]
    lines += [f"Candidate {md_code(env['candidate']['source'])} vs reference {md_code(env['reference']['source'])}, "
              f"suite {md_code(env['suite']['name'])}, seeds {md_text(env['seeds'])}.", ""]
    if results["symptoms"]:
        symptoms = ", ".join(f"{md_text(x['title'])} ({md_code(x['id'])})" for x in results["symptoms"])
        lines += [f"**Symptoms:** {symptoms}", ""]
    lines += ["| | gate | metric | candidate | reference | threshold |", "|---|---|---|---:|---:|---|"]
    for g in results["gates"]:
        lines.append(f"| {ICON[g['status']]} | {md_text(g['id'])} | {md_code(g['metric'])}{md_text(estimate_note(results, g['metric']))} | {number(g['value'])} | "
                     f"{number(g['reference'])} | {md_text(threshold_text(g))} |")
    lines += _md_uninformative(results["gates"]) + _md_details(results["gates"])
    lines += ["", f"Full report: {md_code(report_name)} (self-contained HTML)."]
    return "\n".join(lines) + "\n"


def _md_uninformative(gates: list[dict]) -> list[str]:
    """One line per uninformative gate with its reason: the table's ➖ alone does not say why it could not fail."""
    lines = [f"- {ICON['uninformative']} **{md_text(g['id'])}**: {md_text(g['message'])}"
             for g in gates if g["status"] == "uninformative"]
    return ["", "Uninformative gates (they could not fail whatever the candidate did):", *lines] if lines else []


def _md_details(gates: list[dict]) -> list[str]:
    """The failed, warned and inconclusive gates' evidence, folded under one <details>."""
    problems = [g for g in gates if g["status"] in DETAILED]
    if not problems:
        return []
    kinds = [word for status, word in DETAILED.items() if any(g["status"] == status for g in problems)]
    title = (", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0]).capitalize()
    lines = ["", f"<details><summary>{title} gates: evidence and fixes</summary>", ""]
    for g in problems:
        lines += [f"**{md_text(g['id'])}** ({g['status']})", *md_fenced(gate_failure_text(g)), ""]
    return lines + ["</details>"]
