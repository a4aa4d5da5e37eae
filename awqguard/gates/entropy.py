"""Entropy vs length (docs/architecture.md §9): both models teacher-forced on the reference's long continuations.

Positions line up because both models read the same tokens. Per position: entropy of each
model's next-token distribution, KL(reference ‖ candidate) and top-1 agreement, averaged over
the long items. Both functions are pure: the scores come from the backends.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from awqguard.backends.base import Scores
from awqguard.gates import metrics as m
from awqguard.gates import topk

SMOOTH_WINDOW = 64


def position_curves(pairs: Iterable[tuple[Scores, Scores]]) -> dict | None:
    """Mean per-position entropy of both models, KL and top-1 agreement over the (reference,
    candidate) scores of each continuation; None without continuations. When either side is
    top-K, both entropies are top-K estimates at the same K (gates/topk.py); positions a backend
    could not score are left out of that position's mean."""
    h_r, h_c, kl, agree, ks = [], [], [], [], set()
    for ref, cand in pairs:
        k = topk.common_k(ref, cand)
        keep = (topk.valid_mask(ref) & topk.valid_mask(cand)).cpu().numpy()
        h_r.append(topk.entropy(topk.as_top_k(ref, k)).cpu().numpy())
        h_c.append(topk.entropy(topk.as_top_k(cand, k)).cpu().numpy())
        kl.append(topk.kl(ref, cand).cpu().numpy())
        agree.append((topk.top_token(ref) == topk.top_token(cand)).float().cpu().numpy())
        for series in (h_r, h_c, kl, agree):
            series[-1] = np.where(keep, series[-1], np.nan)
        ks.add(k)
    if not h_r:
        return None
    length = min(len(x) for x in h_r)
    mean = lambda xs: _position_mean(np.array([x[:length] for x in xs], dtype=np.float64))
    k = topk.smallest_k(ks)
    return {"entropy_reference": mean(h_r), "entropy_candidate": mean(h_c), "kl": mean(kl),
            "top1_agreement": mean(agree), "sequences": len(h_r), "length": length,
            **({"estimate": topk.estimate_label(k)} if k is not None else {})}


def _position_mean(rows: np.ndarray) -> np.ndarray:
    """Mean over sequences per position, unscored positions left out; a position no sequence could
    score takes its neighbours' value (curves must be finite)."""
    if not np.isnan(rows).any():
        return rows.mean(axis=0)
    scored = (~np.isnan(rows)).sum(axis=0)
    curve = np.where(scored > 0, np.nansum(rows, axis=0) / np.maximum(scored, 1), np.nan)
    idx = np.arange(len(curve))
    good = ~np.isnan(curve)
    return np.interp(idx, idx[good], curve[good]) if good.any() else np.zeros_like(curve)


def entropy_verdict(h_reference: np.ndarray, h_candidate: np.ndarray, window: int = SMOOTH_WINDOW) -> dict:
    """Onsets (first position where smoothed entropy exceeds 2x the reference's early median), the
    candidate's onset shift as a share of the length (positive = earlier), and the slope excess per 100 tokens."""
    length = len(h_reference)
    baseline = m.early_median(h_reference)
    s_r, s_c = m.smooth(h_reference, window), m.smooth(h_candidate, window)
    onset_r, onset_c = m.entropy_onset(s_r, baseline), m.entropy_onset(s_c, baseline)
    shift = ((length if onset_r is None else onset_r) - (length if onset_c is None else onset_c)) / length
    slope_r, slope_c = m.slope_per_100(s_r), m.slope_per_100(s_c)
    return {"onset_reference": onset_r, "onset_candidate": onset_c, "onset_shift": float(shift),
            "slope_reference": slope_r, "slope_candidate": slope_c, "slope_excess": slope_c - slope_r,
            "early_median": baseline, "smoothed_reference": s_r, "smoothed_candidate": s_c}
