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
from awqguard.gates.resample import Resampler

SMOOTH_WINDOW = 32
ONSET_FROM, ONSET_FULL = 1.25, 2.0     # candidate/reference entropy ratio where a position starts / fully counts
ENTROPY_FLOOR = 0.1                    # nats: below this the reference is treated as this sure (ratios stay finite)


def position_curves(pairs: Iterable[tuple[Scores, Scores]]) -> dict | None:
    """Per-position entropy of both models, KL and top-1 agreement over the (reference, candidate)
    scores of each continuation: one row per sequence (`rows`) and their means; None without
    continuations. When either side is top-K, both entropies are top-K estimates at the same K
    (gates/topk.py); positions a backend could not score are left out of that position's mean."""
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
    rows = lambda xs: np.array([x[:length] for x in xs], dtype=np.float64)
    k = topk.smallest_k(ks)
    rows_r, rows_c = rows(h_r), rows(h_c)
    return {"entropy_reference": position_mean(rows_r), "entropy_candidate": position_mean(rows_c),
            "kl": position_mean(rows(kl)), "top1_agreement": position_mean(rows(agree)), "sequences": len(h_r),
            "length": length, "rows": (rows_r, rows_c), **({"estimate": topk.estimate_label(k)} if k is not None else {})}


def position_mean(rows: np.ndarray) -> np.ndarray:
    """Mean over sequences per position, unscored positions left out; a position no sequence could
    score takes its neighbours' value (curves must be finite)."""
    if not np.isnan(rows).any():
        return rows.mean(axis=0)
    scored = (~np.isnan(rows)).sum(axis=0)
    curve = np.where(scored > 0, np.nansum(rows, axis=0) / np.maximum(scored, 1), np.nan)
    idx = np.arange(len(curve))
    good = ~np.isnan(curve)
    return np.interp(idx, idx[good], curve[good]) if good.any() else np.zeros_like(curve)


def onset_share(smoothed_reference: np.ndarray, smoothed_candidate: np.ndarray) -> float:
    """How much of the length the candidate's entropy runs above the reference's own at the same
    position: each position counts 0 up to a ratio of ONSET_FROM, 1 from ONSET_FULL, linearly
    between; the mean over positions. Continuous and monotone in the candidate's entropy."""
    ratio = smoothed_candidate / np.maximum(smoothed_reference, ENTROPY_FLOOR)
    return float(np.mean(np.clip((ratio - ONSET_FROM) / (ONSET_FULL - ONSET_FROM), 0.0, 1.0)))


def _figures(rows_r: np.ndarray, rows_c: np.ndarray, window: int) -> tuple[float, float]:
    """(onset share, slope excess) of the continuations in `rows_r` / `rows_c`."""
    mean_r, mean_c = position_mean(rows_r), position_mean(rows_c)
    return (onset_share(m.smooth(mean_r, window), m.smooth(mean_c, window)),
            m.slope_per_100(mean_c) - m.slope_per_100(mean_r))


def entropy_verdict(rows_reference: np.ndarray, rows_candidate: np.ndarray, resampler: Resampler,
                    window: int = SMOOTH_WINDOW) -> dict:
    """The onset share and the slope excess per 100 tokens (candidate − reference), each with its
    interval over sequences, plus the smoothed curves and the first position where the candidate
    reaches twice the reference's entropy (the report's marker)."""
    mean_r, mean_c = position_mean(rows_reference), position_mean(rows_candidate)
    s_r, s_c = m.smooth(mean_r, window), m.smooth(mean_c, window)
    slope_r, slope_c = m.slope_per_100(mean_r), m.slope_per_100(mean_c)
    share_ci, slope_ci = resampler.of_each(
        len(rows_reference), lambda idx: _figures(rows_reference[idx], rows_candidate[idx], window))
    full = np.nonzero(s_c >= ONSET_FULL * np.maximum(s_r, ENTROPY_FLOOR))[0]
    return {"onset_share": onset_share(s_r, s_c), "onset_share_ci": share_ci, "slope_excess": slope_c - slope_r,
            "slope_excess_ci": slope_ci, "onset_candidate": int(full[0]) if len(full) else None,
            "slope_reference": slope_r, "slope_candidate": slope_c,
            "smoothed_reference": s_r, "smoothed_candidate": s_c}
