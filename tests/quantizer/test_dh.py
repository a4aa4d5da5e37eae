"""dh rounding: the invariants that must hold whatever it does to quality."""

import pytest
import torch

from awqguard.quantizer.dh import dh_quantize, expected_error
from awqguard.quantizer.rounding import quantize


@pytest.fixture
def layer():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=g)
    means = torch.randn(256, generator=g).abs() + 0.1
    means[[5, 99]] = 20.0                                               # two outlier channels
    return w, means


@pytest.mark.parametrize("w_bit,group", [(4, 64), (3, 64), (4, 128), (2, 32)])
def test_flips_stay_on_the_grid_and_shrink_each_rows_error(layer, w_bit, group):
    w, means = layer
    near, dh = quantize(w, w_bit, group), dh_quantize(w, means, w_bit, group, max_flip_percent=0.05)
    assert dh.q.min() >= 0 and dh.q.max() <= 2**w_bit - 1
    moved = dh.q != near.q
    assert moved.any()
    assert ((dh.q - near.q).abs()[moved] == 1).all()                    # one grid step, to the other neighbour
    e_near = expected_error(w, near.dequantize(), means).abs()
    e_dh = expected_error(w, dh.dequantize(), means).abs()
    assert (e_dh <= e_near + 1e-6).all()
    assert e_dh.mean() < e_near.mean()


def test_flip_cap_and_outliers(layer):
    w, means = layer
    outliers = torch.zeros(256, dtype=torch.bool)
    outliers[[5, 99]] = True
    near = quantize(w, 4, 64)
    dh = dh_quantize(w, means, 4, 64, max_flip_percent=0.02, outliers=outliers)
    per_row = (dh.q != near.q).sum(dim=1)
    assert per_row.max() <= int(0.02 * 256)
    assert not (dh.q != near.q)[:, outliers].any()


def test_zero_flip_percent_is_nearest_bit_for_bit(layer):
    w, means = layer
    near, dh = quantize(w, 4, 64), dh_quantize(w, means, 4, 64, max_flip_percent=0.0)
    assert torch.equal(dh.q, near.q) and torch.equal(dh.scales, near.scales) and torch.equal(dh.zeros, near.zeros)
