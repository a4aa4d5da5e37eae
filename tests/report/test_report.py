"""The HTML report, junit.xml and summary.md: from a real (tiny-model) check's results."""

import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from helpers import minimal_results

from awqguard.cli import main
from awqguard.gates import document
from awqguard.report import schema, svg
from awqguard.report.ci import junit_xml, summary_markdown
from awqguard.report.html import render_report, report_view


def test_ticks_are_round_and_cover_the_range():
    assert svg.nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1]
    assert svg.nice_ticks(0, 37, 4) == [0, 20, 40]
    assert svg.nice_ticks(-0.03, 0.41) == [-0.2, 0, 0.2, 0.4, 0.6]


def test_charts_draw_what_they_are_given():
    line = svg.line_chart("t", [svg.Series("ref", [1, 2, 3], "ref"), svg.Series("cand", [1, 3, 5], "cand")],
                          "x", "y", markers=[(1, "onset", "cand")])
    assert line.count("<polyline") == 2 and 'class="marker cand"' in line
    hist = svg.histogram("h", [svg.Series("a", [0.05, 0.15, 0.15, 0.95], "ref")], 10, 0.0, 1.0, "v")
    assert hist.count("<rect class=\"bar ref\"") == 3 and "2 items in [0.10, 0.20)" in hist
    ivs = svg.interval_chart("i", ["a", "b"], [0.3, 0.05], [(0.2, 0.4), None], "drift", threshold=0.15)
    assert ivs.count('class="point over"') == 1 and ivs.count("<circle") == 2
    assert "no data" in svg.line_chart("e", [svg.Series("x", [], "ref")], "x", "y")


def test_report_shows_verdict_gates_plots_items_and_fingerprint(failing_check):
    results, paths = failing_check
    html = paths["report"].read_text()
    assert "FAILED" in html and f"{results['summary']['failed']} of {results['summary']['gates']} gates failed" in html
    for g in results["gates"]:
        assert f"<strong>{g['id']}</strong>" in html
    assert html.count("<svg") == 4                                     # entropy, drift, KL, coverage
    for item_id in results["items"]:
        assert item_id in html
    for s in results["symptoms"]:
        assert s["title"] in html
    assert results["environment"]["suite"]["fingerprint"] in html and results["environment"]["torch"] in html


def test_report_makes_no_network_requests(failing_check):
    html = failing_check[1]["report"].read_text()
    without_svg_ns = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://|\bsrc=|<link|@import|url\(", without_svg_ns)


def test_item_rows_flag_flips_and_rank_drift(failing_check):
    results, _ = failing_check
    rows = report_view(results)["rows"]
    drifts = [r["drift"] for r in rows]
    assert drifts == sorted(drifts, reverse=True)
    for r in rows:
        s = results["items"][r["id"]]
        assert r["flipped"] == (s["reference"]["lambda"] != s["candidate"]["lambda"]
                                or s["reference"]["retrieved"][:1] != s["candidate"]["retrieved"][:1])
        assert r["answers"] == [s["reference"]["answer"], s["candidate"]["answer"]]


def test_passing_results_render_as_passed(failing_check):
    results = json.loads(json.dumps(failing_check[0]))
    results["passed"] = True
    for g in results["gates"]:
        g["status"], g["passed"] = "pass", True
    results["symptoms"] = []
    results["summary"].update(failed=0, warned=0, skipped=0, inconclusive=0, uninformative=0, symptoms=[])
    results["verdict"] = "pass"
    schema.validate_results(results, "passing.json")
    html = render_report(results)
    assert 'class="verdict pass"' in html and "No gate failed or warned" in html


def test_junit_has_a_case_per_gate_with_failures_and_properties(failing_check):
    results, paths = failing_check
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [g["id"] for g in results["gates"]]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == [g["id"] for g in results["gates"] if g["status"] == "fail"] and failed
    assert int(suite.get("failures")) == len(failed)
    first = cases[0].find("properties")
    assert {p.get("name") for p in first} >= {"metric", "value", "threshold", "status"}
    text = next(c for c in cases if c.find("failure") is not None).find("failure").text
    assert "symptom:" in text and "fix:" in text


def test_summary_markdown_is_short_and_names_failures(failing_check):
    results, paths = failing_check
    md = paths["summary"].read_text()
    assert md.startswith("❌ **awqguard: FAILED**")
    assert md.count("\n| ") == len(results["gates"]) + 1
    assert len(md.splitlines()) < 120


def test_report_command_renders_results_json(failing_check, tmp_path, capsys):
    _, paths = failing_check
    out = tmp_path / "r.html"
    assert main(["report", str(paths["results"]), "-o", str(out)]) == 0
    assert out.read_text() == paths["report"].read_text()
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, "{not json", '{"a": 1}'])
def test_report_command_rejects_what_is_not_results_json(tmp_path, capsys, content):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path)]) == 4
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert not (tmp_path / "report.html").exists()


def test_check_that_cannot_run_leaves_a_junit_error(tmp_path, capsys):
    cfg = tmp_path / "awqguard.yaml"
    cfg.write_text("pipeline:\n  top_kk: 3\n")
    assert main(["check", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 4
    case = ET.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite/testcase")
    assert case.find("error") is not None and "top_kk" in case.find("error").get("message")


def test_engine_results_match_the_schema(failing_check):
    results, paths = failing_check
    jsonschema.Draft202012Validator.check_schema(schema.SCHEMA)
    schema.validate_results(results, paths["results"])
    assert schema.SCHEMA_VERSION == document.SCHEMA_VERSION          # the writer's number and the reader's


def test_hand_made_results_match_the_schema_and_render():
    results = minimal_results()
    schema.validate_results(results, "minimal.json")
    assert "FAILED" in render_report(results) and "perplexity-ratio" in junit_xml(results)
    assert summary_markdown(results).startswith("❌")


def test_schema_problems_are_one_message_naming_file_and_paths(failing_check):
    results = json.loads(json.dumps(failing_check[0]))
    del results["gates"][3]["status"]
    results["gates"][5]["threshold"] = "x"
    with pytest.raises(ValueError) as err:
        schema.validate_results(results, "reports/latest/results.json")
    assert str(err.value) == ("reports/latest/results.json: gates[3]: 'status' is a required property; "
                              "gates[5].threshold: 'x' is not of type 'number'")


def _without(where: str):
    def edit(d):
        *steps, last = where.split("/")
        for step in steps:
            d = d[int(step) if step.isdigit() else step]
        del d[int(last) if last.isdigit() else last]
    return edit


READ_BY_THE_RENDERER = {   # a key report.html, junit.xml or summary.md reads: (edit, the path the message names)
    "question": (_without("items/q001/question"), "items.q001: 'question' is a required property"),
    "answer": (_without("items/q001/candidate/answer"), "items.q001.candidate: 'answer' is a required property"),
    "seed noise": (_without("items/q001/drift/seed_noise"), "items.q001.drift: 'seed_noise' is a required"),
    "gate ci": (_without("gates/0/ci"), "gates[0]: 'ci' is a required property"),
    "gate basis": (_without("gates/1/basis"), "gates[1]: 'basis' is a required property"),
    "threads": (_without("environment/threads"), "environment: 'threads' is a required property"),
    "candidate source": (_without("environment/candidate/source"), "environment.candidate: 'source' is a required"),
    "wall time": (_without("timing/wall_s"), "timing: 'wall_s' is a required property"),
    "notices": (_without("notices"), "(top level): 'notices' is a required property"),
    "entropy null": (lambda d: d.update(entropy=None), "entropy: None is not of type 'object'"),
    "curves without kl_mean": (lambda d: d["entropy"].update(
        entropy_reference=[1.0], smoothed_reference=[1.0], smoothed_candidate=[1.0], kl=[0.0],
        onset_candidate=None, slope_excess=0.0, sequences=1), "metrics: 'continuation.kl_mean' is a required"),
    "curves without onset": (lambda d: d["entropy"].update(entropy_reference=[1.0]),
                             "entropy: 'smoothed_reference' is a required property"),
}


@pytest.mark.parametrize("name", READ_BY_THE_RENDERER)
def test_schema_requires_what_the_outputs_read(name):
    edit, message = READ_BY_THE_RENDERER[name]
    results = minimal_results()
    edit(results)
    with pytest.raises(ValueError, match="^minimal.json: .*" + re.escape(message)):
        schema.validate_results(results, "minimal.json")
    with pytest.raises(ValueError, match="^results: .*" + re.escape(message)):
        render_report(results)                       # the public API refuses it the same way, not with a KeyError


def test_optional_values_render_without_them():
    results = minimal_results()
    results["items"]["q001"]["drift"].update(seed_noise=None, answer_ds_ci=None)     # greedy decoding
    html = render_report(results)
    assert "the suite has no long items" in html and "drift-mean" in html
