"""Perplexity and logit drift on held-out text (same windows for every model compared).

`heldout_windows` touches a tokenizer; the summaries are pure functions of the backends' scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from awqguard.backends.base import Scores
from awqguard.backends.local import LocalBackend
from awqguard.gates import topk


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


@dataclass
class WindowSums:
    """Per window: positions scored by both models and the sums of each model's NLL and of KL over
    them; what the intervals resample (a window is the unit)."""

    tokens: np.ndarray
    nll_reference: np.ndarray
    nll_candidate: np.ndarray
    kl: np.ndarray

    def ratio(self, idx: np.ndarray) -> float:
        """Perplexity ratio candidate / reference over the windows `idx`."""
        return math.exp((self.nll_candidate[idx].sum() - self.nll_reference[idx].sum()) / self.tokens[idx].sum())

    def mean_kl(self, idx: np.ndarray) -> float:
        return float(self.kl[idx].sum() / self.tokens[idx].sum())


@dataclass
class LogitDrift:
    """llama.cpp's perplexity-tool summary of a candidate against a reference. `top_k` is set when
    KL came from top-K scores (a lower-bound estimate, gates/topk.py); `positions` were scored by both."""

    ppl_reference: float
    ppl_candidate: float
    mean_kl: float
    p99_kl: float
    same_top_rate: float
    top_k: int | None = None
    positions: int = 0
    windows: WindowSums | None = None

    def to_dict(self) -> dict:
        out = {k: round(v, 6) for k, v in self.__dict__.items() if isinstance(v, float)}
        return {**out, "positions": self.positions,
                **({"kl_estimate": topk.estimate_label(self.top_k)} if self.top_k is not None else {})}


def compare_scores(pairs: Iterable[tuple[Scores, Scores]]) -> LogitDrift:
    """Perplexity of both models and KL / top-token agreement from their scores of the same windows,
    over the positions both could score."""
    nll_r, nll_c, kls, same, ks = [], [], [], [], set()
    for ref, cand in pairs:
        keep = topk.valid_mask(ref) & topk.valid_mask(cand)
        nll_r.append(-topk.target_logprobs(ref)[keep].flatten().cpu())
        nll_c.append(-topk.target_logprobs(cand)[keep].flatten().cpu())
        kls.append(topk.kl(ref, cand)[keep].flatten().cpu())
        same.append((topk.top_token(ref) == topk.top_token(cand))[keep].flatten().cpu())
        ks.add(topk.common_k(ref, cand))
    kl = torch.cat(kls).double()
    if kl.numel() == 0:
        raise ValueError("no position was scored by both models")
    k = topk.smallest_k(ks)
    sums = lambda xs: np.array([float(x.double().sum()) for x in xs])
    windows = WindowSums(np.array([len(x) for x in kls], dtype=np.float64), sums(nll_r), sums(nll_c), sums(kls))
    return LogitDrift(perplexity(torch.cat(nll_r)), perplexity(torch.cat(nll_c)), float(kl.mean()),
                      float(torch.quantile(kl.float(), 0.99)), float(torch.cat(same).float().mean()), k, kl.numel(),
                      windows)


def compare_models(reference, candidate, windows: torch.Tensor) -> LogitDrift:
    """`compare_scores` for two in-process models (benchmarks and tests)."""
    ref, cand, sequences = LocalBackend(reference), LocalBackend(candidate), windows.tolist()
    return compare_scores(zip(ref.score(sequences, 1), cand.score(sequences, 1)))


def model_perplexity(model, windows: torch.Tensor) -> float:
    """Perplexity of one in-process model on the windows."""
    scores = LocalBackend(model).score(windows.tolist(), 1)
    return perplexity(torch.cat([token_nll(s.targets, s.logprobs).flatten().cpu() for s in scores]))
