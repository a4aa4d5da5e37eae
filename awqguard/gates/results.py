"""What `awqguard check` leaves behind and prints: results.json, items.jsonl, report.html,
junit.xml, summary.md and the gate table.

results.json carries a schema version; items.jsonl has one line per item, prompt and seed with
both variants' retrieval, answers and metrics. The other three are made from results.json alone
(awqguard/report). Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from awqguard.gates import cache
from awqguard.report.ci import junit_error_xml, junit_xml, summary_markdown, threshold_text
from awqguard.report.html import write_report

OUTPUT_FILES = {"results": "results.json", "items": "items.jsonl", "report": "report.html", "junit": "junit.xml",
                "summary": "summary.md"}

STATUS_STYLE = {"pass": ("PASS", "green"), "fail": ("FAIL", "bold red"), "warn": ("WARN", "yellow"),
                "skip": ("SKIP", "dim")}


def results_body(results: dict) -> dict:
    """What results.json holds: everything but the per-run records (those go to items.jsonl)."""
    return {k: v for k, v in results.items() if k != "records"}


def write_outputs(results: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    records = results.get("records", [])
    body = results_body(results)
    paths = {name: out / file for name, file in OUTPUT_FILES.items()}
    cache.write_atomic(paths["results"], json.dumps(body, indent=1, ensure_ascii=False).encode("utf-8"))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    cache.write_atomic(paths["items"], lines.encode("utf-8"))
    write_report(body, paths["report"])
    cache.write_atomic(paths["junit"], junit_xml(body).encode("utf-8"))
    cache.write_atomic(paths["summary"], summary_markdown(body, OUTPUT_FILES["report"]).encode("utf-8"))
    return paths


def write_error(out: Path, message: str, kind: str) -> Path:
    """junit.xml for a check that could not finish, so CI shows an error rather than a stale verdict."""
    path = Path(out) / OUTPUT_FILES["junit"]
    cache.write_atomic(path, junit_error_xml(message, kind).encode("utf-8"))
    return path


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def gate_table(results: dict) -> Table:
    table = Table(title="awqguard gates", title_justify="left", show_lines=False)
    for col, kw in (("gate", {}), ("metric", {"style": "dim"}), ("candidate", {"justify": "right"}),
                    ("reference", {"justify": "right"}), ("threshold", {"justify": "right"}), ("", {})):
        table.add_column(col, **kw)
    for g in results["gates"]:
        word, style = STATUS_STYLE[g["status"]]
        table.add_row(g["id"], g["metric"], _fmt(g["value"]), _fmt(g["reference"]), threshold_text(g),
                      f"[{style}]{word}[/]")
    return table


def print_results(results: dict, console: Console, paths: dict[str, Path] | None = None) -> None:
    """The gate table, then each failed or warned gate with its symptoms, evidence and fixes."""
    console.print(gate_table(results))
    for g in results["gates"]:
        if g["status"] not in ("fail", "warn"):
            continue
        word, style = STATUS_STYLE[g["status"]]
        console.print(f"\n[{style}]{word}[/] [bold]{g['id']}[/]: {g['message']}")
        if g.get("ci"):
            console.print(f"  95% interval over items: [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}]")
        for s in g["symptoms"]:
            console.print(f"  symptom: [bold]{s['title']}[/] ({s['id']})")
        if g["worst_items"]:
            console.print("  worst items: " + ", ".join(f"{w['item']} ({w['value']:.3f})" for w in g["worst_items"]))
        for fix in g["fixes"]:
            console.print(f"  fix: {fix}")
    for note in results["notices"]:
        console.print(f"\n[cyan]note[/]: {note}")
    s = results["summary"]
    verdict = "[bold green]PASSED[/]" if results["passed"] else "[bold red]FAILED[/]"
    console.print(f"\n{verdict}: {s['failed']} failed, {s['warned']} warned, {s['skipped']} skipped of "
                  f"{s['gates']} gates; {s['items']} items, {s['runs']} paired runs; "
                  f"wall time {results['timing']['wall_s']:.0f} s")
    if paths:
        console.print(f"report: {paths['report']}  results: {paths['results']}  junit: {paths['junit']}  "
                      f"summary: {paths['summary']}")
