"""Perplexity and logit drift on held-out text (same windows for every model compared).

`heldout_windows` and `window_logprobs` touch a tokenizer or a model; the summaries below them are
pure functions on tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


@torch.no_grad()
def window_logprobs(model, windows: torch.Tensor, batch: int = 4):
    """Yields next-token log-probabilities [b, T-1, V] (float32) for each batch of windows."""
    device = next(model.parameters()).device
    for start in range(0, windows.shape[0], batch):
        ids = windows[start:start + batch].to(device)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        yield ids[:, 1:], F.log_softmax(logits, dim=-1)


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


@torch.no_grad()
def compare_models(reference, candidate, windows: torch.Tensor, batch: int = 4) -> LogitDrift:
    """Perplexity of both models and KL / top-token agreement on the same windows."""
    nll_r, nll_c, kls, same = [], [], [], []
    for (targets, lp_r), (_, lp_c) in zip(window_logprobs(reference, windows, batch),
                                          window_logprobs(candidate, windows, batch)):
        nll_r.append(token_nll(targets, lp_r).flatten().cpu())
        nll_c.append(token_nll(targets, lp_c).flatten().cpu())
        kls.append(kl_per_token(lp_r, lp_c).flatten().cpu())
        same.append((lp_r.argmax(-1) == lp_c.argmax(-1)).flatten().cpu())
    kl = torch.cat(kls).double()
    return LogitDrift(perplexity(torch.cat(nll_r)), perplexity(torch.cat(nll_c)), float(kl.mean()),
                      float(torch.quantile(kl.float(), 0.99)), float(torch.cat(same).float().mean()))


@torch.no_grad()
def model_perplexity(model, windows: torch.Tensor, batch: int = 4) -> float:
    return perplexity(torch.cat([token_nll(t, lp).flatten().cpu() for t, lp in window_logprobs(model, windows, batch)]))
