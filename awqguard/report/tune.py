"""How `awqguard tune` prints: a line per finished trial, then the table and the verdict."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _state(row: dict) -> str:
    if row.get("error"):
        return f"not made: {row['error']}"
    return "passes" if row["passed"] else f"blocked by {', '.join(row['blocking'])}"


def _grouped(skipped: list[dict]) -> dict[str, list[str]]:
    """Skipped trials by the reason they were skipped, in plan order."""
    groups: dict[str, list[str]] = {}
    for skip in skipped:
        groups.setdefault(skip["why"], []).append(skip["trial"])
    return groups


def print_row(row: dict, console: Console) -> None:
    state = _state(row)
    took = "from the cache" if row["reused"] else f"{row['seconds']:.0f} s"
    console.print(escape(f"trial {row['trial']}: {state} (bytes {_num(row['bytes_ratio'])}, {took})"))


def print_tune(payload: dict, path: Path, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    if payload["already_passes"]:
        console.print(f"{payload['candidate']} already passes every fail-severity gate: nothing to tune. Wrote {path}")
        return
    table = Table(title=f"tune of {payload['candidate']} (blocked by {', '.join(payload['blocking'])})",
                  title_justify="left")
    for col in ("trial", "bytes ratio", "gates blocking", "ppl ratio", "KL mean", "bad-miss", "time"):
        table.add_column(col, justify="left" if col in ("trial", "gates blocking") else "right")
    for row in payload["trials"]:
        blocking = "not made (see its line)" if row.get("error") else ", ".join(row["blocking"]) or "none"
        table.add_row(row["trial"], _num(row["bytes_ratio"]), blocking,
                      _num(row["perplexity_ratio"], 4), _num(row["kl_mean"]), _num(row["bad_miss_rate"]),
                      "cached" if row["reused"] else f"{row['seconds']:.0f} s")
    console.print(table)
    for why, trials in _grouped(payload["skipped"]).items():
        console.print(escape(f"not tried ({why}): {'; '.join(trials)}"), soft_wrap=True)
    best = payload["best"]
    if best is None:
        console.print(f"[bold red]no trial passed[/] within the budget ({payload['wall_s']:.0f} s). Wrote {path}")
    else:
        console.print(f"[bold green]{best['trial']} passes[/]: its checkpoint is {path.parent / 'best'} "
                      f"({payload['wall_s']:.0f} s in all). Wrote {path}")
