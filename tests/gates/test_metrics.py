"""Each metric on hand-built inputs whose answer is known."""

import math

import numpy as np
import pytest
import torch

from awqguard.backends.base import Scores
from awqguard.gates import metrics as m
from awqguard.gates import topk


def test_delta_s_identical_orthogonal_opposite():
    v = np.array([0.3, -1.2, 2.0])
    assert m.delta_s(v, v) == pytest.approx(0.0, abs=1e-12)
    assert m.delta_s(v, 5 * v) == pytest.approx(0.0, abs=1e-12)
    assert m.delta_s(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(1.0)
    assert m.delta_s(np.array([1.0, 0]), np.array([-1.0, 0])) == 1.0          # clipped to [0, 1]
    rows = m.delta_s(np.eye(2), np.array([[1.0, 0], [1.0, 1.0]]))
    assert rows == pytest.approx([0.0, 1 - 1 / math.sqrt(2)])
    assert [m.zone(x) for x in (0.1, 0.4, 0.59, 0.6)] == ["stable", "transitional", "transitional", "risk"]


def test_pairwise_and_anchor_gap():
    pw = m.pairwise_delta_s(np.array([[1.0, 0], [1.0, 0], [0, 1.0]]))
    assert sorted(pw.tolist()) == pytest.approx([0.0, 1.0, 1.0])
    assert m.anchor_gap(0.5, 0.2) == pytest.approx(0.3)


def test_coverage_of_a_span_by_chunks():
    anchor = [("ops", 100, 200)]
    assert m.coverage(anchor, [("ops", 0, 300)]) == 1.0
    assert m.coverage(anchor, [("ops", 150, 400)]) == 0.5
    assert m.coverage(anchor, [("ops", 120, 160), ("ops", 140, 180)]) == pytest.approx(0.6)   # overlap counted once
    assert m.coverage(anchor, [("other", 100, 200)]) == 0.0
    two = [("ops", 0, 100), ("auth", 0, 300)]
    assert m.coverage(two, [("auth", 0, 300)]) == pytest.approx(0.75)


def test_lambda_labels_for_constructed_run_sets():
    hit, miss_soft, miss_hard = m.Run(0.2), m.Run(0.5), m.Run(0.7)
    assert m.lambda_label([hit] * 8, answer_agreement=0.1) == m.CONVERGENT
    assert m.lambda_label([hit] * 8, answer_agreement=0.3) == m.SPLIT          # all hit, answers disagree
    assert m.lambda_label([hit] * 6 + [miss_soft] * 2, 0.1) == m.SPLIT
    assert m.lambda_label([hit] * 7 + [miss_hard], 0.1) == m.CHAOTIC
    assert m.lambda_label([hit] * 7 + [m.Run(0.1, aborted=True)], 0.1) == m.DIVERGENT
    assert m.Run(0.9, cites_anchor=True).hit
    # the run-level ×: one bad run in eight makes the item chaotic but moves the run rate by 1/8
    assert [r.misses_badly for r in (hit, miss_soft, miss_hard, m.Run(0.9, cites_anchor=True))] == [False, False, True, False]


def test_step_labels():
    assert m.step_labels([0.8, 0.7, 0.6, 0.5])[1:] == [m.CONVERGENT] * 3
    assert m.step_labels([0.5, 0.5, 0.505, 0.5])[1:] == [m.SPLIT] * 3
    assert m.step_labels([0.3, 0.4])[1] == m.CHAOTIC
    assert m.step_labels([0.3, 0.33])[1] == m.DIVERGENT


def _entropy(logprobs: np.ndarray) -> np.ndarray:
    """The entropy the engine computes (gates/topk.py), of log-probabilities [T, V]."""
    lp = torch.from_numpy(logprobs)
    return topk.entropy(Scores(torch.zeros(lp.shape[0], dtype=torch.long), lp)).numpy()


def test_entropy_smoothing_and_slope_on_synthetic_curves():
    uniform = np.log(np.full((1, 4), 0.25))
    assert _entropy(uniform)[0] == pytest.approx(math.log(4))
    assert _entropy(np.log(np.array([[1.0, 1e-300]])))[0] == pytest.approx(0.0, abs=1e-9)
    assert m.slope_per_100(np.arange(100) * 0.01) == pytest.approx(1.0)
    assert m.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [2.0, 2.0, 4.0, 6.0]
    # at the edges the window slides inward: the first position averages a whole window, not one token
    spike = np.zeros(100)
    spike[0] = 32.0
    assert m.smooth(spike, 32)[0] == pytest.approx(1.0)
    assert m.smooth(np.array([5.0]), 32).tolist() == [5.0]


def test_onset_share_is_continuous_and_monotone_in_the_candidates_entropy():
    from awqguard.gates.entropy import ONSET_FROM, ONSET_FULL, onset_share
    reference = np.full(200, 1.0)
    shares = [onset_share(reference, reference * f) for f in np.linspace(1.0, 2.5, 31)]
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert all(b >= a for a, b in zip(shares, shares[1:]))
    assert max(b - a for a, b in zip(shares, shares[1:])) < 0.11          # no jump from 0 to 1
    halfway = (ONSET_FROM + ONSET_FULL) / 2
    assert onset_share(reference, reference * halfway) == pytest.approx(0.5)
    late = np.concatenate([np.full(100, 1.0), np.full(100, 3.0)])       # only the second half runs away
    assert onset_share(reference, late) == pytest.approx(0.5)


def test_repetition_loop():
    assert m.repetition_loop("a b c d a b c d a b c d".split())
    assert not m.repetition_loop("the quick brown fox jumps over the lazy dog".split())


def test_json_extraction_and_validity():
    schema = {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"],
              "additionalProperties": False}
    assert m.json_valid('Sure! ```json\n{"days": 90}\n```', schema)
    assert m.json_valid('The answer is {"days": 90}.', schema)
    assert not m.json_valid('{"days": "90"}', schema)
    assert not m.json_valid("no json here", schema)


def test_resampled_intervals_known_cases():
    from awqguard.gates.resample import Resampler
    rs = Resampler.for_suite("abc")
    ref = np.linspace(0, 1, 20)
    assert rs.paired(ref, ref) == (0.0, 0.0)
    low, high = rs.paired(ref + 0.1, ref)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    noisy = ref + np.where(np.arange(20) % 2, 0.2, 0.0)
    low, high = rs.paired(noisy, ref)
    assert low < 0.1 < high
    assert rs.interval(noisy) == Resampler.for_suite("abc").interval(noisy)     # reproducible from the digest
    assert rs.interval(noisy) != Resampler.for_suite("abd").interval(noisy)
    low, high = rs.interval([0.0] * 19 + [1.0], "max")                          # the worst item may be left out
    assert (low, high) == (0.0, 1.0)
    assert rs.of(20, lambda idx: float(ref[idx].mean())) == pytest.approx(rs.interval(ref), abs=1e-12)


def test_mcnemar_known_cases():
    none = m.mcnemar([True, False, True], [True, False, True])
    assert (none.reference_only, none.candidate_only, none.p_value) == (0, 0, 1.0)
    # b = 6 flips to fail, c = 0: exact two-sided p = 2 * 0.5^6 = 0.03125
    flips = m.mcnemar([True] * 10, [False] * 6 + [True] * 4)
    assert (flips.reference_only, flips.candidate_only) == (6, 0)
    assert flips.p_value == pytest.approx(0.03125)
    balanced = m.mcnemar([True, True, False, False], [False, False, True, True])
    assert balanced.p_value == pytest.approx(1.0)
