import pytest
import torch

from awqguard.kernels.quantized import dequantize
from awqguard.quantizer.rounding import fake_quantize, quantize


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("zero_point", [True, False])
def test_grid_bounds_and_error(bits, zero_point):
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(bits))
    qw = quantize(w, bits, 32, zero_point)
    assert int(qw.q.min()) >= 0 and int(qw.q.max()) <= 2**bits - 1
    w_hat = qw.dequantize()
    # nearest rounding: error at most half a step, except where symmetric clamps the most negative value
    err = (w_hat - w).abs().reshape(32, 4, 32)
    assert (err <= qw.scales.unsqueeze(-1) * 0.5 + 1e-6).all()
    assert torch.equal(fake_quantize(w, bits, 32, zero_point), w_hat)


def test_asymmetric_hand_example():
    # one group [0, 1.5, 3.0, -1.5] at 2 bits: Δ = 4.5/3 = 1.5, z = 1, q = [1, 2, 3, 0]
    qw = quantize(torch.tensor([[0.0, 1.5, 3.0, -1.5]]), 2, -1, True)
    assert qw.q.tolist() == [[1, 2, 3, 0]] and qw.zeros.tolist() == [[1]]
    assert torch.allclose(qw.scales, torch.tensor([[1.5]]))


def test_round_half_to_even():
    # Δ = 1 on [0, 15]; 2.5 -> 2, 3.5 -> 4
    w = torch.tensor([[0.0, 2.5, 3.5] + [15.0] + [0.0] * 4])
    q = quantize(w, 4, -1, True).q
    assert q[0, 1] == 2 and q[0, 2] == 4


def test_whole_row_group():
    w = torch.randn(8, 96)
    qw = quantize(w, 4, -1)
    assert qw.scales.shape == (8, 1)
    assert torch.allclose(dequantize(qw.q, qw.scales, qw.zeros, -1), qw.dequantize())
