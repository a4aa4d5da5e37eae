"""QuantizedWeight: integer weights on a group grid, and how they decode, ŵ = (q − z)·Δ.

It is the hand-over between the quantizer, which produces it (quantizer/rounding.py, quantizer/dh.py),
and AWQLinear, which packs it; living under kernels keeps the dependency one way: quantizer → kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizedWeight:
    """Integer weights on the grid.

    q:      int32 [out, in]       values in [0, 2^b − 1]
    scales: float32 [out, in/g]   Δ per group
    zeros:  int32 [out, in/g]     z per group
    """

    q: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    group_size: int

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.q, self.scales, self.zeros, self.group_size)


def dequantize(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """ŵ = (q − z)·Δ for q [out, in], scales/zeros [out, in/g] -> float32 [out, in]; group_size -1: whole rows."""
    out_f, in_f = q.shape
    g = in_f if group_size == -1 else group_size
    qg = q.reshape(out_f, in_f // g, g).float()
    w = (qg - zeros.float().unsqueeze(-1)) * scales.float().unsqueeze(-1)
    return w.reshape(out_f, in_f)
