"""How `awqguard diagnose` prints a diagnosis: the rankings, the outliers, the calibration distance
and the fixes, from diagnosis.json's content alone."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

TOP = 8          # rows shown per ranking


def _ranking(title: str, rows: list[dict]) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("rank", "right"), ("name", "left"), ("KL added", "right"), ("share of total", "right")):
        table.add_column(col, justify=justify)
    for rank, row in enumerate(rows[:TOP], start=1):
        table.add_row(str(rank), row["name"], f"{row['kl']:.4g}", f"{row['share']:.0%}")
    return table


def _outliers(rows: list[dict]) -> Table:
    table = Table(title="activation outliers (largest input channel over the median)", title_justify="left")
    for col in ("linear", "max / median", "channels > 6x median"):
        table.add_column(col, justify="left" if col == "linear" else "right")
    for row in rows[:TOP]:
        table.add_row(row["name"], f"{row['max_over_median']:.1f}", f"{row['share_over_6x']:.1%}")
    return table


def calibration_line(calib: dict) -> str:
    if not calib.get("measured"):
        return f"calibration vs corpus: not measured ({calib.get('reason', 'no calibration recorded')})"
    return (f"calibration vs corpus ({', '.join(calib['sources'])}): token JS divergence {calib['matched']:.2f} "
            f"against {calib['floor']:.2f} between the corpus's own halves; {calib['unseen_share']:.0%} of the "
            "corpus's tokens never occur in the calibration text")


def print_diagnosis(payload: dict, path: Path, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    console.print(f"[bold]{payload['candidate']}[/] against {payload['reference']}: KL {payload['kl_total']:.4g} "
                  f"over {payload['tokens']} corpus positions ({payload['seconds']:.0f} s)")
    console.print(_ranking("blocks, swapped alone into the float model", payload["blocks"]))
    console.print(_ranking(f"linears of {', '.join(payload['linear_blocks']) or 'no block'}", payload["linears"]))
    console.print(_outliers(payload["outliers"]))
    console.print(calibration_line(payload["calibration"]))
    if payload["fixes"]:
        console.print("[bold]fixes computed for this candidate[/] (most targeted first):")
        for fix in payload["fixes"]:
            console.print(f"  - {fix['command']}\n    {fix['why']}", soft_wrap=True)
    else:
        console.print("no fix is supported by this diagnosis")
    console.print(f"wrote {path}")
