"""Suite metrics on hand-built item summaries: drift is split by retrieval agreement, and every
gated figure carries an interval over items."""

import pytest

from awqguard.gates import metrics as m
from awqguard.gates.aggregate import suite_metrics
from awqguard.gates.policy import DEFAULT_GATES
from awqguard.gates.records import ItemDrift, ItemSummary, VariantSummary
from awqguard.gates.resample import Resampler


def side(label=m.SPLIT, coverage=0.9, gap=0.1, bad_miss_rate=0.0):
    return VariantSummary(label, 0.1, 1.0, 0.3, 0.3, 0.3, 0.3, 0.3, coverage, gap, gap, 0.0, ["a#b"], "answer",
                          bad_miss_rate=bad_miss_rate)


def summary(drift, matched, label_cand=m.SPLIT, noise=0.05):
    drift_of = ItemDrift(drift, 0.0, 0.0, 0.0, [drift, drift], noise, drift - noise, 1.0 if matched else 0.0,
                         None if matched else drift)
    return ItemSummary("qa", "q?", side(), side(label_cand), drift_of)


def test_changed_retrieval_is_reported_apart_from_the_generators_drift():
    generator = {f"m{i}": summary(0.05, True) for i in range(10)}       # the summaries of the matched runs
    items = {**generator, **{f"c{i}": summary(0.6, False, label_cand=m.CHAOTIC) for i in range(5)}}
    out = suite_metrics(items, [], Resampler.for_suite("t"), generator)
    assert out["drift.answer_ds_excess"].value == pytest.approx(0.0)      # matched items only
    assert out["drift.answer_ds_excess"].n == 10
    # beyond the larger of the seed noise (0.05) and the generator's own drift on matched runs (0.05)
    assert out["drift.retrieval_answer_ds_excess"].value == pytest.approx(0.55)
    assert out["drift.retrieval_answer_ds_excess"].n == 5
    # λ is the generator's too: the chaotic answers behind a changed retrieval are not counted
    assert out["lambda.chaotic_share"].candidate == 0.0
    assert out["lambda.bad_miss_rate"].candidate == 0.0
    assert out["retrieval.changed_share"].details == {"items_with_changed_runs": 5}
    # retrieval figures stay over every item, with intervals for both routes
    coverage = out["coverage.mean"]
    assert coverage.n == 15 and coverage.ci is not None and coverage.diff_ci == (0.0, 0.0)


def test_no_changed_retrieval_leaves_retrieval_drift_unmeasured_and_one_retriever_is_uninformative():
    items = {f"m{i}": summary(0.05, True) for i in range(10)}
    out = suite_metrics(items, [], Resampler.for_suite("t"), items, retrieval_shared=True)
    assert out["drift.retrieval_answer_ds_excess"].reason.startswith("every run showed both variants")
    gate = next(g for g in DEFAULT_GATES if g.id == "coverage")
    assert gate.check(out["coverage.mean"]).status == "uninformative"
    drift_gate = next(g for g in DEFAULT_GATES if g.id == "drift-mean")
    assert drift_gate.check(out["drift.answer_ds_excess"]).status == "pass"


def test_every_item_changed_leaves_the_generator_gates_unmeasured_not_passed():
    items = {f"c{i}": summary(0.6, False) for i in range(10)}
    out = suite_metrics(items, [], Resampler.for_suite("t"), {})
    drift_gate = next(g for g in DEFAULT_GATES if g.id == "drift-mean")
    verdict = drift_gate.check(out["drift.answer_ds_excess"])
    assert verdict.status == "skip" and "no run's retrieval matched" in verdict.message


def test_a_generator_that_drifts_everywhere_is_not_blamed_on_retrieval():
    generator = {f"m{i}": summary(0.6, True) for i in range(10)}        # the generator itself drifts 0.6
    items = {**generator, **{f"c{i}": summary(0.6, False) for i in range(5)}}
    out = suite_metrics(items, [], Resampler.for_suite("t"), generator)
    assert out["drift.retrieval_answer_ds_excess"].value == pytest.approx(0.0)
    assert out["drift.retrieval_answer_ds_excess"].details["generator_drift"] == pytest.approx(0.6)
    assert out["drift.answer_ds_excess"].value == pytest.approx(0.55)


def test_lambda_chaotic_decides_on_the_run_rate_not_on_items_with_any_bad_run():
    """Every item of the candidate has one bad run in eight: each item's label turns chaotic, but the
    run rate moves by 1/8 against a reference with none; the gate reads the rate."""
    items = {f"i{i}": ItemSummary("qa", "q?", side(), side(m.CHAOTIC, bad_miss_rate=0.125),
                                  ItemDrift(0.0, 0.0, 0.0, 0.0, [0.0, 0.0], 0.0, 0.0)) for i in range(12)}
    out = suite_metrics(items, [], Resampler.for_suite("t"), items)
    assert out["lambda.chaotic_share"].candidate == 1.0
    rate = out["lambda.bad_miss_rate"]
    assert rate.candidate == pytest.approx(0.125) and rate.diff_ci == pytest.approx((0.125, 0.125))
    gate = next(g for g in DEFAULT_GATES if g.id == "lambda-chaotic")
    assert gate.metric == "lambda.bad_miss_rate"
    assert gate.check(rate).status == "fail"                  # past the 0.10 tolerance on every resample
