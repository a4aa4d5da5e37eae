"""Hostile input: `awqguard report` on damaged, edited or foreign results.json and bad -o paths
(always exit 4, one message naming the file, nothing left behind); junit.xml and summary.md from
ids and messages that carry control characters, markup and backticks."""

import copy
import json
import re
import xml.dom.minidom
import xml.etree.ElementTree as ET

import pytest
from helpers import minimal_results

from awqguard import files
from awqguard.cli import main
from awqguard.report.ci import junit_error_xml, junit_xml, summary_markdown

# ---- awqguard report on a hostile results.json ------------------------------------------------------


def _run_report(capsys, tmp_path, *argv) -> str:
    """Run `awqguard report ARGV` in-process; assert exit 4, no traceback and no file left behind; return stderr."""
    before = sorted(tmp_path.rglob("*"))
    code = main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 4, (out, err)
    assert "Traceback" not in out + err
    assert sorted(tmp_path.rglob("*")) == before          # no report.html, no temporary sibling
    return err


RAW = {   # name: (file content, or None for no file, or "dir"; words stderr must hold besides the path)
    "missing file": (None, ["no such file"]),
    "a folder": ("dir", ["folder"]),
    "empty file": (b"", ["not valid JSON"]),
    "not JSON": (b"{not json", ["not valid JSON", "line 1"]),
    "JSON array": (b"[1, 2]", ["array", "not an object"]),
    "JSON string": (b'"results"', ["string", "not an object"]),
    "not UTF-8": (b'{"passed": "\xff\xfe"}', ["UTF-8"]),
    "foreign object": (b'{"a": 1}', ["not an awqguard results.json", "passed", "gates"]),
    "nested too deep": (b"[" * 100_000 + b"]" * 100_000, ["nested"]),
}


@pytest.mark.parametrize("name", RAW)
def test_report_refuses_what_is_not_json_results(tmp_path, capsys, name):
    content, words = RAW[name]
    path = tmp_path / "results.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    err = _run_report(capsys, tmp_path, path)
    assert str(path) in err
    for word in words:
        assert word in err


def _drop_status(d):
    del d["gates"][3]["status"]


def _set(where: str, key, value):
    def edit(d):
        target = d
        for step in where.split("/") if where else []:
            target = target[int(step) if step.isdigit() else step]
        target[key] = value
    return edit


DAMAGED = {   # name: (edit of real results, words stderr must hold besides the path)
    "gate without status": (_drop_status, ["gates[3]", "'status' is a required property"]),
    "threshold is a string": (_set("gates/5", "threshold", "x"), ["gates[5].threshold", "'x' is not of type 'number'"]),
    "items is not a mapping": (_set("", "items", ["q001"]), ["items", "is not of type 'object'"]),
    "unknown status": (_set("gates/0", "status", "maybe"), ["gates[0].status", "'maybe'"]),
    "gates is not a list": (_set("", "gates", {"a": 1}), ["gates", "is not of type 'array'"]),
    "summary count is text": (_set("summary", "failed", "1"), ["summary.failed", "'1'"]),
    "item side without lambda": (lambda d: d["items"][next(iter(d["items"]))]["candidate"].pop("lambda"),
                                 ["candidate", "'lambda' is a required property"]),
    "schema_version 99": (_set("", "schema_version", 99), ["schema_version 99", "reads schema_version 1", "newer"]),
    "schema_version text": (_set("", "schema_version", "1"), ["schema_version", "not of type 'integer'"]),
    "a gate deleted": (lambda d: d["gates"].pop(2), ["summary", "edited", "gate"]),
    "a status edited": (_set("gates/0", "status", "skip"), ["summary", "edited"]),
    "verdict edited": (_set("", "passed", True), ["passed", "failed", "edited"]),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_report_refuses_damaged_or_edited_results(failing_check, tmp_path, capsys, name):
    edit, words = DAMAGED[name]
    data = copy.deepcopy(failing_check[0])
    edit(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    err = _run_report(capsys, tmp_path, path)
    assert str(path) in err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_report_refuses_non_finite_numbers(failing_check, tmp_path, capsys, constant):
    data = copy.deepcopy(failing_check[0])
    data["gates"][1]["value"] = "@@@"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data).replace('"@@@"', constant))
    err = _run_report(capsys, tmp_path, path)
    assert str(path) in err and "gates[1].value" in err and constant in err


def test_report_refuses_bad_out_paths(failing_check, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(failing_check[0]))
    (tmp_path / "outdir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = {tmp_path / "outdir": "folder", tmp_path / "afile" / "report.html": "is a file",
             tmp_path / "afile" / "sub" / "report.html": "is a file", path: "results file itself"}
    for out, word in cases.items():
        err = _run_report(capsys, tmp_path, path, "-o", out)
        assert str(out) in err and word in err, err
    assert (tmp_path / "afile").read_text() == "x" and files.loads(path.read_text()) == failing_check[0]


def test_report_creates_missing_out_folders(failing_check, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(failing_check[0]))
    out = tmp_path / "new" / "deeper" / "r.html"
    assert main(["report", str(path), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>") and sorted(p.name for p in out.parent.iterdir()) == ["r.html"]


# ---- junit.xml with control characters --------------------------------------------------------------

ANSI_ERROR = "\x1b[31mRuntimeError\x1b[0m: CUDA \x1b]0;title\x07failed\x00 at \x0b<&>\ud800\uffff\x7f done"
READABLE = "RuntimeError: CUDA failed\\x00 at \\x0b<&>\\ud800\\uffff\x7f done"


def _parse_both(doc: str) -> ET.Element:
    data = doc.encode("utf-8")
    xml.dom.minidom.parseString(data)
    return ET.fromstring(data)


def test_junit_error_xml_is_well_formed_with_control_characters():
    root = _parse_both(junit_error_xml(ANSI_ERROR, "Runtime\x1b[1mError"))
    error = root.find("testsuite/testcase/error")
    assert error.get("message") == error.text == READABLE
    assert error.get("type") == "RuntimeError"


def hostile_results() -> dict:
    """minimal_results with control characters in gate messages, item ids, symptom titles and sources."""
    r = minimal_results()
    for g in r["gates"]:
        g["message"] = ANSI_ERROR
        g["worst_items"] = [{"item": "q\x1b[1m001\x00", "value": 0.4}] if g["value"] is not None else []
        g["symptoms"] = [{"id": "ppl-drift", "title": "Perplexity \x1b[33mrises\x1b[0m\x08"}]
    r["environment"]["candidate"]["source"] = "/ckpt/\x1b[32mw4\x1b[0m\x01"
    return r


def test_junit_xml_is_well_formed_with_control_characters():
    root = _parse_both(junit_xml(hostile_results()))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["perplexity-ratio"].find("failure")
    assert failure.get("message") == READABLE
    assert "worst items: q001\\x00 (0.400)" in failure.text and "symptom: Perplexity rises\\x08" in failure.text
    assert cases["probe-flips"].find("skipped").get("message") == READABLE
    assert READABLE in cases["kl-mean"].find("system-out").text
    props = {p.get("name"): p.get("value") for p in root.find("testsuite/properties")}
    assert props["candidate"] == "/ckpt/w4\\x01"


# ---- summary.md with markup and backticks -----------------------------------------------------------

EVIL = "q<img src=x onerror=alert(1)> | a|b ``` `x` \n```\n</details> **bold** _it_ x__y__z [l](http://e) \x1b[31m&amp;"


def _evil_results() -> dict:
    r = minimal_results()
    for g in r["gates"]:
        g["id"] = g["id"] + EVIL
        g["metric"] = EVIL
        g["message"] = EVIL
        g["worst_items"] = [{"item": EVIL, "value": 0.4}] if g["value"] is not None else []
    r["symptoms"][0]["title"] = EVIL
    r["environment"]["candidate"]["source"] = EVIL
    return r


def _fenced_blocks(md: str) -> tuple[list[str], str]:
    """The fenced code blocks' contents (CommonMark backtick fences) and the text outside them."""
    blocks, outside, fence, body = [], [], None, []
    for line in md.split("\n"):
        if fence is None and re.fullmatch(r"`{3,}", line):
            fence, body = len(line), []
        elif fence is not None and re.fullmatch(r" {0,3}`{%d,} *" % fence, line):
            blocks.append("\n".join(body))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            outside.append(line)
    assert fence is None
    return blocks, "\n".join(outside)


def test_summary_markdown_escapes_markup_and_keeps_tables_and_fences():
    results = _evil_results()
    md = summary_markdown(results)
    blocks, outside = _fenced_blocks(md)
    assert "<img" not in outside and "&lt;img" in outside and "\x1b" not in md
    rows = [line for line in outside.split("\n") if line.startswith("| ")]
    assert len(rows) == len(results["gates"]) + 1
    assert all(row.count("|") == 7 for row in rows)         # 6 cells: no pipe from a value splits a row
    problems = [g for g in results["gates"] if g["status"] in ("fail", "warn")]
    assert len(blocks) == len(problems)
    for block in blocks:
        assert "``` `x`" in block and "\n```\n</details>" in block and "onerror=alert(1)> | a|b" in block
    assert outside.count("</details>") == 1 and outside.rstrip().endswith("(self-contained HTML).")


def test_summary_markdown_renders_as_intended():
    markdown_it = pytest.importorskip("markdown_it")
    results = _evil_results()
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(summary_markdown(results))
    assert "<img" not in html and "<a " not in html and "<strong>bold" not in html and "<em>" not in html
    assert html.count("<tr>") == len(results["gates"]) + 1
    assert all(row.count("<td") == 6 for row in html.split("<tr>")[2:])
    problems = [g for g in results["gates"] if g["status"] in ("fail", "warn")]
    assert html.count("<pre><code>") == len(problems) and html.count("</details>") == 1
    assert html.count("&lt;img src=x onerror=alert(1)&gt; | a|b ``` `x`") >= len(results["gates"])
