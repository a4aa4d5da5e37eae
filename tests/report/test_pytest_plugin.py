"""pytest --awq-gates in a separate pytest process (pytester), on a tiny-model check."""

import json
import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from awqguard.pytest_plugin import check_overrides, gate_outcome
from awqguard.shared_run import RUN_LOG
from helpers import INCONCLUSIVE_MESSAGE, UNINFORMATIVE_MESSAGE, tiny_check, undecided_results, write_config


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return tiny_check(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path / "cache"))


def _lines(result) -> list[str]:
    """Output lines that do not depend on the plugin list or the clock."""
    return [line for line in result.outlines if not line.startswith(("plugins:", "rootdir:", "cachedir:"))
            and " in " not in line]


def test_without_the_flag_nothing_changes(pytester):
    pytester.makepyfile("def test_one():\n    assert True\n")
    with_plugin = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    without = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:awqguard")
    with_plugin.assert_outcomes(passed=1)
    assert _lines(with_plugin) == _lines(without)
    assert "awqguard" not in with_plugin.stdout.str().replace("awqguard-", "")
    assert "--awq-gates" in pytester.runpytest_subprocess("--help").stdout.str()   # registered via pytest11


def test_failing_gates_read_as_evidence_not_tracebacks(pytester, folders, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "awqguard.yaml", folders, "far", out)
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest_subprocess("--awq-gates", "--awq-config", str(cfg), f"--junitxml={junit}", "-rA")
    gates = json.loads((out / "results.json").read_text())["gates"]
    count = _count(gates)
    assert count["fail"] > 0 and result.ret == 1
    # warnings are not counted: a third-party library may add its own; awqguard's are checked by name below
    result.assert_outcomes(passed=count["pass"] + count["warn"], failed=count["fail"],
                           skipped=count["skip"] + count["inconclusive"] + count["uninformative"])
    text = result.stdout.str()
    assert "Traceback" not in text and "symptom:" in text and "fix:" in text
    failed = next(g for g in gates if g["status"] == "fail")
    assert re.search(rf"FAILED \S*awqguard::{failed['id']}\b", text)
    assert "awqguard gates" in text and f"report: {out / 'report.html'}" in text
    for gate in (g for g in gates if g["status"] == "warn"):
        assert f"AwqGateWarning: {gate['id']}:" in text
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases[failed["id"]].iter("property")}
    assert props["metric"] == failed["metric"] and float(props["value"]) == pytest.approx(failed["value"])
    for name in ("report.html", "junit.xml", "summary.md", "items.jsonl"):
        assert (out / name).exists()
    for gate in (g for g in gates if g["status"] in ("inconclusive", "uninformative")):
        assert f"{gate['id']}: {gate['status']}: " in text                   # skipped with the reason


def _count(gates: list[dict]) -> dict:
    return {s: sum(g["status"] == s for g in gates) for s in ("pass", "fail", "warn", "skip", "inconclusive",
                                                               "uninformative")}


def test_awq_strict_fails_inconclusive_gates(pytester, folders, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "awqguard.yaml", folders, "far", out)
    body = yaml.safe_load(cfg.read_text())
    body["decision"]["min_items"] = 8                  # more than the tiny suite has: its gates go undecided
    cfg.write_text(yaml.safe_dump(body))
    result = pytester.runpytest_subprocess("--awq-gates", "--awq-config", str(cfg), "--awq-strict")
    results = json.loads((out / "results.json").read_text())
    count = _count(results["gates"])
    blocking = sum(g["status"] == "inconclusive" and g["severity"] == "fail" for g in results["gates"])
    assert results["strict"] is True and blocking > 0 and result.ret == 1
    result.assert_outcomes(passed=count["pass"] + count["warn"], failed=count["fail"] + blocking,   # warn gates skip
                           skipped=count["skip"] + count["uninformative"] + count["inconclusive"] - blocking)
    assert "strict mode fails an undecided fail-severity gate" in result.stdout.str()


def test_ini_keys_custom_gates_and_selection(pytester, folders, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "awqguard.yaml", folders, "reference", out)
    pytester.makeini(f"[pytest]\nawq_gates_config = {cfg}\n")
    pytester.makepyfile(test_custom="""
def test_hit_rate_holds(awq_reference, awq_candidate):
    assert awq_candidate.metric("hit.rate") >= awq_reference.metric("hit.rate") - 0.2
    assert set(awq_candidate.items) == set(awq_reference.items)
""")
    result = pytester.runpytest_subprocess("--awq-gates")
    gates = json.loads((out / "results.json").read_text())["gates"]
    skips = sum(g["status"] in ("skip", "inconclusive", "uninformative") for g in gates)
    result.assert_outcomes(passed=len(gates) - skips + 1, skipped=skips)
    selected = pytester.runpytest_subprocess("--awq-gates", "-k", "drift")
    assert selected.parseoutcomes()["passed"] == sum("drift" in g["id"] and g["status"] in ("pass", "warn")
                                                     for g in gates)


def test_collect_only_counts_every_enabled_gate(pytester, tmp_path):
    """pytest's own count includes the gates, -k and -m select among them, and collecting runs no engine."""
    from awqguard.gates.config import build_check_config
    out = tmp_path / "out"
    cfg = tmp_path / "awqguard.yaml"
    cfg.write_text(f"out: {out}\ngates:\n  kl-mean: {{enabled: false}}\n")
    gates = [g.id for g in build_check_config(cfg).gates]
    assert "kl-mean" not in gates and len(gates) > 1
    pytester.makepyfile("def test_one():\n    pass\n")

    def collected(*args):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--awq-gates", "--awq-config", str(cfg),
                                               "--collect-only", "-q", *args)
        assert result.ret == 0, result.stdout.str()
        listed = [line.split("::", 1)[1] for line in result.outlines if line.startswith("awqguard::")]
        count = re.search(r"(\d+)(?:/\d+)? tests? collected", result.stdout.str())
        return listed, int(count.group(1))

    assert collected() == (gates, len(gates) + 1)
    drift = [g for g in gates if "drift" in g]
    assert collected("-k", "drift") == (drift, len(drift))
    assert collected("-m", "not slow") == (gates, len(gates) + 1)
    assert not out.exists()                                   # collecting ran nothing


def test_bad_config_is_a_usage_error(pytester, tmp_path):
    cfg = tmp_path / "awqguard.yaml"
    cfg.write_text("decoding:\n  temprature: 0.5\n")
    result = pytester.runpytest_subprocess("--awq-gates", "--awq-config", str(cfg))
    assert result.ret == 4
    assert "temprature" in result.stderr.str() and "Traceback" not in result.stderr.str()


def test_xdist_workers_share_one_engine_run(pytester, folders, tmp_path):
    pytest.importorskip("xdist")
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "awqguard.yaml", folders, "reference", out)
    for session in range(2):
        result = pytester.runpytest_subprocess("--awq-gates", "--awq-config", str(cfg), "-n", "2")
        assert result.ret == 0, result.stdout.str()
        runs = (out / RUN_LOG).read_text().splitlines()
        assert len(runs) == session + 1                       # one engine run per session, never one per worker
        assert len({line.split()[0] for line in runs}) == session + 1
        assert "awqguard gates" in result.stdout.str()
    results = json.loads((out / "results.json").read_text())
    assert results["cache"]["hits"] == {"reference": True, "candidate": True}     # the 2nd session reused the cache


def test_undecided_gates_are_skipped_with_their_reason_unless_strict():
    gates = {g["id"]: g for g in undecided_results()["gates"]}
    assert gate_outcome(gates["hit-rate"], strict=False) == ("skip", f"hit-rate: inconclusive: {INCONCLUSIVE_MESSAGE}")
    assert gate_outcome(gates["hit-rate"], strict=True) == ("fail", "")
    for strict in (False, True):               # an uninformative gate could not fail, and never passes either
        assert gate_outcome(gates["json-valid"], strict) == ("skip", f"json-valid: uninformative: {UNINFORMATIVE_MESSAGE}")
        assert gate_outcome(gates["probe-flips"], strict)[0] == "skip"
        assert [gate_outcome(gates[g], strict)[0] for g in ("drift-mean", "kl-mean")] == ["pass", "warn"]


def test_awq_strict_becomes_the_decision_override(pytester):
    assert check_overrides(pytester.parseconfig())["decision.strict"] is None          # not given: the file decides
    assert check_overrides(pytester.parseconfig("--awq-strict"))["decision.strict"] is True
    pytester.makeini("[pytest]\nawq_gates_strict = true\n")
    overrides = check_overrides(pytester.parseconfig("--awq-suite", "s"))
    assert overrides["decision.strict"] is True and overrides["suite"] == "s" and overrides["out"] is None
