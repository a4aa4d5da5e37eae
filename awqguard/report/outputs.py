"""What `awqguard check` leaves behind and prints: results.json, items.jsonl, report.html,
junit.xml, summary.md and the gate table.

results.json carries a schema version; items.jsonl has one line per item, prompt and seed with
both variants' retrieval, answers and metrics. The other three are made from results.json alone
(report.html in html, junit.xml and summary.md in ci). Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from awqguard import files
from awqguard.report import format as fmt
from awqguard.report.ci import junit_error_xml, junit_xml, summary_markdown
from awqguard.report.html import read_diagnosis, same_candidate, write_report

OUTPUT_FILES = {"results": "results.json", "items": "items.jsonl", "report": "report.html", "junit": "junit.xml",
                "summary": "summary.md"}

STATUS_STYLE = {"pass": ("PASS", "green"), "fail": ("FAIL", "bold red"), "warn": ("WARN", "yellow"),
                "skip": ("SKIP", "dim"), "inconclusive": ("INCONCLUSIVE", "bold magenta"),
                "uninformative": ("UNINFORMATIVE", "cyan")}
VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold magenta"}
EXPLAINED = ("fail", "warn", "inconclusive")      # printed below the table with their evidence


def results_body(results: dict) -> dict:
    """What results.json holds: everything but the per-run records (those go to items.jsonl)."""
    return {k: v for k, v in results.items() if k != "records"}


def write_outputs(results: dict, out: Path) -> dict[str, Path]:
    """Write the five files, results.json last: it is the verdict, so it appears only beside the rest."""
    out = Path(out)
    body = results_body(results)
    paths = {name: out / file for name, file in OUTPUT_FILES.items()}
    records = results.get("records", [])        # absent when `results` is a results.json body read back
    files.write_text(paths["items"], "".join(files.dumps(r) + "\n" for r in records))
    diagnosis = read_diagnosis(paths["results"])    # an earlier `awqguard diagnose` of this very candidate
    write_report(body, paths["report"], diagnosis if diagnosis is not None and same_candidate(diagnosis, body) else None)
    files.write_text(paths["junit"], junit_xml(body))
    files.write_text(paths["summary"], summary_markdown(body, OUTPUT_FILES["report"]))
    files.write_json(paths["results"], body, indent=1)
    return paths


def clear_outputs(out: Path) -> None:
    """Remove the files an earlier check left in `out`, so a run that fails or is interrupted never
    leaves an old verdict beside its own error."""
    for name in OUTPUT_FILES.values():
        (Path(out) / name).unlink(missing_ok=True)


def write_error(out: Path, message: str, kind: str) -> Path | None:
    """junit.xml for a check that could not finish, so CI shows an error rather than a stale verdict.
    Best effort: when `out` itself is unusable, the original error is what the user must see."""
    try:
        clear_outputs(out)
        return files.write_text(Path(out) / OUTPUT_FILES["junit"], junit_error_xml(message, kind))
    except OSError:
        return None


def gate_table(results: dict) -> Table:
    """The gates as a rich table: value, reference and threshold beside each status."""
    table = Table(title="awqguard gates", title_justify="left", show_lines=False)
    for col, kw in (("gate", {}), ("metric", {"style": "dim"}), ("candidate", {"justify": "right"}),
                    ("reference", {"justify": "right"}), ("threshold", {"justify": "right"}), ("", {})):
        table.add_column(col, **kw)
    for g in results["gates"]:
        word, style = STATUS_STYLE[g["status"]]
        table.add_row(escape(g["id"]), escape(g["metric"] + fmt.estimate_note(results, g["metric"])), fmt.number(g["value"]), fmt.number(g["reference"]),
                      escape(fmt.threshold_text(g)), f"[{style}]{word}[/]")
    return table


def print_results(results: dict, console: Console, paths: dict[str, Path] | None = None) -> None:
    """The gate table, then each failed, warned or inconclusive gate with its evidence and fixes, each
    uninformative one with its reason, then the verdict. Text from results is escaped: a fix naming
    [tool.awqguard] is not rich markup."""
    console.print(gate_table(results))
    for g in results["gates"]:
        if g["status"] in EXPLAINED or g["status"] == "uninformative":
            _print_gate(g, console)
    for note in results["notices"]:
        console.print(f"\n[cyan]note[/]: {escape(note)}")
    style = VERDICT_STYLE[fmt.verdict(results)]
    note = fmt.verdict_note(results)
    console.print(f"\n{fmt.verdict_sentence(results, lambda word: f'[{style}]{word}[/]')}"
                  f"{escape(' — ' + note) if note else ''}; "
                  f"{fmt.run_counts(results['summary'])}; wall time {fmt.number(results['timing']['wall_s'], 0)} s")
    if paths:
        console.print(escape(f"report: {paths['report']}  results: {paths['results']}  junit: {paths['junit']}  "
                             f"summary: {paths['summary']}"))


def _print_gate(gate: dict, console: Console) -> None:
    """One gate below the table: its status and message, then (unless uninformative: nothing to weigh) its evidence."""
    word, style = STATUS_STYLE[gate["status"]]
    console.print(f"\n[{style}]{word}[/] [bold]{escape(gate['id'])}[/]: {escape(gate['message'])}")
    if gate["status"] in EXPLAINED:
        for line in fmt.evidence_lines(gate):
            console.print("  " + escape(line))
