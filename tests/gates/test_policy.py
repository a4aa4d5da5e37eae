import math

import pytest

from awqguard.errors import ConfigError
from awqguard.gates.policy import DEFAULT_GATES, Gate
from awqguard.gates.problem_map import SYMPTOMS


def test_check_names_metric_value_and_threshold():
    gate = Gate("cov", "coverage.mean", ">=", 0.7, symptoms=("retrieval-drift",))
    ok, bad = gate.check(0.8), gate.check(0.5)
    assert ok.passed and not bad.passed
    assert bad.message == "coverage.mean = 0.5 fails >= 0.7"
    assert not gate.check(None).passed and not gate.check(math.nan).passed
    assert Gate("g", "kl.mean", "<", 1).check(1).passed is False and Gate("g", "kl.mean", "<=", 1).check(1).passed


@pytest.mark.parametrize("kwargs,match", [({"op": "=="}, "op must be one of"),
                                          ({"severity": "error"}, "severity must be fail or warn"),
                                          ({"symptoms": ("nope",)}, "unknown symptom")])
def test_bad_gate_definitions(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Gate(**{"id": "g", "metric": "kl.mean", "op": "<=", "threshold": 1.0, **kwargs})


def test_default_policy_is_consistent_with_the_problem_map():
    ids = [g.id for g in DEFAULT_GATES]
    assert len(ids) == len(set(ids))
    evidenced = {s for g in DEFAULT_GATES for s in g.symptoms}
    assert evidenced == set(SYMPTOMS)              # every symptom is evidenced by some gate
    assert all(s.fixes and s.causes for s in SYMPTOMS.values())


def test_reference_that_misses_the_bar_turns_the_gate_relative():
    gate = Gate("conv", "lambda.convergence_rate", ">=", 0.8, tolerance=0.1)
    assert gate.check(0.85, reference=0.5).basis == "absolute"
    near, far = gate.check(0.45, reference=0.5), gate.check(0.3, reference=0.5)
    assert near.passed and near.basis == "reference" and "as the reference does" in near.message
    assert not far.passed and far.status == "fail"
    assert not gate.check(0.45, reference=0.9).passed         # the reference meets the bar: absolute
    assert not Gate("c", "kl.mean", "<=", 0.4).check(0.45, reference=0.5).passed   # no tolerance: absolute only


def test_warn_and_skip_statuses():
    warn = Gate("kl", "kl.mean", "<=", 0.1, severity="warn")
    assert warn.check(0.2).status == "warn" and not warn.check(0.2).passed
    skipped = warn.check(None, reason="the suite has no json items")
    assert skipped.status == "skip" and skipped.passed and "no json items" in skipped.message
    assert warn.check(None).status == "warn" and not warn.check(None).passed


def test_a_gate_naming_an_unknown_metric_is_refused_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"gate g: unknown metric 'kl.men' \(did you mean 'kl.mean'\?\)"):
        Gate("g", "kl.men", "<=", 0.1)


def test_every_default_gate_names_a_declared_metric_and_finds_worst_items_as_declared():
    from awqguard.gates.registry import METRICS
    for gate in DEFAULT_GATES:
        assert gate.metric in METRICS
        assert gate.worst is METRICS[gate.metric].worst
