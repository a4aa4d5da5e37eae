import math

import pytest

from awqguard.errors import ConfigError
from awqguard.gates.document import Measurement, verdict_of
from awqguard.gates.policy import DEFAULT_GATES, Decision, Gate, either, holds
from awqguard.gates.problem_map import SYMPTOMS


def point(value, reference=None, **kw):
    """A measurement with no sampling noise (an interval of one point)."""
    return Measurement(value=value, reference=reference, **kw)


def test_check_names_metric_value_and_threshold():
    gate = Gate("cov", "coverage.mean", ">=", 0.7, symptoms=("retrieval-drift",))
    ok, bad = gate.check(point(0.8)), gate.check(point(0.5))
    assert ok.passed and not bad.passed
    assert bad.message == "coverage.mean = 0.5 fails >= 0.7"
    assert not gate.check(point(None)).passed and not gate.check(point(math.nan)).passed
    assert Gate("g", "kl.mean", "<", 1).check(point(1)).passed is False
    assert Gate("g", "kl.mean", "<=", 1).check(point(1)).passed


def test_three_valued_logic():
    assert holds("<=", (0.1, 0.2), 0.3) is True and holds("<=", (0.4, 0.5), 0.3) is False
    assert holds("<=", (0.2, 0.4), 0.3) is None and holds(">=", (0.2, 0.4), 0.3) is None
    assert holds(">=", (0.31, 0.4), 0.3) is True and holds(">", (0.2, 0.3), 0.3) is False
    assert either(True, None) is True and either(False, None) is None and either(False, False) is False


def test_the_interval_decides_on_its_end_worse_for_the_candidate():
    gate = Gate("drift", "drift.answer_ds_excess", "<=", 0.10)
    sure = gate.check(point(0.05, ci=(0.02, 0.08), n=20))
    straddles = gate.check(point(0.05, ci=(0.01, 0.14), n=20))
    over = gate.check(point(0.16, ci=(0.12, 0.20), n=20))
    assert sure.status == "pass" and "95% interval 0.02 to 0.08" in sure.message
    assert straddles.status == "inconclusive" and straddles.passed and "straddles" in straddles.message
    assert over.status == "fail"
    assert Gate("d", "drift.answer_ds_excess", "<=", 0.1, severity="warn").check(
        point(0.05, ci=(0.01, 0.14), n=20)).status == "inconclusive"


def test_too_few_units_is_inconclusive_even_with_a_clear_interval():
    gate = Gate("drift", "drift.answer_ds_excess", "<=", 0.10)
    thin = gate.check(point(0.01, ci=(0.0, 0.02), n=5), Decision(min_items=8))
    assert thin.status == "inconclusive" and "only 5 units" in thin.message and "decision.min_items" in thin.message
    assert gate.check(point(0.01, ci=(0.0, 0.02), n=5), Decision(min_items=4)).status == "pass"


def test_reference_that_misses_the_bar_turns_the_gate_relative():
    gate = Gate("conv", "lambda.convergence_rate", ">=", 0.8, tolerance=0.1)
    variants = lambda cand, ref, **kw: Measurement.of_variants(ref, cand, **kw)
    assert gate.check(variants(0.85, 0.5)).basis == "absolute"
    near, far = gate.check(variants(0.45, 0.5)), gate.check(variants(0.3, 0.5))
    assert near.passed and near.basis == "reference" and "like the reference" in near.message
    assert not far.passed and far.status == "fail"
    assert not gate.check(variants(0.45, 0.9)).passed         # the reference meets the bar: absolute
    assert not Gate("c", "kl.mean", "<=", 0.4).check(point(0.45, reference=0.5)).passed   # no tolerance
    # the difference's interval decides the relative route
    noisy = gate.check(variants(0.42, 0.5, ci=(0.3, 0.55), diff_ci=(-0.2, 0.05), n=30))
    assert noisy.status == "inconclusive"
    assert gate.check(variants(0.42, 0.5, ci=(0.3, 0.55), diff_ci=(-0.09, 0.02), n=30)).status == "pass"
    # a reference whose own interval straddles the bar cannot be shown to meet it: the relative route opens
    ds = Gate("ds", "ds_qr.mean", "<=", 0.40, tolerance=0.02)
    near_bar = Measurement.of_variants(0.389, 0.391, ci=(0.367, 0.415), diff_ci=(-0.002, 0.006), n=48,
                                       reference_ci=(0.365, 0.413))
    assert ds.check(near_bar).status == "pass" and ds.check(near_bar).basis == "reference"
    sure_ref = Measurement.of_variants(0.30, 0.391, ci=(0.367, 0.415), diff_ci=(0.08, 0.1), n=48,
                                       reference_ci=(0.28, 0.32))
    assert ds.check(sure_ref).status == "inconclusive"          # the reference meets the bar: absolute only
    # straddling the bar beside a reference that does too, but surely worse than it beyond the tolerance
    worse = Measurement.of_variants(0.389, 0.421, ci=(0.394, 0.449), diff_ci=(0.022, 0.043), n=48,
                                    reference_ci=(0.366, 0.413))
    assert ds.check(worse).status == "fail" and ds.check(worse).basis == "reference"
    undecided = Measurement.of_variants(0.389, 0.405, ci=(0.38, 0.43), diff_ci=(0.005, 0.03), n=48,
                                        reference_ci=(0.366, 0.413))
    assert ds.check(undecided).status == "inconclusive"


def test_a_gate_that_cannot_fail_is_uninformative_not_pass():
    conv = Gate("conv", "lambda.convergence_rate", ">=", 0.8, tolerance=0.1)
    floor = conv.check(Measurement.of_variants(0.0, 0.0, n=48))
    assert floor.status == "uninformative" and "floor" in floor.message and floor.passed
    assert conv.check(Measurement.of_variants(0.5, 0.0, n=48)).status == "fail"     # off the floor it decides
    chaotic = Gate("ch", "lambda.chaotic_share", "<=", 0, tolerance=0.1)
    assert chaotic.check(Measurement.of_variants(0.95, 1.0, n=48)).status == "uninformative"   # ceiling
    assert chaotic.check(Measurement.of_variants(0.7, 1.0, n=48)).status == "fail"
    json_drop = Gate("j", "json.validity_drop", "<=", 0.05)
    assert json_drop.check(point(0.0, n=8, worst=0.0)).status == "uninformative"    # the reference is never valid
    assert json_drop.check(point(0.0, n=8, worst=0.9)).status == "pass"
    fixed = Gate("r", "ds_qr.mean", "<=", 0.4).check(Measurement(reference=0.3, candidate=0.3, per_variant=True, fixed="one retriever"))
    assert fixed.status == "uninformative" and "one retriever" in fixed.message
    assert Gate("k", "kl.mean", "<=", 0.1).uninformative(point(0.0)) is None       # unbounded: always informative


def test_warn_and_skip_statuses():
    warn = Gate("kl", "kl.mean", "<=", 0.1, severity="warn")
    assert warn.check(point(0.2)).status == "warn" and warn.check(point(0.2)).passed
    skipped = warn.check(Measurement.not_measured("the suite has no json items"))
    assert skipped.status == "skip" and skipped.passed and "no json items" in skipped.message
    assert warn.check(point(None)).status == "warn"
    assert Gate("kl", "kl.mean", "<=", 0.1).check(point(None)).status == "fail"


def test_strict_makes_an_inconclusive_check_fail():
    assert verdict_of([("pass", "fail"), ("inconclusive", "fail")]) == "inconclusive"
    assert verdict_of([("pass", "fail"), ("inconclusive", "fail")], strict=True) == "fail"
    assert verdict_of([("pass", "fail"), ("uninformative", "fail"), ("warn", "warn"), ("skip", "fail")]) == "pass"
    assert verdict_of([("fail", "fail"), ("inconclusive", "fail")]) == "fail"


def test_an_undecided_warn_gate_never_moves_the_verdict():
    """Failing outright a warn-severity gate only warns, so being undecided cannot count for more."""
    outcomes = [("pass", "fail"), ("inconclusive", "warn"), ("warn", "warn")]
    assert verdict_of(outcomes) == "pass" and verdict_of(outcomes, strict=True) == "pass"
    assert verdict_of(outcomes + [("inconclusive", "fail")], strict=True) == "fail"


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


def test_a_gate_naming_an_unknown_metric_is_refused_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"gate g: unknown metric 'kl.men' \(did you mean 'kl.mean'\?\)"):
        Gate("g", "kl.men", "<=", 0.1)


def test_every_default_gate_names_a_declared_metric_and_finds_worst_items_as_declared():
    from awqguard.gates.registry import METRICS
    for gate in DEFAULT_GATES:
        assert gate.metric in METRICS
        assert gate.worst is METRICS[gate.metric].worst
