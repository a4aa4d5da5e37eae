"""The two AWQ searches. Neither mutates a weight: candidates are evaluated with
torch.func.functional_call on replacement tensors, so the model leaves a search bit for bit as it
entered it (AutoAWQ 0.2.9's in-place "restore" aliases live tensors on CPU and corrupts the model).

Scale search, per mapping (prev -> linears, checked module f):
    s(r) = clamp(x̄^r / (w̄^(1−r) + 1e-4), 1e-4)  (duo)   or   x̄^r   ;   s /= sqrt(max s · min s)
    L(r) = ‖f(X; Q(W·s)/s) − f(X; W)‖²  over r = i / n_grid,  keep argmin
Clip search, per linear: for shrink c in 1.0, 0.95, ..., 0.55 and every (row, group),
    err(c) = mean_tokens (X_g·Q(clamp(W_g, ±c·max|W_g|)) − X_g·W_g)²,  keep argmin.

Q is the config's rounding mode in the scale search (dh rounds W·s against the means E[x]/s the
scaled layer will see). The clip search always rounds to nearest: it scores each (row, group) on
its own, while dh's flips balance a whole row's error across groups, so a per-group score would
judge flips by a yardstick they do not aim at; the final rounding after clipping is dh again.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

import torch
from torch.func import functional_call

from awqguard.quantizer.config import QuantConfig, group_size_for
from awqguard.quantizer.mappings import ResolvedMapping
from awqguard.quantizer.rounders import fake_round
from awqguard.quantizer.rounding import fake_quantize

CLIP_SHRINKS = tuple(1.0 - i / 20 for i in range(10))     # 1.0 ... 0.55
_CLIP_CHUNK_ELEMENTS = 32_000_000                          # bounds the [groups, tokens, rows] buffers


@dataclass
class InspectCall:
    """One captured call of a checked module: its inputs and its unquantized output, and the
    `precision` context its products run in (None: the module's own dtype)."""

    args: tuple
    kwargs: dict[str, Any]
    output: torch.Tensor
    precision: Callable[[], ContextManager] | None = None

    def in_precision(self, rm: ResolvedMapping, precision: Callable[[], ContextManager]) -> "InspectCall":
        """This call scored in `precision`, its unquantized output recomputed there too, so both
        sides of the loss carry the same rounding of the inputs."""
        call = InspectCall(self.args, self.kwargs, self.output, precision)
        call.output = call.run(rm, [lin.weight for lin in rm.linears]).float()
        return call

    def loss(self, rm: ResolvedMapping, weights: list[torch.Tensor]) -> float:
        """Mean squared change of the module's output with the mapping's linears set to `weights`."""
        return float((self.run(rm, weights).float() - self.output.float()).pow(2).mean())

    def run(self, rm: ResolvedMapping, weights: list[torch.Tensor]) -> torch.Tensor:
        params = {f"{name}.weight" if name else "weight": w for name, w in zip(rm.linear_names, weights)}
        with torch.no_grad(), (self.precision or contextlib.nullcontext)():
            return first_tensor(functional_call(rm.inspect, params, self.args, self.kwargs))


@dataclass
class GramCall:
    """The checked module is the mapping's single linear: its output error is x·Δᵀ, so the mean
    squared error over every sampled token follows from the input's second moment Σ xᵀx alone."""

    gram: torch.Tensor       # Σ xᵀx [in, in]
    tokens: int

    def loss(self, rm: ResolvedMapping, weights: list[torch.Tensor]) -> float:
        delta = weights[0].float() - rm.linears[0].weight.detach().float()
        gram = self.gram.to(delta.device)
        return float(((delta @ gram) * delta).sum() / (self.tokens * delta.shape[0]))


def first_tensor(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def weight_mean(linears: list[torch.nn.Linear], group_size: int) -> torch.Tensor:
    """w̄ [in]: mean over output rows of |W| normalised by each group's max |W|."""
    w = torch.cat([lin.weight.detach().float() for lin in linears], dim=0)     # [Σout, in]
    g = group_size_for(w.shape[1], group_size)
    wg = w.abs().reshape(-1, g)
    wg = wg / (wg.amax(dim=1, keepdim=True) + 1e-6)
    return wg.reshape(w.shape).mean(dim=0)


def candidate_scale(x_mean: torch.Tensor, w_mean: torch.Tensor, ratio: float, duo: bool) -> torch.Tensor:
    if duo:
        s = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
    else:
        s = x_mean.pow(ratio).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def search_scale(rm: ResolvedMapping, x_mean: torch.Tensor, call: InspectCall | GramCall, cfg: QuantConfig,
                 signed_mean: torch.Tensor | None = None) -> tuple[torch.Tensor, float, list[float]]:
    """(best s [in], best ratio, loss per ratio: NaN where not evaluated) for one mapping. `x_mean`
    is E|x| (the salience the scales come from); `signed_mean` is E[x], which dh rounding needs."""
    x_mean = x_mean.float()
    w_mean = weight_mean(rm.linears, cfg.group_size).to(x_mean.device)
    losses = [float("nan")] * cfg.n_grid
    scales: dict[int, torch.Tensor] = {}

    def evaluate(i: int) -> None:
        s = candidate_scale(x_mean, w_mean, i / cfg.n_grid, cfg.duo_scaling)
        means = signed_mean.float().to(s.device) / s if signed_mean is not None else None
        weights = [(fake_round(lin.weight.detach().float() * s, cfg, means) / s).to(lin.weight.dtype)
                   for lin in rm.linears]
        losses[i], scales[i] = call.loss(rm, weights), s

    for i in grid_indices(cfg.n_grid, cfg.scale_search, losses):
        evaluate(i)
    finite = [i for i in scales if math.isfinite(losses[i])]
    if not finite:
        raise FloatingPointError(f"scale search found no finite loss (losses: {losses[:3]}...)")
    best = min(finite, key=lambda i: (losses[i], i))
    return scales[best].detach(), best / cfg.n_grid, losses


def grid_indices(n: int, mode: str, losses: list[float]) -> Iterator[int]:
    """The ratio indices to evaluate, lazily: all n ("full"), or "coarse": every 4th and the last,
    then ±2 and ±1 around the best so far — 10 of 20 evaluations, and the same argmin as the full
    grid whenever the loss falls then rises (85 of 90 of AutoAWQ's recorded SmolLM2 curves)."""
    if mode == "full":
        yield from range(n)
        return
    step = max(1, n // 5)
    yield from sorted(set(range(0, n, step)) | {n - 1})
    while step > 1:
        step //= 2
        tried = [i for i in range(n) if math.isfinite(losses[i])]
        if not tried:
            return
        best = min(tried, key=lambda i: (losses[i], i))
        yield from (i for i in (best - step, best + step) if 0 <= i < n and math.isnan(losses[i]))


def search_clip(weight: torch.Tensor, x: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """Best clip value per (row, group): float [out, in/g]. `x` is [tokens, in]. Rounds to nearest
    whatever cfg.rounding says (see the module docstring)."""
    w = weight.detach().float()
    out_f, in_f = w.shape
    g = group_size_for(in_f, cfg.group_size)
    n_groups = in_f // g
    xg = x.float().reshape(-1, n_groups, g).transpose(0, 1)                    # [ng, tokens, g]
    rows_per_chunk = max(8, _CLIP_CHUNK_ELEMENTS // max(1, n_groups * xg.shape[1]))
    best_all = []
    for start in range(0, out_f, rows_per_chunk):
        wg = w[start:start + rows_per_chunk].reshape(-1, n_groups, g)          # [rows, ng, g]
        ref = torch.bmm(xg, wg.permute(1, 2, 0))                                 # [ng, tokens, rows]
        best_all.append(_best_clip(
            wg, cfg, lambda q: (torch.bmm(xg, q.permute(1, 2, 0)) - ref).pow(2).mean(dim=1).t()))
    return torch.cat(best_all, dim=0)


def search_clip_gram(weight: torch.Tensor, gram: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """search_clip scored on every calibration token through the per-group second moments
    `gram` [n_groups, g, g] of the input (as the layer sees it): err = Δ_gᵀ·G_g·Δ_g per (row, group)."""
    w = weight.detach().float()
    out_f, in_f = w.shape
    g = group_size_for(in_f, cfg.group_size)
    wg = w.reshape(out_f, in_f // g, g)
    gram = gram.to(w.device).float()

    def error(q: torch.Tensor) -> torch.Tensor:
        delta = (q - wg).transpose(0, 1)                                         # [ng, rows, g]
        return (torch.bmm(delta, gram) * delta).sum(dim=-1).t()

    return _best_clip(wg, cfg, error)


def _best_clip(wg: torch.Tensor, cfg: QuantConfig, error) -> torch.Tensor:
    """For weights wg [rows, ng, g]: per (row, group), the max |w| times the shrink in CLIP_SHRINKS
    whose rounded weights `error` ([rows, ng, g] -> [rows, ng]) rates lowest."""
    rows, n_groups, g = wg.shape
    max_abs = wg.abs().amax(dim=-1)                                              # [rows, ng]
    best_err = torch.full_like(max_abs, float("inf"))
    best_val = max_abs.clone()
    for shrink in CLIP_SHRINKS:
        limit = (max_abs * shrink).unsqueeze(-1)
        clipped = torch.maximum(torch.minimum(wg, limit), -limit).reshape(rows, n_groups * g)
        q = fake_quantize(clipped, cfg.w_bit, cfg.group_size, cfg.zero_point).reshape(rows, n_groups, g)
        err = error(q)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_val = torch.where(better, max_abs * shrink, best_val)
    return best_val


def sample_rows(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Up to n rows of x [..., in] flattened to [rows, in], chosen with a fixed seed."""
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] <= n:
        return flat
    idx = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return flat[idx.sort().values.to(flat.device)]
