"""`pytest --awq-gates`: every gate of an awqguard check becomes one test item (docs/architecture.md §11).

Registered through the pytest11 entry point. Without --awq-gates only the options exist: nothing
is collected, no fixture is added, nothing is printed. With it, one engine run per session serves
every gate item (cached across sessions like `awqguard check`); under pytest-xdist the workers
share it through a file lock in the output folder, so the engine never runs twice in parallel.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

OPTIONS = {   # option suffix -> help; each is --awq-NAME on the command line and awq_gates_NAME in the ini file
    "config": "awqguard.yaml or pyproject.toml (default: as awqguard check finds it)",
    "suite": "fixture suite folder (default: fixtures/default)",
    "reference": "reference model folder or .gguf (default: SmolLM2-135M-Instruct)",
    "candidate": "candidate checkpoint or model (default: the reference quantized by awqguard, cached)",
    "out": "output folder for results.json, report.html, junit.xml, summary.md (default: reports/latest)",
}
SESSION_FILE = ".awqguard-pytest.json"     # which pytest session wrote the results beside it
RUN_LOG = ".awqguard-pytest-runs.log"      # one line per engine run: session id and worker (append-only)
LOCK_FILE = ".awqguard-pytest.lock"


class AwqGateWarning(UserWarning):
    """A warn-severity gate that did not hold: the test passes, the warning says why it is worth a look."""


class GateFailed(Exception):
    def __init__(self, gate: dict):
        super().__init__(gate["message"])
        self.gate = gate


class EngineError(Exception):
    """The engine could not produce results (bad configuration, unreadable model, ...)."""


def pytest_addoption(parser):
    group = parser.getgroup("awqguard", "awqguard release gates")
    group.addoption("--awq-gates", action="store_true", default=False,
                    help="run the awqguard gates (reference vs AWQ candidate) as test items")
    for name, text in OPTIONS.items():
        group.addoption(f"--awq-{name}", dest=f"awq_{name}", default=None, metavar="PATH", help=text)
        parser.addini(f"awq_gates_{name}", f"awqguard: {text}", default=None)


def pytest_configure(config):
    if config.getoption("awq_gates"):
        config.pluginmanager.register(AwqGates(config), "awqguard-gates")


@dataclass(frozen=True)
class Variant:
    """One side of the check for custom gates: its suite metrics and per-item summaries."""

    name: str
    metrics: dict
    items: dict

    def metric(self, name: str):
        """This variant's value of a suite metric (a paired metric such as drift has one value for both)."""
        entry = self.metrics[name]
        return entry.get(self.name, entry.get("value"))


class AwqGates:
    """The plugin object registered for a session that asked for --awq-gates."""

    def __init__(self, config):
        self.pytest_config = config
        self.check_config = self._check_config(config)
        self.out = Path(self.check_config["out"])
        workerinput = getattr(config, "workerinput", None)
        self.session = workerinput["awqguard_session"] if workerinput else uuid.uuid4().hex
        self.worker = workerinput.get("workerid", "controller") if workerinput else "main"
        self._results: dict | None = None
        self._error: str | None = None

    @staticmethod
    def _check_config(config) -> dict:
        from awqguard.errors import AwqguardError
        from awqguard.files import check_writable
        from awqguard.gates.config import gates_from_config, load_config, validate

        def option(name):
            return config.getoption(f"awq_{name}") or config.getini(f"awq_gates_{name}") or None
        try:
            path = option("config")
            merged = load_config(Path(path) if path else None)
            for name in ("suite", "reference", "candidate", "out"):
                if option(name):
                    merged[name] = str(option(name))
            validate({k: v for k, v in merged.items() if k != "gates"}, "pytest options")
            gates_from_config(merged)
            check_writable(merged["out"], "--awq-out")          # before any work, not after it
        except AwqguardError as exc:
            raise pytest.UsageError(f"awqguard: {exc}") from None
        return merged

    # ---- xdist: the controller hands its session id to the workers ------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput["awqguard_session"] = self.session

    # ---- collection ---------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)     # before -k / -m deselection, so those select gates too
    def pytest_collection_modifyitems(self, session, config, items):
        from awqguard.gates.config import gates_from_config
        parent = GateCollector.from_parent(session, name="awqguard", nodeid="awqguard")
        items.extend(GateItem.from_parent(parent, name=g.id, plugin=self)
                     for g in gates_from_config(self.check_config))

    # ---- the one engine run -------------------------------------------------------------------
    def results(self) -> dict:
        if self._error is not None:
            raise EngineError(self._error)
        if self._results is None:
            try:
                self._results = self._shared_run()
            except Exception as exc:
                self._error = f"{type(exc).__name__}: {exc}"
                raise EngineError(self._error) from None
        return self._results

    def _read_session_results(self) -> dict | None:
        from awqguard import files
        try:
            state = files.loads((self.out / SESSION_FILE).read_text(encoding="utf-8"))
            if state.get("session") == self.session:
                return files.loads((self.out / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, AttributeError):
            pass
        return None

    def _shared_run(self) -> dict:
        """Run the engine once per pytest session, whichever worker gets here first."""
        from filelock import FileLock

        from awqguard import files
        from awqguard.gates.engine import run_gates
        from awqguard.report.outputs import clear_outputs, results_body, write_outputs
        self.out.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.out / LOCK_FILE)):
            done = self._read_session_results()
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

    # ---- fixtures for custom gates ------------------------------------------------------------
    @pytest.fixture(scope="session")
    def awq_results(self) -> dict:
        """results.json of this session's check (gates, metrics, items, environment)."""
        return self.results()

    @pytest.fixture(scope="session")
    def awq_reference(self, awq_results) -> Variant:
        return Variant("reference", awq_results["metrics"], {k: v["reference"] for k, v in awq_results["items"].items()})

    @pytest.fixture(scope="session")
    def awq_candidate(self, awq_results) -> Variant:
        return Variant("candidate", awq_results["metrics"], {k: v["candidate"] for k, v in awq_results["items"].items()})

    # ---- terminal summary ---------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter):
        results = self._results or self._read_session_results()
        terminalreporter.section("awqguard gates")
        if results is None:
            terminalreporter.write_line(f"no results: {self._error}" if self._error else
                                        "no gate ran in this session (deselected?)")
            return
        from awqguard.report.outputs import gate_table
        from rich.console import Console
        buffer = io.StringIO()
        width = max(100, terminalreporter.config.get_terminal_writer().fullwidth)
        Console(width=width, file=buffer, force_terminal=False, color_system=None).print(gate_table(results))
        for line in buffer.getvalue().rstrip().splitlines():
            terminalreporter.write_line(line)
        s = results["summary"]
        verdict = "PASSED" if results["passed"] else "FAILED"
        terminalreporter.write_line(f"{verdict}: {s['failed']} failed, {s['warned']} warned, {s['skipped']} skipped "
                                    f"of {s['gates']} gates", red=not results["passed"], green=results["passed"])
        terminalreporter.write_line(f"report: {self.out / 'report.html'}")


class GateCollector(pytest.Collector):
    def collect(self):
        return []


class GateItem(pytest.Item):
    """One gate: passes, fails with its evidence and fixes, warns, or skips with the reason."""

    def __init__(self, *, plugin: AwqGates, **kwargs):
        super().__init__(**kwargs)
        self.plugin = plugin

    def runtest(self):
        results = self.plugin.results()
        gate = next((g for g in results["gates"] if g["id"] == self.name), None)
        if gate is None:
            raise EngineError(f"the results have no gate {self.name!r}")
        for key in ("metric", "value", "reference", "threshold", "op", "severity", "status"):
            self.user_properties.append((key, gate.get(key)))
        from awqguard.report.format import gate_failure_text
        if gate["status"] == "fail":
            raise GateFailed(gate)
        if gate["status"] == "warn":
            warnings.warn(AwqGateWarning(gate_failure_text(gate)), stacklevel=1)
        elif gate["status"] == "skip":
            pytest.skip(f"{self.name}: {gate['message']}")

    def repr_failure(self, excinfo, style=None):
        from awqguard.report.format import gate_failure_text
        if isinstance(excinfo.value, GateFailed):
            return gate_failure_text(excinfo.value.gate) + f"\nreport: {self.plugin.out / 'report.html'}"
        if isinstance(excinfo.value, EngineError):
            return f"awqguard could not run the gates: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"awqguard gate {self.name}"
