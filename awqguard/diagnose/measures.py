"""Pure measurements behind a diagnosis: KL between log-probabilities, the scale AWQ folded into a
linear, activation outliers, and how far calibration text is from the suite's corpus."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np
import torch


def mean_kl(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over positions of KL(reference ‖ other), both [..., V] log-probabilities, in nats."""
    p = reference.exp()
    return float((p * (reference - other)).sum(-1).mean())


def fold_scales(weight: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
    """The per-input-channel scale s with folded ≈ weight · diag(s), by least squares per column.

    AWQ multiplies a linear's input columns by s and divides the op before it by s; the checkpoint
    holds round(weight · s). To put one quantized linear back into the float model alone, its
    weight must be seen in the float frame, folded / s. The part of the rounding error that lies
    along a column itself is absorbed into that column's s, which slightly understates the error.
    """
    dot = (weight * folded).sum(0)
    norm = (weight * weight).sum(0)
    return torch.where(norm > 0, dot / norm.clamp_min(1e-30), torch.ones_like(norm))


def in_float_frame(weight: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
    """A quantized linear's weight as the float model would hold it: folded / s (see fold_scales)."""
    s = fold_scales(weight, folded)
    return folded / torch.where(s.abs() > 1e-12, s, torch.ones_like(s))


def outlier_stats(absmax: torch.Tensor) -> dict[str, float]:
    """Outlier channels of a linear's input, from each channel's largest |x| over the text: the
    largest over the median (how far the worst channel sticks out) and the share of channels past
    six medians (how many do)."""
    med = float(absmax.median())
    if med <= 0:
        return {"max_over_median": float("inf") if float(absmax.max()) > 0 else 1.0, "share_over_6x": 0.0}
    return {"max_over_median": float(absmax.max()) / med, "share_over_6x": float((absmax > 6 * med).float().mean())}


def token_distribution(token_ids: Iterable[int]) -> Counter:
    return Counter(int(t) for t in token_ids)


def js_distance(a: Counter, b: Counter) -> float:
    """Jensen-Shannon divergence (base 2, 0 = same unigram distribution, 1 = disjoint) of two token counts."""
    keys = sorted(set(a) | set(b))
    if not keys:
        return 0.0
    p = np.array([a.get(k, 0) for k in keys], dtype=np.float64)
    q = np.array([b.get(k, 0) for k in keys], dtype=np.float64)
    p, q = p / max(p.sum(), 1.0), q / max(q.sum(), 1.0)
    m = (p + q) / 2

    def kl(x):
        mask = x > 0
        return float((x[mask] * np.log2(x[mask] / m[mask])).sum())
    return (kl(p) + kl(q)) / 2


def unseen_share(calibration: Counter, corpus: Counter) -> float:
    """The share of the corpus's tokens whose token never occurs in the calibration text."""
    total = sum(corpus.values())
    return sum(n for t, n in corpus.items() if t not in calibration) / total if total else 0.0
