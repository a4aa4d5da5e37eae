"""Perplexity and logit drift on held-out text (same windows for every model compared).

`heldout_windows` touches a tokenizer; the summaries are pure functions of the backends' scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from awqguard.backends.base import Scores
from awqguard.backends.local import LocalBackend


def heldout_windows(tokenizer, texts: list[str], window: int = 512, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping `window`-token windows [n, window] of the concatenated texts (EOS between)."""
    from awqguard.quantizer.calibration import token_stream
    stream = token_stream(tokenizer, texts)
    n = len(stream) // window
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"held-out text has {len(stream)} tokens, fewer than one {window}-token window")
    return torch.tensor(stream[: n * window]).reshape(n, window)


def token_nll(targets: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each target token [b, T-1]."""
    return -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def perplexity(nll: torch.Tensor) -> float:
    return math.exp(float(nll.double().mean()))


def kl_per_token(ref_logprobs: torch.Tensor, cand_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(p_ref ‖ p_cand) per position, from log-probabilities [..., V]."""
    return (ref_logprobs.exp() * (ref_logprobs - cand_logprobs)).sum(dim=-1).clamp(min=0)


@dataclass
class LogitDrift:
    """llama.cpp's perplexity-tool summary of a candidate against a reference."""

    ppl_reference: float
    ppl_candidate: float
    mean_kl: float
    p99_kl: float
    same_top_rate: float

    def to_dict(self) -> dict:
        return {k: round(v, 6) for k, v in self.__dict__.items()}


def compare_scores(pairs: Iterable[tuple[Scores, Scores]]) -> LogitDrift:
    """Perplexity of both models and KL / top-token agreement from their scores of the same windows."""
    nll_r, nll_c, kls, same = [], [], [], []
    for ref, cand in pairs:
        nll_r.append(token_nll(ref.targets, ref.logprobs).flatten().cpu())
        nll_c.append(token_nll(cand.targets, cand.logprobs).flatten().cpu())
        kls.append(kl_per_token(ref.logprobs, cand.logprobs).flatten().cpu())
        same.append((ref.logprobs.argmax(-1) == cand.logprobs.argmax(-1)).flatten().cpu())
    kl = torch.cat(kls).double()
    return LogitDrift(perplexity(torch.cat(nll_r)), perplexity(torch.cat(nll_c)), float(kl.mean()),
                      float(torch.quantile(kl.float(), 0.99)), float(torch.cat(same).float().mean()))


def compare_models(reference, candidate, windows: torch.Tensor) -> LogitDrift:
    """`compare_scores` for two in-process models (benchmarks and tests)."""
    ref, cand, sequences = LocalBackend(reference), LocalBackend(candidate), windows.tolist()
    return compare_scores(zip(ref.score(sequences, 1), cand.score(sequences, 1)))


def model_perplexity(model, windows: torch.Tensor) -> float:
    """Perplexity of one in-process model on the windows."""
    scores = LocalBackend(model).score(windows.tolist(), 1)
    return perplexity(torch.cat([token_nll(s.targets, s.logprobs).flatten().cpu() for s in scores]))
