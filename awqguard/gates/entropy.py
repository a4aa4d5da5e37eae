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
from awqguard.gates.perplexity import kl_per_token

SMOOTH_WINDOW = 64


def position_curves(pairs: Iterable[tuple[Scores, Scores]]) -> dict | None:
    """Mean per-position entropy of both models, KL and top-1 agreement over the (reference,
    candidate) scores of each continuation; None without continuations."""
    h_r, h_c, kl, agree = [], [], [], []
    for ref, cand in pairs:
        lp_r, lp_c = ref.logprobs, cand.logprobs
        h_r.append(m.entropy(lp_r.cpu().numpy()))
        h_c.append(m.entropy(lp_c.cpu().numpy()))
        kl.append(kl_per_token(lp_r, lp_c).cpu().numpy())
        agree.append((lp_r.argmax(-1) == lp_c.argmax(-1)).float().cpu().numpy())
    if not h_r:
        return None
    length = min(len(x) for x in h_r)
    mean = lambda xs: np.mean([x[:length] for x in xs], axis=0)
    return {"entropy_reference": mean(h_r), "entropy_candidate": mean(h_c), "kl": mean(kl),
            "top1_agreement": mean(agree), "sequences": len(h_r), "length": length}


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
