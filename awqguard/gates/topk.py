"""Teacher-forced figures from full-vocabulary or top-K scores (docs/architecture.md §9c).

A server returns only its K most likely tokens per position. From those:
- the target's log-probability (perplexity) and the most likely token (same-top rate) are exact;
- KL(reference ‖ candidate) is computed over a coarsened vocabulary: one cell per token in the
  reference's top K whose candidate probability is also known, plus one tail cell holding all
  the remaining probability of each side. Merging tokens can only lower KL, so the estimate is a
  lower bound of the exact KL, and exact when both sides are full-vocabulary;
- entropy counts the top K exactly and the tail as one bucket: a tail of mass m whose tokens are
  each at most as likely as the K-th contributes at least -m·log p_K, the figure used (a lower bound).
When either side of a comparison is top-K, both are read at the same K, so their biases match.
All functions are pure.
"""

from __future__ import annotations

import torch

from awqguard.backends.base import Scores

EPS = 1e-12


def as_top_k(scores: Scores, k: int | None) -> Scores:
    """A full-vocabulary score read as the server would return it: its top K (a top-K score, or any
    score when k is None, as is)."""
    if k is None or not scores.full_vocabulary:
        return scores
    values, ids = scores.logprobs.topk(k, dim=-1)
    return Scores(scores.targets, values, ids, target_logprobs(scores), valid_mask(scores))


def common_k(*scores: Scores) -> int | None:
    """The K both sides can be read at (None when all are full-vocabulary)."""
    return smallest_k(s.top_k for s in scores)


def smallest_k(ks) -> int | None:
    """The smallest K among scores' K values (None stands for the whole vocabulary)."""
    return min((k for k in ks if k is not None), default=None)


def valid_mask(scores: Scores) -> torch.Tensor:
    if scores.valid is not None:
        return scores.valid.bool()
    return torch.ones(scores.targets.shape, dtype=torch.bool, device=scores.targets.device)


def target_logprobs(scores: Scores) -> torch.Tensor:
    """log p(target) per position (exact for both kinds of score)."""
    if scores.target_logprobs is not None:
        return scores.target_logprobs.float()
    return scores.logprobs.gather(-1, scores.targets.unsqueeze(-1)).squeeze(-1).float()


def top_token(scores: Scores) -> torch.Tensor:
    """The most likely token per position."""
    best = scores.logprobs.argmax(dim=-1)
    return best if scores.full_vocabulary else scores.token_ids.gather(-1, best.unsqueeze(-1)).squeeze(-1)


def entropy(scores: Scores) -> torch.Tensor:
    """Entropy (nats) per position: exact over the whole vocabulary, else the top-K estimate."""
    lp = scores.logprobs.double()
    if scores.full_vocabulary:
        return -(lp.exp() * lp).sum(-1)
    present = scores.token_ids >= 0
    p = torch.where(present, lp.exp(), 0.0)
    head = -(p * torch.where(present, lp, 0.0)).sum(-1)
    tail = (1.0 - p.sum(-1)).clamp(min=0.0)
    smallest = torch.where(present, p, 2.0).min(-1).values.clamp(min=EPS, max=1.0)
    return head - tail * smallest.log()


def kl(reference: Scores, candidate: Scores) -> torch.Tensor:
    """KL(reference ‖ candidate) per position: exact for two full-vocabulary scores, else the
    coarsened lower bound described above."""
    if reference.full_vocabulary and candidate.full_vocabulary:
        lp_r, lp_c = reference.logprobs, candidate.logprobs
        return (lp_r.exp() * (lp_r - lp_c)).sum(dim=-1).clamp(min=0)
    ref = as_top_k(reference, candidate.top_k or reference.top_k)
    ids, lp_r = ref.token_ids, ref.logprobs.double()
    if candidate.full_vocabulary:
        known = ids >= 0
        lp_c = candidate.logprobs.double().gather(-1, ids.clamp(min=0))
    else:
        match = (ids.unsqueeze(-1) == candidate.token_ids.unsqueeze(-2)) & (ids >= 0).unsqueeze(-1)
        known = match.any(-1)
        lp_c = torch.where(match, candidate.logprobs.double().unsqueeze(-2), -torch.inf).amax(-1)
    p = torch.where(known, lp_r.exp(), 0.0)
    q = torch.where(known, lp_c.exp(), 0.0)
    cells = torch.where(known, p * (lp_r - torch.where(known, lp_c, 0.0)), 0.0).sum(-1)
    p_tail = (1.0 - p.sum(-1)).clamp(min=0.0)
    q_tail = (1.0 - q.sum(-1)).clamp(min=EPS)
    tail = torch.where(p_tail > 0, p_tail * (p_tail.clamp(min=EPS).log() - q_tail.log()), 0.0)
    return (cells + tail).clamp(min=0).float()


def estimate_label(k: int | None) -> str | None:
    """How a KL or entropy figure was obtained, for every place it is shown (None when exact)."""
    return None if k is None else f"top-{k} estimate"


def estimator_error(pairs, ks: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """For full-vocabulary (reference, candidate) scores: exact mean KL and entropy beside their top-K
    estimates at each K (what a served check would report), with the estimates' errors."""
    exact_kl, exact_h, est_kl, est_h = [], [], {k: [] for k in ks}, {k: [] for k in ks}
    for ref, cand in pairs:
        exact_kl.append(kl(ref, cand).double())
        exact_h.append(entropy(ref).double())
        for k in ks:
            est_kl[k].append(kl(as_top_k(ref, k), as_top_k(cand, k)).double())
            est_h[k].append(entropy(as_top_k(ref, k)).double())
    kl_x, h_x = torch.cat(exact_kl).flatten(), torch.cat(exact_h).flatten()
    out = {}
    for k in ks:
        kl_k, h_k = torch.cat(est_kl[k]).flatten(), torch.cat(est_h[k]).flatten()
        out[k] = {"kl_exact": float(kl_x.mean()), "kl_estimate": float(kl_k.mean()),
                  "kl_share_captured": float(kl_k.mean() / kl_x.mean()) if float(kl_x.mean()) > 0 else 1.0,
                  "kl_above_exact_positions": int((kl_k > kl_x + 1e-5).sum()),
                  "entropy_exact": float(h_x.mean()), "entropy_estimate": float(h_k.mean()),
                  "entropy_mean_abs_error": float((h_k - h_x).abs().mean()),
                  "entropy_above_exact_positions": int((h_k > h_x + 1e-5).sum()), "positions": int(kl_x.numel())}
    return out
