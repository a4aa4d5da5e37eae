"""Files for CI systems, written beside results.json: junit.xml and summary.md.

JUnit: one testcase per gate; a failed fail-severity gate is a <failure>, a skipped gate <skipped>,
and a run that could not finish is one <error> (a runtime problem, not a verdict). The Markdown
summary is short enough for a CI step summary or a pull-request comment.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

SUITE_NAME = "awqguard.gates"


def _value(v) -> str:
    return "–" if v is None else f"{v:.4g}"


def threshold_text(gate: dict, tolerance: bool = False) -> str:
    """"<= 0.1", marked "(vs ref)" where the gate was judged against the reference (with its tolerance)."""
    bar = f"{gate['op']} {gate['threshold']:g}"
    if gate.get("basis") != "reference":
        return bar
    return bar + (f" (vs ref, tolerance {gate['tolerance']:g})" if tolerance else " (vs ref)")


def gate_failure_text(gate: dict) -> str:
    """The few lines that explain a failed (or warned) gate: value vs threshold, worst items, symptoms, fixes."""
    lines = [f"{gate['id']}: {gate['message']}"]
    if gate.get("ci"):
        lines.append(f"95% interval over items: [{_value(gate['ci'][0])}, {_value(gate['ci'][1])}]")
    if gate.get("reference") is not None:
        lines.append(f"reference: {_value(gate['reference'])}")
    if gate.get("worst_items"):
        lines.append("worst items: " + ", ".join(f"{w['item']} ({_value(w['value'])})" for w in gate["worst_items"]))
    lines += [f"symptom: {s['title']} ({s['id']})" for s in gate.get("symptoms", [])]
    lines += [f"fix: {f}" for f in gate.get("fixes", [])]
    return "\n".join(lines)


def junit_xml(results: dict) -> str:
    gates = results["gates"]
    failures = sum(g["status"] == "fail" for g in gates)
    skipped = sum(g["status"] == "skip" for g in gates)
    suite = ET.Element("testsuite", name=SUITE_NAME, tests=str(len(gates)), failures=str(failures), errors="0",
                       skipped=str(skipped), time=f"{results.get('timing', {}).get('wall_s', 0):.1f}",
                       timestamp=str(results.get("created", "")))
    props = ET.SubElement(suite, "properties")
    for name, value in (("passed", results["passed"]), ("candidate", results.get("environment", {}).get("candidate", {}).get("source")),
                        ("reference", results.get("environment", {}).get("reference", {}).get("source"))):
        ET.SubElement(props, "property", name=name, value=str(value))
    for g in gates:
        case = ET.SubElement(suite, "testcase", classname=SUITE_NAME, name=g["id"], time="0")
        case_props = ET.SubElement(case, "properties")
        for key in ("metric", "value", "reference", "threshold", "op", "severity", "status"):
            ET.SubElement(case_props, "property", name=key, value=str(g.get(key)))
        if g["status"] == "fail":
            ET.SubElement(case, "failure", message=g["message"], type="GateFailed").text = gate_failure_text(g)
        elif g["status"] == "skip":
            ET.SubElement(case, "skipped", message=g["message"])
        elif g["status"] == "warn":
            ET.SubElement(case, "system-out").text = "WARNING " + gate_failure_text(g)
    return _document(suite)


def junit_error_xml(message: str, kind: str = "RuntimeError") -> str:
    """A JUnit file for a run that could not produce results (bad config, unreadable model, crash)."""
    suite = ET.Element("testsuite", name=SUITE_NAME, tests="1", failures="0", errors="1", skipped="0", time="0")
    case = ET.SubElement(suite, "testcase", classname=SUITE_NAME, name="awqguard-check", time="0")
    ET.SubElement(case, "error", message=message, type=kind).text = message
    return _document(suite)


def _document(suite: ET.Element) -> str:
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_markdown(results: dict, report_name: str = "report.html") -> str:
    s = results["summary"]
    env = results.get("environment", {})
    icon = {"pass": "✅", "fail": "❌", "warn": "⚠️", "skip": "⏭️"}
    head = "✅ **awqguard: PASSED**" if results["passed"] else "❌ **awqguard: FAILED**"
    lines = [f"{head}: {s['failed']} failed, {s['warned']} warned, {s['skipped']} skipped of {s['gates']} gates "
             f"({s['items']} items, {s['runs']} paired runs)", ""]
    if env:
        lines += [f"Candidate `{env.get('candidate', {}).get('source')}` vs reference `{env.get('reference', {}).get('source')}`, "
                  f"suite `{env.get('suite', {}).get('name')}`, seeds {env.get('seeds')}.", ""]
    if results.get("symptoms"):
        lines += ["**Symptoms:** " + ", ".join(f"{x['title']} (`{x['id']}`)" for x in results["symptoms"]), ""]
    lines += ["| | gate | metric | candidate | reference | threshold |", "|---|---|---|---:|---:|---|"]
    for g in results["gates"]:
        lines.append(f"| {icon[g['status']]} | {g['id']} | `{g['metric']}` | {_value(g['value'])} | "
                     f"{_value(g['reference'])} | {threshold_text(g)} |")
    problems = [g for g in results["gates"] if g["status"] in ("fail", "warn")]
    if problems:
        lines += ["", "<details><summary>Failed and warned gates: evidence and fixes</summary>", ""]
        for g in problems:
            lines += [f"**{g['id']}** ({g['status']})", "```", gate_failure_text(g), "```", ""]
        lines.append("</details>")
    lines += ["", f"Full report: `{report_name}` (self-contained HTML)."]
    return "\n".join(lines) + "\n"
