"""One engine run per pytest session, shared by every gate item and every xdist worker (docs/architecture.md §11).

The first worker to take the lock in the output folder runs the engine, writes the outputs and a
session file naming its session; the others (and later calls) read that session's results.json
back instead of running the engine again. An earlier session's files never count: the session
file must name this session. Nothing here knows about pytest, so it is tested on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

SESSION_FILE = ".awqguard-pytest.json"     # which pytest session wrote the results beside it
RUN_LOG = ".awqguard-pytest-runs.log"      # one line per engine run: session id and worker (append-only)
LOCK_FILE = ".awqguard-pytest.lock"


class EngineError(Exception):
    """The engine could not produce results (bad configuration, unreadable model, ...)."""


class SharedRun:
    """This session's results, computed at most once whichever worker asks first.

    A failure is remembered, so every gate item of the session reports the same error instead of
    retrying a run that already failed.
    """

    def __init__(self, check_config, session: str, worker: str):
        self.check_config = check_config
        self.out: Path = check_config.out
        self.session = session
        self.worker = worker
        self._results: dict | None = None
        self.error: str | None = None

    def results(self) -> dict:
        """results.json's content for this session; runs the engine only if no worker has yet."""
        if self.error is not None:
            raise EngineError(self.error)
        if self._results is None:
            try:
                self._results = self._run_once()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                raise EngineError(self.error) from None
        return self._results

    def finished(self) -> dict | None:
        """The results if this process or another worker of the session has them, else None (runs nothing)."""
        return self._results or self.read_session_results()

    def read_session_results(self) -> dict | None:
        """results.json from the output folder, but only when this session wrote it."""
        from awqguard import files
        try:
            state = files.loads((self.out / SESSION_FILE).read_text(encoding="utf-8"))
            if state.get("session") == self.session:
                return files.loads((self.out / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, AttributeError):
            pass
        return None

    def _run_once(self) -> dict:
        """Run the engine under the folder's lock unless this session already did."""
        from filelock import FileLock

        from awqguard import files
        from awqguard.gates.engine import run_gates
        from awqguard.report.outputs import clear_outputs, results_body, write_outputs
        self.out.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.out / LOCK_FILE)):
            done = self.read_session_results()
            if done is not None:
                return done
            clear_outputs(self.out)             # an earlier session's verdict never sits beside this one's error
            results = run_gates(self.check_config)
            write_outputs(results, self.out)
            with open(self.out / RUN_LOG, "a") as log:
                log.write(f"{self.session} {self.worker}\n")
            files.write_json(self.out / SESSION_FILE, {"session": self.session, "engine_run_by": self.worker,
                                                       "pid": os.getpid()})
            return results_body(results)
