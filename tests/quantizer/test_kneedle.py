"""Kneedle on curves whose knee is known, and the outlier channels it marks."""

import numpy as np
import pytest
import torch

from awqguard.quantizer.kneedle import knee_index, outlier_channels


def test_piecewise_linear_curve_has_its_knee_at_the_break():
    steep, flat = np.linspace(100, 10, 11), np.linspace(10, 0, 91)[1:]      # break after index 10
    assert knee_index(np.concatenate([steep, flat])) == 10
    steep, flat = np.linspace(50, 5, 31), np.linspace(5, 0, 71)[1:]         # break after index 30
    assert knee_index(np.concatenate([steep, flat])) == 30


def test_curves_without_a_knee():
    assert knee_index(np.linspace(1.0, 0.0, 50)) is None                     # a straight line
    assert knee_index(np.ones(20)) is None                                   # flat
    assert knee_index([3.0, 1.0]) is None                                    # too short


def test_exponential_decay_knee_sits_in_the_bend():
    knee = knee_index(np.exp(-np.arange(100) / 10))
    assert 10 <= knee <= 35


def test_higher_sensitivity_is_more_conservative():
    y = np.concatenate([np.linspace(100, 10, 11), np.linspace(10, 0, 91)[1:]])
    assert knee_index(y, sensitivity=1.0) == 10
    assert knee_index(y, sensitivity=1000.0) is None


def test_unsorted_input_is_an_error():
    with pytest.raises(ValueError, match="descending"):
        knee_index([1.0, 3.0, 2.0])


def test_outlier_channels_are_the_large_ones_before_the_knee():
    means = torch.full((256,), 0.1) + torch.rand(256, generator=torch.Generator().manual_seed(0)) * 0.01
    big = torch.tensor([3, 40, 77, 200])
    means[big] = torch.tensor([9.0, 8.0, 7.5, 7.0])
    mask = outlier_channels(means)
    assert set(mask.nonzero().flatten().tolist()) == set(big.tolist())


def test_outlier_channels_fall_back_to_the_top_five_percent():
    means = torch.linspace(1.0, 0.5, 200)                                   # no knee: a straight ramp
    mask = outlier_channels(means)
    assert mask.sum() == 10 and mask[:10].all()


def test_knee_tolerance_moves_the_cut_by_a_share_of_the_searched_half():
    means = torch.full((256,), 0.1) + torch.rand(256, generator=torch.Generator().manual_seed(0)) * 0.01
    means[[3, 40, 77, 200]] = torch.tensor([9.0, 8.0, 7.5, 7.0])
    assert outlier_channels(means, tolerance=0.0).sum() == 4
    wider = outlier_channels(means, tolerance=0.1)                          # + int(0.1 * 128) channels
    assert wider.sum() == 4 + 12 and wider[[3, 40, 77, 200]].all()
    assert outlier_channels(means, tolerance=-0.1).sum() == 0              # never below none
    assert outlier_channels(means, tolerance=1.0).sum() == 4 + 128
