"""Group-wise integer grids: quantize and fake-quantize weight matrices (the decoding ŵ = (q − z)·Δ
lives with QuantizedWeight in kernels/quantized.py, next to the packing that consumes it).

Asymmetric (zero_point=True), per group of `g` input channels of each output row:
    Δ = max(max − min, 1e-5) / (2^b − 1),  z = clamp(−round(min / Δ), 0, 2^b − 1)
    q = clamp(round(w / Δ) + z, 0, 2^b − 1),  ŵ = (q − z)·Δ
Symmetric (zero_point=False): Δ = max|w| / (2^(b−1) − 1), q stored unsigned with z = 2^(b−1),
so every checkpoint decodes with the same ŵ = (q − z)·Δ. torch.round rounds half to even.
"""

from __future__ import annotations

import torch

from awqguard.kernels.quantized import QuantizedWeight
from awqguard.quantizer.config import group_size_for


def grid_params(w: torch.Tensor, w_bit: int, group_size: int, zero_point: bool):
    """(w grouped [out, in/g, g], Δ, z, qmax) for `w` [out, in]; Δ and z shaped [out, in/g, 1] (float32)."""
    out_f, in_f = w.shape
    g = group_size_for(in_f, group_size)
    wg = w.float().reshape(out_f, in_f // g, g)
    qmax = 2**w_bit - 1
    if zero_point:
        wmax = wg.amax(dim=-1, keepdim=True)
        wmin = wg.amin(dim=-1, keepdim=True)
        delta = (wmax - wmin).clamp(min=1e-5) / qmax
        zero = (-torch.round(wmin / delta)).clamp(0, qmax)
    else:
        delta = wg.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5) / (2 ** (w_bit - 1) - 1)
        zero = torch.full_like(delta, float(2 ** (w_bit - 1)))
    return wg, delta, zero, qmax


def quantize(w: torch.Tensor, w_bit: int, group_size: int, zero_point: bool = True) -> QuantizedWeight:
    """Round `w` [out, in] to nearest on its group grid."""
    wg, delta, zero, qmax = grid_params(w, w_bit, group_size, zero_point)
    q = torch.clamp(torch.round(wg / delta) + zero, 0, qmax)
    out_f, in_f = w.shape
    return QuantizedWeight(
        q=q.reshape(out_f, in_f).to(torch.int32),
        scales=delta.squeeze(-1),
        zeros=zero.squeeze(-1).to(torch.int32),
        group_size=wg.shape[-1],
    )


def fake_quantize(w: torch.Tensor, w_bit: int, group_size: int, zero_point: bool = True) -> torch.Tensor:
    """Q(w): quantize then dequantize, same dtype as `w`. The search's inner loop."""
    wg, delta, zero, qmax = grid_params(w, w_bit, group_size, zero_point)
    q = torch.clamp(torch.round(wg / delta) + zero, 0, qmax)
    return ((q - zero) * delta).reshape(w.shape).to(w.dtype)
