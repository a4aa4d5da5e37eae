"""`pytest --awq-gates`: every gate of an awqguard check becomes one test item (docs/architecture.md §11).

Registered through the pytest11 entry point. Without --awq-gates only the options exist: nothing
is collected, no fixture is added, nothing is printed. With it, the gates join pytest's own
collection under one `awqguard` collector, and one engine run per session serves every gate item
(cached across sessions like `awqguard check`); awqguard.shared_run shares it between
pytest-xdist workers, so the engine never runs twice in parallel.
"""

from __future__ import annotations

import io
import uuid
import warnings
from dataclasses import dataclass

import pytest

from awqguard.shared_run import EngineError, SharedRun

OPTIONS = {   # option suffix -> help; each is --awq-NAME on the command line and awq_gates_NAME in the ini file
    "config": "awqguard.yaml or pyproject.toml (default: as awqguard check finds it)",
    "suite": "fixture suite folder (default: fixtures/default)",
    "reference": "reference model folder, .gguf or http://HOST:PORT/v1 (default: SmolLM2-135M-Instruct)",
    "candidate": "candidate checkpoint, model or http://HOST:PORT/v1 (default: the reference quantized by awqguard, cached)",
    "reference-model": "the served reference's model name (default: the server's only model)",
    "candidate-model": "the served candidate's model name (default: the server's only model)",
    "out": "output folder for results.json, report.html, junit.xml, summary.md (default: reports/latest)",
}
STRICT_HELP = "inconclusive fail-severity gates fail (default: they are skipped with the reason)"


class AwqGateWarning(UserWarning):
    """A warn-severity gate that did not hold: the test passes, the warning says why it is worth a look."""


class GateFailed(Exception):
    def __init__(self, gate: dict):
        super().__init__(gate["message"])
        self.gate = gate


def pytest_addoption(parser):
    group = parser.getgroup("awqguard", "awqguard release gates")
    group.addoption("--awq-gates", action="store_true", default=False,
                    help="run the awqguard gates (reference vs AWQ candidate) as test items")
    for name, text in OPTIONS.items():
        key = name.replace("-", "_")
        group.addoption(f"--awq-{name}", dest=f"awq_{key}", default=None, metavar="NAME" if "model" in name else "PATH",
                        help=text)
        parser.addini(f"awq_gates_{key}", f"awqguard: {text}", default=None)
    group.addoption("--awq-strict", dest="awq_strict", action="store_true", default=False, help=STRICT_HELP)
    parser.addini("awq_gates_strict", f"awqguard: {STRICT_HELP}", type="bool", default=False)


def pytest_configure(config):
    if config.getoption("awq_gates"):
        config.pluginmanager.register(AwqGates(config), "awqguard-gates")


def _option(config, name: str):
    """--awq-NAME, else the ini key awq_gates_NAME, else None (not given)."""
    return config.getoption(f"awq_{name}") or config.getini(f"awq_gates_{name}") or None


def check_overrides(config) -> dict:
    """The dotted config overrides the --awq-* options (or ini keys) give; None where one is not given,
    so the config file's value stands."""
    overrides = {name: _option(config, name) for name in ("suite", "reference", "candidate", "out")}
    overrides.update({f"{role}.model": _option(config, f"{role}_model") for role in ("reference", "candidate")})
    overrides["decision.strict"] = True if _option(config, "strict") else None
    return overrides


def gate_outcome(gate: dict, strict: bool) -> tuple[str, str]:
    """How pytest reports one gate: ("fail" | "warn" | "skip" | "pass", the text it shows). An
    inconclusive gate of fail severity fails only under strict mode (a warn-severity one never fails);
    an uninformative one could not fail, so it never passes either: they are skipped with their reason."""
    from awqguard.gates.document import undecided_blocks
    status, name = gate["status"], gate["id"]
    if status == "fail" or (strict and undecided_blocks(status, gate["severity"])):
        return "fail", ""
    if status in ("inconclusive", "uninformative"):
        return "skip", f"{name}: {status}: {gate['message']}"
    if status == "skip":
        return "skip", f"{name}: {gate['message']}"
    return ("warn", "") if status == "warn" else ("pass", "")


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
        self.out = self.check_config.out
        workerinput = getattr(config, "workerinput", None)
        self.session = workerinput["awqguard_session"] if workerinput else uuid.uuid4().hex
        worker = workerinput.get("workerid", "controller") if workerinput else "main"
        self.run = SharedRun(self.check_config, self.session, worker)

    @staticmethod
    def _check_config(config):
        """The CheckConfig `awqguard check` would build, with the --awq-* options (or ini keys) on top."""
        from awqguard.errors import AwqguardError
        from awqguard.files import check_writable
        from awqguard.gates.config import build_check_config
        try:
            check = build_check_config(_option(config, "config"), check_overrides(config), "pytest options")
            check_writable(check.out, "--awq-out")            # before any work, not after it
        except AwqguardError as exc:
            raise pytest.UsageError(f"awqguard: {exc}") from None
        return check

    # ---- xdist: the controller hands its session id to the workers ------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput["awqguard_session"] = self.session

    # ---- collection ---------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector):
        """Add the gate collector to what the session itself collects, so pytest visits it like any
        other node: the collected count, -k, -m, --deselect and xdist all see the gate items."""
        report = yield
        if isinstance(collector, pytest.Session) and report.passed:
            report.result.append(GateCollector.from_parent(collector, name="awqguard", nodeid="awqguard",
                                                           plugin=self))
        return report

    def results(self) -> dict:
        """This session's results; the engine runs when the first gate item (or fixture) asks."""
        return self.run.results()

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
        results = self.run.finished()
        terminalreporter.section("awqguard gates")
        if results is None:
            terminalreporter.write_line(f"no results: {self.run.error}" if self.run.error else
                                        "no gate ran in this session (deselected?)")
            return
        from awqguard.report.outputs import gate_table
        from rich.console import Console
        buffer = io.StringIO()
        width = max(100, terminalreporter.config.get_terminal_writer().fullwidth)
        Console(width=width, file=buffer, force_terminal=False, color_system=None).print(gate_table(results))
        for line in buffer.getvalue().rstrip().splitlines():
            terminalreporter.write_line(line)
        from awqguard.report.format import verdict, verdict_note, verdict_sentence
        colour = {"pass": "green", "fail": "red", "inconclusive": "purple"}[verdict(results)]
        note = verdict_note(results, "--awq-strict")
        terminalreporter.write_line(verdict_sentence(results) + (f" — {note}" if note else ""), **{colour: True})
        terminalreporter.write_line(f"report: {self.out / 'report.html'}")


class GateCollector(pytest.Collector):
    """The `awqguard` node: one item per enabled gate. Collecting runs nothing; the engine waits for an item."""

    def __init__(self, *, plugin: AwqGates, **kwargs):
        super().__init__(**kwargs)
        self.plugin = plugin

    def collect(self):
        return [GateItem.from_parent(self, name=gate.id, plugin=self.plugin) for gate in self.plugin.check_config.gates]


class GateItem(pytest.Item):
    """One gate: passes, fails with its evidence and fixes, warns, or skips with the reason (as an
    inconclusive or uninformative gate does; see gate_outcome)."""

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
        from awqguard.report.format import gate_failure_text, is_strict
        outcome, text = gate_outcome(gate, is_strict(results))
        if outcome == "fail":
            raise GateFailed(gate)
        if outcome == "warn":
            warnings.warn(AwqGateWarning(gate_failure_text(gate)), stacklevel=1)
        elif outcome == "skip":
            pytest.skip(text)

    def repr_failure(self, excinfo, style=None):
        from awqguard.report.format import gate_failure_text
        if isinstance(excinfo.value, GateFailed):
            gate = excinfo.value.gate
            why = "\nstrict mode fails an undecided fail-severity gate" if gate["status"] == "inconclusive" else ""
            return gate_failure_text(gate) + why + f"\nreport: {self.plugin.out / 'report.html'}"
        if isinstance(excinfo.value, EngineError):
            return f"awqguard could not run the gates: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"awqguard gate {self.name}"
