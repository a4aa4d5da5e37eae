"""Dynamic Heuristic rounding (docs/architecture.md §4): greedy flips after nearest rounding.

For each output row, the expected output error over calibration means is e = Σ_j (w_j − ŵ_j)·E[x_j].
A flip moves one weight to its other grid neighbour (the one nearest rounding passed over); it is a
candidate only if it stays on the grid, leaves outlier channels alone and pushes e towards zero.
Candidates are taken in order of closeness to the rounding boundary until their cumulative impact
reaches |e| (the crossing flip only if it still shrinks |e|), at most `max_flips` per row. Pure
tensor code, vectorised over rows. Whether it helps is for bench/rounding.py to say.
"""

from __future__ import annotations

import torch

from awqguard.kernels.quantized import QuantizedWeight
from awqguard.quantizer.rounding import quantize


def expected_error(w: torch.Tensor, w_hat: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """e per output row [out]: Σ_j (w_j − ŵ_j)·E[x_j]."""
    return (w.float() - w_hat.float()) @ means.float()


def dh_quantize(w: torch.Tensor, means: torch.Tensor, w_bit: int, group_size: int, zero_point: bool = True,
                max_flip_percent: float = 0.01, outliers: torch.Tensor | None = None) -> QuantizedWeight:
    """Nearest rounding of `w` [out, in], then greedy flips that shrink each row's expected error.
    `means` [in]: E[x_j] over calibration; `outliers` [in] bool: channels never flipped."""
    base = quantize(w, w_bit, group_size, zero_point)
    out_f, in_f = w.shape
    max_flips = int(max_flip_percent * in_f)
    if max_flips <= 0:
        return base
    g = base.group_size
    step = base.scales.repeat_interleave(g, dim=1)                      # Δ per weight [out, in]
    zero = base.zeros.repeat_interleave(g, dim=1).float()
    exact = w.float() / step + zero                                     # position on the integer grid
    q = base.q.float()
    direction = torch.sign(exact - q)                                   # towards the other neighbour
    target = q + direction
    qmax = 2**w_bit - 1
    e = expected_error(w, base.dequantize(), means)                      # [out]
    impact = direction * step * means.float().unsqueeze(0)              # how much a flip lowers e
    valid = (direction != 0) & (target >= 0) & (target <= qmax) & (torch.sign(impact) == torch.sign(e).unsqueeze(1))
    if outliers is not None:
        valid &= ~outliers.to(torch.bool).unsqueeze(0)
    closeness = (0.5 - (exact - q).abs())                               # 0 at the boundary
    key = torch.where(valid, closeness, torch.full_like(closeness, float("inf")))
    order = key.topk(min(max_flips, in_f), dim=1, largest=False).indices     # ascending: nearest first
    taken_valid = valid.gather(1, order)
    sizes = impact.abs().gather(1, order) * taken_valid
    reach = e.abs().unsqueeze(1)
    before = sizes.cumsum(dim=1) - sizes                                # impact of the flips ahead of each
    take = taken_valid & (before < reach)
    after = (reach - before - sizes).abs()                              # |e| left if this flip is taken
    take &= after < (reach - before)                                     # the crossing flip only if it helps
    flips = torch.zeros_like(valid)
    flips.scatter_(1, order, take)
    new_q = torch.where(flips, target, q).to(torch.int32)
    return QuantizedWeight(new_q, base.scales, base.zeros, g)
