"""Kneedle knee detection (Satopää et al., 2011) and the outlier channels it marks for dh rounding.

`knee_index` is a pure function on a curve sorted in descending order (the sorted |E[x_j]| of a
layer's input channels): the knee is where the steep head of a few large channels turns into the
flat tail. `outlier_channels` applies it to the first half of the sorted curve, as docs/architecture.md §4
item 8 says, and falls back to the top 5% when the curve has no knee. Hand-written instead of the
`kneed` package: the whole method is a dozen lines of numpy and we need only the one curve shape.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

FALLBACK_SHARE = 0.05


def knee_index(values: Sequence[float], sensitivity: float = 1.0) -> int | None:
    """Index of the knee of a descending (convex, decreasing) curve, or None when it has none.

    Both axes are scaled to [0, 1]; the curve is turned into a concave increasing one (1 - y), and
    the knee is the first local maximum of the difference curve (1 - y) - x that the curve then
    falls below by `sensitivity` times the mean x step (Kneedle's threshold), before rising again.
    """
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    if n < 3 or not np.all(np.isfinite(y)):
        return None
    if np.any(np.diff(y) > 0):
        raise ValueError("knee_index needs values sorted in descending order")
    span = y[0] - y[-1]
    if span <= 0:
        return None
    x = np.linspace(0.0, 1.0, n)
    diff = (1.0 - (y - y[-1]) / span) - x
    interior = diff[1:-1]
    maxima = np.flatnonzero((interior >= diff[:-2]) & (interior > diff[2:])) + 1
    if not len(maxima):
        return None
    # lowest point after each maximum, up to the next one (a maximum never lowers its segment's min)
    lowest_after = np.minimum.reduceat(diff, maxima + 1)
    falls = lowest_after < diff[maxima] - sensitivity / (n - 1)
    return int(maxima[np.argmax(falls)]) if falls.any() else None


def outlier_channels(abs_means: torch.Tensor, tolerance: float = 0.0, sensitivity: float = 1.0) -> torch.Tensor:
    """Boolean mask [in_features] of the channels whose mean |activation| lies before the knee of the
    first half of the sorted curve; the top 5% when that half has no knee.

    `tolerance` (the CLI's --knee-tolerance) moves the cut by that share of the searched half, as the
    method's reference implementation does: 0.1 protects 10% of the half more, a negative value fewer.
    """
    values = abs_means.detach().float().abs().cpu()
    order = torch.argsort(values, descending=True)
    head = values[order][: max(3, len(values) // 2)].numpy()
    knee = knee_index(head, sensitivity)
    count = knee if knee is not None else max(1, round(FALLBACK_SHARE * len(values)))
    count = min(len(values), max(0, count + int(tolerance * len(head))))
    mask = torch.zeros(len(values), dtype=torch.bool)
    mask[order[:count]] = True
    return mask
