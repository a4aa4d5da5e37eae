"""awqguard.shared_run without pytest in the way: one engine run per session, failures remembered."""

import json

import pytest

import awqguard.gates.engine as engine
from awqguard.errors import ConfigError
from awqguard.gates.config import build_check_config
from awqguard.shared_run import RUN_LOG, SESSION_FILE, EngineError, SharedRun
from helpers import minimal_results


@pytest.fixture
def check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # no awqguard.yaml here: the defaults
    return build_check_config(None, {"out": tmp_path / "out"})


def _fake_engine(monkeypatch, outcome):
    calls = []

    def run_gates(config, *args, **kwargs):
        calls.append(config)
        if isinstance(outcome, Exception):
            raise outcome
        return {**outcome, "records": []}
    monkeypatch.setattr(engine, "run_gates", run_gates)
    return calls


def test_one_run_per_session_whoever_asks(check, monkeypatch):
    calls = _fake_engine(monkeypatch, minimal_results())
    first = SharedRun(check, "session-a", "gw0")
    assert first.finished() is None
    results = first.results()
    assert calls == [check] and results["gates"] == minimal_results()["gates"]
    assert SharedRun(check, "session-a", "gw1").results() == results       # another worker reads it back
    assert len(calls) == 1
    assert json.loads((check.out / SESSION_FILE).read_text())["session"] == "session-a"
    later = SharedRun(check, "session-b", "main")
    assert later.finished() is None                                          # an earlier session never counts
    later.results()
    assert len(calls) == 2
    assert (check.out / RUN_LOG).read_text().split("\n") == ["session-a gw0", "session-b main", ""]


def test_a_failed_run_is_remembered_and_leaves_no_old_verdict(check, monkeypatch):
    _fake_engine(monkeypatch, minimal_results())
    SharedRun(check, "old", "main").results()
    calls = _fake_engine(monkeypatch, ConfigError("suite: no suite.yaml here"))
    run = SharedRun(check, "new", "main")
    for _ in range(2):
        with pytest.raises(EngineError, match=r"^ConfigError: suite: no suite.yaml here$"):
            run.results()
    assert len(calls) == 1 and run.error == "ConfigError: suite: no suite.yaml here"
    assert not (check.out / "results.json").exists() and run.finished() is None
