"""Inconclusive and uninformative gates in every output: named as such, never shown as passed, and
failing the check only where strict mode says so; a results.json written before them still renders."""

import html
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest
from helpers import INCONCLUSIVE_MESSAGE, UNINFORMATIVE_MESSAGE, minimal_results, undecided_results
from rich.console import Console

from awqguard.cli import main
from awqguard.report import format as fmt
from awqguard.report import schema
from awqguard.report.ci import junit_xml, summary_markdown
from awqguard.report.html import render_report
from awqguard.report.outputs import print_results

UNDECIDED = {"hit-rate": ("inconclusive", INCONCLUSIVE_MESSAGE), "json-valid": ("uninformative", UNINFORMATIVE_MESSAGE)}


def _terminal(results: dict) -> str:
    buffer = io.StringIO()
    print_results(results, Console(file=buffer, width=200, color_system=None))
    return buffer.getvalue()


def _suite(results: dict) -> ET.Element:
    return ET.fromstring(junit_xml(results).encode()).find("testsuite")


def test_format_reads_the_verdict_and_counts_the_new_statuses():
    results = undecided_results()
    assert fmt.verdict(results) == "inconclusive" and fmt.is_strict(results) is False
    assert fmt.verdict_sentence(results) == ("INCONCLUSIVE: 0 failed, 1 warned, 1 inconclusive, 1 uninformative, "
                                             "1 skipped of 6 gates")
    assert fmt.verdict_note(results) == ("no gate failed; 1 gate could not be decided on this evidence "
                                         "(--strict makes that fail)")
    results["summary"]["inconclusive"] = 2
    results["gates"][1]["status"] = "inconclusive"
    assert "2 gates could not be decided" in fmt.verdict_note(results, "--awq-strict")
    assert "(--awq-strict makes that fail)" in fmt.verdict_note(results, "--awq-strict")
    strict = undecided_results(strict=True)
    assert fmt.verdict_sentence(strict).startswith("FAILED: 0 failed, 1 warned, 1 inconclusive")
    assert "fails the check under strict mode" in fmt.verdict_note(strict)
    assert fmt.verdict_note(minimal_results()) == ""


def test_evidence_says_how_many_units_the_interval_rests_on():
    gate = next(g for g in undecided_results()["gates"] if g["id"] == "hit-rate")
    assert fmt.evidence_lines(gate)[0] == "95% interval over 12 resampling units: [0.060, 0.130]"
    assert fmt.evidence_lines({**gate, "ci": None, "n": 3})[0] == "resampling units: 3"       # too few to resample
    assert fmt.evidence_lines({**gate, "n": None})[0] == "95% interval over items: [0.060, 0.130]"


def test_terminal_names_undecided_gates_and_never_passes_them():
    text = _terminal(undecided_results())
    rows = {gate_id: next(line for line in text.splitlines() if line.startswith(f"│ {gate_id} ")) for gate_id in UNDECIDED}
    for gate_id, (status, message) in UNDECIDED.items():
        assert status.upper() in rows[gate_id] and "PASS" not in rows[gate_id]
        assert f"\n{status.upper()} {gate_id}: {message}\n" in text
    assert "  95% interval over 12 resampling units: [0.060, 0.130]\n" in text        # inconclusive: its evidence
    after = text.split(f"UNINFORMATIVE json-valid: {UNINFORMATIVE_MESSAGE}\n", 1)[1]
    assert not after.startswith("  ")                                                # uninformative: one line
    assert ("\nINCONCLUSIVE: 0 failed, 1 warned, 1 inconclusive, 1 uninformative, 1 skipped of 6 gates — no gate "
            "failed; 1 gate could not be decided on this evidence (--strict makes that fail); 1 items") in text
    assert "PASSED" not in text


def test_terminal_under_strict_fails_the_verdict():
    text = _terminal(undecided_results(strict=True))
    assert "\nFAILED: 0 failed, 1 warned, 1 inconclusive" in text and "INCONCLUSIVE hit-rate" in text


def test_junit_skips_undecided_gates_and_fails_inconclusive_ones_under_strict():
    suite = _suite(undecided_results())
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert (suite.get("failures"), suite.get("skipped"), suite.get("tests")) == ("0", "3", "6")
    for gate_id, (status, message) in UNDECIDED.items():
        assert cases[gate_id].find("skipped").get("message") == f"{status}: {message}"
        assert cases[gate_id].find("failure") is None
    assert "95% interval over 12 resampling units" in cases["hit-rate"].find("skipped").text
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert (props["verdict"], props["strict"], props["passed"]) == ("inconclusive", "False", "True")

    strict = _suite(undecided_results(strict=True))
    cases = {c.get("name"): c for c in strict.findall("testcase")}
    assert (strict.get("failures"), strict.get("skipped")) == ("1", "2")
    failure = cases["hit-rate"].find("failure")
    assert failure.get("type") == "GateInconclusive" and failure.get("message") == f"inconclusive: {INCONCLUSIVE_MESSAGE}"
    assert cases["hit-rate"].find("skipped") is None
    assert cases["json-valid"].find("skipped").get("message") == f"uninformative: {UNINFORMATIVE_MESSAGE}"
    props = {p.get("name"): p.get("value") for p in strict.find("properties")}
    assert (props["verdict"], props["strict"], props["passed"]) == ("fail", "True", "False")


def test_summary_markdown_shows_undecided_gates():
    md = summary_markdown(undecided_results())
    assert md.startswith("❔ **awqguard: INCONCLUSIVE**: 0 failed, 1 warned, 1 inconclusive")
    assert "\nNo gate failed; 1 gate could not be decided on this evidence (--strict makes that fail).\n" in md
    assert "\n| ❔ | hit-rate |" in md and "\n| ➖ | json-valid |" in md and "| ✅ | json-valid" not in md
    assert "<summary>Warned and inconclusive gates: evidence and fixes</summary>" in md
    assert "**hit-rate** (inconclusive)\n```\nhit-rate: " in md
    assert "- ➖ **json-valid**: the reference scores 1.000" in md
    assert summary_markdown(undecided_results(strict=True)).startswith("❌ **awqguard: FAILED**")


def test_report_shows_undecided_gates_with_their_reason():
    results = undecided_results()
    page = render_report(results)                                          # validates against the schema first
    assert '<section class="verdict inconclusive"' in page and "<h1>INCONCLUSIVE" in page
    assert "<title>awqguard: INCONCLUSIVE" in page
    assert "1 warned, 1 inconclusive, 1 uninformative, 1 skipped" in page
    assert '<a class="gate-link inconclusive" href="#gate-hit-rate">hit-rate</a>' in page
    for gate_id, (status, message) in UNDECIDED.items():
        row = re.search(rf'<tr class="{status}" id="gate-{gate_id}">(.*?)</tr>', page, re.S).group(1)
        assert f'<span class="badge {status}">{status.upper()}</span>' in row and "PASS" not in row
        assert f'<div class="desc">{html.escape(message, quote=False)}</div>' in row
        assert f".badge.{status} {{" in page and f"tr.{status} td {{" in page
    assert "[0.060, 0.130] · n 12" in page
    assert '<section class="verdict fail"' in render_report(undecided_results(strict=True))


def _edited(**changes):
    def edit(d):
        for key, value in changes.items():
            where, _, key = key.rpartition("/")
            (d[where] if where else d)[key] = value
    return edit


EDITED = {   # an edit of undecided_results the reader must refuse: (edit, words its message holds)
    "verdict says pass": (_edited(verdict="pass"), ["verdict is pass", "make it inconclusive", "edited"]),
    "unknown verdict": (_edited(verdict="maybe"), ["verdict", "'maybe'"]),
    "count dropped": (lambda d: d["summary"].pop("inconclusive"), ["summary says", "1 inconclusive", "edited"]),
    "strict but passed": (_edited(strict=True), ["verdict is inconclusive", "make it fail"]),
    "strict, verdict fail, passed": (_edited(strict=True, verdict="fail"), ["passed is true", "inconclusive under strict"]),
    "n is text": (lambda d: d["gates"][4].update(n="12"), ["gates[4].n", "'12'"]),
    "strict is text": (_edited(strict="yes"), ["strict", "'yes'"]),
    "count is negative": (_edited(**{"summary/uninformative": -1}), ["summary.uninformative", "-1"]),
}


@pytest.mark.parametrize("name", EDITED)
def test_schema_accepts_the_new_keys_and_refuses_them_edited(name):
    schema.validate_results(undecided_results(), "undecided.json")
    schema.validate_results(undecided_results(strict=True), "undecided.json")
    edit, words = EDITED[name]
    results = undecided_results()
    edit(results)
    with pytest.raises(ValueError) as err:
        schema.validate_results(results, "undecided.json")
    for word in words:
        assert word in str(err.value), str(err.value)


@pytest.mark.parametrize("passed", [False, True])
def test_results_written_before_the_new_statuses_still_render(tmp_path, capsys, passed):
    results = minimal_results()
    if passed:
        results["gates"][1].update(status="pass", passed=True)
        results["summary"]["failed"], results["passed"] = 0, True
    assert not {"strict", "verdict"} & set(results) and not {"inconclusive", "uninformative"} & set(results["summary"])
    assert all("n" not in g for g in results["gates"])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert main(["report", str(path)]) == 0
    word, css = ("PASSED", "pass") if passed else ("FAILED", "fail")
    assert f"{word}: {results['summary']['failed']} failed, 1 warned, 1 skipped of 4 gates" in capsys.readouterr().out
    assert f'<section class="verdict {css}"' in (tmp_path / "report.html").read_text()
    props = {p.get("name"): p.get("value") for p in _suite(results).find("properties")}
    assert (props["verdict"], props["strict"]) == (css, "False")
    assert summary_markdown(results).startswith(f"{'✅' if passed else '❌'} **awqguard: {word}**")
    assert "inconclusive" not in _terminal(results).lower()


def _warn_undecided(strict: bool = False, verdict: str = "pass") -> dict:
    """undecided_results with its inconclusive gate of warn severity, and the verdict that makes."""
    results = undecided_results(strict)
    results["gates"][4]["severity"] = "warn"
    results.update(verdict=verdict, passed=verdict != "fail")
    return results


def test_an_undecided_warn_gate_fails_nothing_even_under_strict():
    from awqguard.pytest_plugin import gate_outcome
    for strict in (False, True):
        results = _warn_undecided(strict)
        schema.validate_results(results, "warn.json")
        assert fmt.verdict(results) == "pass"
        assert fmt.verdict_note(results) == ("1 warn-severity gate could not be decided on this evidence; "
                                             "like a warning, that does not move the verdict")
        suite = _suite(results)
        assert suite.get("failures") == "0"
        assert {c.get("name"): c for c in suite.findall("testcase")}["hit-rate"].find("skipped") is not None
        assert gate_outcome(results["gates"][4], strict)[0] == "skip"


def test_a_results_file_from_when_warn_gates_counted_still_reads():
    """Written before undecided warn-severity gates stopped moving the verdict: still valid, and its
    note says what its verdict meant then."""
    for strict, verdict in ((False, "inconclusive"), (True, "fail")):
        results = _warn_undecided(strict, verdict)
        schema.validate_results(results, "earlier.json")
        assert "could not be decided on this evidence" in fmt.verdict_note(results)
        assert "warn-severity" not in fmt.verdict_note(results)
