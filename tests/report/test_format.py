"""One wording for numbers, thresholds and the verdict, and every output uses it."""

import io
import xml.etree.ElementTree as ET

from helpers import minimal_results
from rich.console import Console

from awqguard.report import format as fmt
from awqguard.report.ci import junit_xml, summary_markdown
from awqguard.report.html import render_report
from awqguard.report.outputs import print_results


def test_numbers_line_up_and_say_what_is_missing():
    assert [fmt.number(v) for v in (0.05, 12.73245, -1.24681, 0.0, 999.9994)] == \
        ["0.050", "12.732", "-1.247", "0.000", "999.999"]
    assert fmt.number(544724.2) == "544724" and fmt.number(1000.4) == "1000"      # whole from 1000 on
    assert fmt.number(None) == "–" and fmt.number(True) == "yes" and fmt.number(False) == "no"
    assert fmt.number(2) == "2" and fmt.number("cpu") == "cpu"                    # a count, a label
    assert fmt.number(36.4, 0) == "36" and fmt.number(0.123456, 4) == "0.1235"


def test_configured_numbers_and_ticks_read_as_written():
    assert [fmt.bound(v) for v in (0.4, 0, 1.2, 0.05)] == ["0.4", "0", "1.2", "0.05"]
    assert [fmt.tick(v) for v in (0.25, 0, 20, 0.001)] == ["0.25", "0", "20", "1e-03"]
    assert fmt.interval([0.1234, None]) == "[0.123, –]"


def test_threshold_text_marks_gates_judged_against_the_reference():
    gate = {"op": ">=", "threshold": 0.7, "basis": "absolute", "tolerance": 0.05}
    assert fmt.threshold_text(gate) == fmt.threshold_text(gate, tolerance=True) == ">= 0.7"
    gate["basis"] = "reference"
    assert fmt.threshold_text(gate) == ">= 0.7 (vs ref)"
    assert fmt.threshold_text(gate, tolerance=True) == ">= 0.7 (vs ref, tolerance 0.05)"


def test_verdict_sentence_and_counts():
    results = minimal_results()
    assert fmt.verdict_sentence(results) == "FAILED: 1 failed, 1 warned, 1 skipped of 4 gates"
    assert fmt.verdict_sentence(results, lambda w: f"**{w}**") == "**FAILED**: 1 failed, 1 warned, 1 skipped of 4 gates"
    assert fmt.failed_of(results["summary"]) == "1 of 4 gates failed"
    assert fmt.run_counts(results["summary"]) == "1 items, 2 paired runs"


def test_failure_text_gives_evidence_before_symptoms_and_fixes():
    gate = {**minimal_results()["gates"][1], "ci": [0.41, 0.6], "reference": 0.2}
    assert fmt.gate_failure_text(gate).split("\n") == [
        "perplexity-ratio: perplexity-ratio.mean = 0.5 fails <= 0.1",
        "95% interval over items: [0.410, 0.600]", "reference: 0.200", "worst items: q001 (0.400)",
        "symptom: Perplexity rises and answers drift (ppl-drift)", "fix: decode deterministically: awqguard check --greedy"]
    probes = {**gate, "worst_items": [{"item": "q001", "value": 0.86, "probe": "k=5"}, {"item": "q002", "value": 0.5}]}
    assert "worst items: q001 k=5 (0.860), q002 (0.500)" in fmt.gate_failure_text(probes)


def test_every_output_uses_the_same_words():
    results = minimal_results()
    sentence, runs = fmt.gate_counts(results["summary"]), fmt.run_counts(results["summary"])
    buffer = io.StringIO()
    print_results(results, Console(file=buffer, width=200, color_system=None))
    terminal, md, html = buffer.getvalue(), summary_markdown(results), render_report(results)
    assert f"FAILED: {sentence}; {runs}; wall time 2 s" in terminal
    assert md.startswith(f"❌ **awqguard: FAILED**: {sentence} ({runs})")
    assert fmt.failed_of(results["summary"]) in html and runs in html
    failed = results["gates"][1]
    for line in fmt.evidence_lines(failed):
        assert f"  {line}\n" in terminal and line in md
    junit = ET.fromstring(junit_xml(results).encode())
    assert next(junit.iter("failure")).text == fmt.gate_failure_text(failed)
    for g in results["gates"]:                          # the value columns: one formatter in all three
        assert f"| {fmt.number(g['value'])} |" in md and fmt.number(g["value"]) in terminal
        assert f'<td class="num">{fmt.number(g["value"])}' in html
