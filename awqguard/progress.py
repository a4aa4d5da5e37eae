"""Progress display: rich bars on a terminal, silent when piped or when CI is set."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def progress_enabled() -> bool:
    """Bars only for a person watching: a TTY on stderr and no CI variable."""
    if os.environ.get("CI") or os.environ.get("AWQGUARD_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


class _Task:
    def __init__(self, progress: Progress | None, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1, description: str | None = None) -> None:
        if self._progress is not None:
            kw = {"description": description} if description else {}
            self._progress.update(self._id, advance=n, **kw)


@contextlib.contextmanager
def task(description: str, total: int) -> Iterator[_Task]:
    """A progress bar for `total` steps, or a no-op when progress is disabled."""
    if not progress_enabled():
        yield _Task(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Task(progress, progress.add_task(description, total=total))
