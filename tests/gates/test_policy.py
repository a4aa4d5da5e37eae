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
    assert Gate("g", "m", "<", 1).check(1).passed is False and Gate("g", "m", "<=", 1).check(1).passed


@pytest.mark.parametrize("kwargs,match", [({"op": "=="}, "op must be one of"),
                                          ({"severity": "error"}, "severity must be fail or warn"),
                                          ({"symptoms": ("nope",)}, "unknown symptom")])
def test_bad_gate_definitions(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Gate(**{"id": "g", "metric": "m", "op": "<=", "threshold": 1.0, **kwargs})


def test_default_policy_is_consistent_with_the_problem_map():
    ids = [g.id for g in DEFAULT_GATES]
    assert len(ids) == len(set(ids))
    evidenced = {s for g in DEFAULT_GATES for s in g.symptoms}
    # every symptom but "no-gain" (a cost check, not a quality gate) is evidenced by some gate
    assert evidenced == set(SYMPTOMS) - {"no-gain"}
    assert all(s.fixes and s.causes for s in SYMPTOMS.values())
