"""Running one decoder block on captured calibration inputs, chunk by chunk.

The inputs of block 0 are captured by stopping the model's forward at its first block; every later
block is fed the outputs of the full-precision block before it (as AutoAWQ does). Only the block
being processed needs to sit on the compute device.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from awqguard.hf_compat import LAYER_CACHE_KWARGS
from awqguard.quantizer.search import first_tensor


class _StopForward(Exception):
    pass


@dataclass
class BlockCall:
    """How the model calls a block: extra positional args and keyword args, captured once."""

    args: tuple
    kwargs: dict[str, Any]
    batch: int      # batch size at capture; tensors with this leading size are sliced per chunk

    def for_chunk(self, b: int, device: torch.device,
                  dtype: torch.dtype | None = None) -> tuple[tuple, dict[str, Any]]:
        """The args for a chunk of `b` sequences on `device`; float tensors (rotary cos/sin, masks)
        in the block's compute `dtype` when given."""
        def fit(v):
            if isinstance(v, torch.Tensor):
                if self.batch > 1 and v.dim() > 0 and v.shape[0] == self.batch:
                    v = v[:b]
                return v.to(device, dtype) if dtype is not None and v.is_floating_point() else v.to(device)
            if isinstance(v, tuple):
                return tuple(fit(x) for x in v)
            return v
        return fit(self.args), {k: fit(v) for k, v in self.kwargs.items()}


@dataclass
class Activations:
    """Where the activations flowing between blocks live: in RAM while a buffer fits `budget` bytes,
    else in a memory-mapped file under `spill_dir`, so a wide model's calibration set need not fit
    in memory (the page cache holds what it can)."""

    budget: int | None = None          # None: always RAM
    spill_dir: Path | None = None
    _count = itertools.count()

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        numel = 1
        for d in shape:
            numel *= d
        if self.budget is None or self.spill_dir is None or numel * 4 <= self.budget:
            return torch.empty(shape, dtype=torch.float32)
        path = Path(self.spill_dir) / f"activations-{next(self._count)}.bin"
        return torch.from_file(str(path), shared=True, size=numel, dtype=torch.float32).view(shape)


IN_RAM = Activations()


@torch.no_grad()
def capture_block_inputs(model: nn.Module, first_block: nn.Module, samples: torch.Tensor,
                         chunk: int, activations: Activations = IN_RAM) -> tuple[torch.Tensor, BlockCall]:
    """(hidden states entering block 0 [n, T, H] on CPU, the call signature)."""
    captured: dict[str, Any] = {}
    hiddens = []

    def grab(module, args, kwargs):
        if "hidden_states" in kwargs:
            kwargs = dict(kwargs)
            hidden = kwargs.pop("hidden_states")
        else:
            hidden, args = args[0], args[1:]
        hiddens.append(hidden.detach().cpu())
        if "call" not in captured:
            kwargs = {k: v for k, v in kwargs.items() if k not in LAYER_CACHE_KWARGS}
            captured["call"] = BlockCall(tuple(args), kwargs, hidden.shape[0])
        raise _StopForward

    handle = first_block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for start in range(0, samples.shape[0], chunk):
            try:
                model(input_ids=samples[start:start + chunk], use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    out = activations.empty((samples.shape[0], *hiddens[0].shape[1:]))
    torch.cat(hiddens, dim=0, out=out)
    return out, captured["call"]


def compute_dtype(block: nn.Module) -> torch.dtype:
    """The dtype a block computes in: that of its first float parameter."""
    return next((p.dtype for p in block.parameters() if p.is_floating_point()), torch.float32)


@torch.no_grad()
def run_block(block: nn.Module, hidden: torch.Tensor, call: BlockCall, chunk: int,
              device: torch.device, keep_output: bool = True,
              activations: Activations = IN_RAM) -> torch.Tensor | None:
    """Block outputs for `hidden` [n, T, H] (CPU), computed `chunk` sequences at a time, written
    into a buffer from `activations`."""
    outs = None
    dtype = compute_dtype(block)
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start:start + chunk].to(device, dtype)
        args, kwargs = call.for_chunk(h.shape[0], device, dtype)
        out = first_tensor(block(h, *args, **kwargs))
        if keep_output:
            if outs is None:
                outs = activations.empty((hidden.shape[0], *out.shape[1:]))
            outs[start:start + out.shape[0]] = out.detach().to("cpu", torch.float32)
    return outs


class InputStats:
    """Running Σ|x|, Σx and token counts for each linear's input: no activations are kept.
    E|x| is AWQ's salience; the signed E[x] is what dh rounding balances errors against."""

    def __init__(self, linears: dict[str, nn.Linear]):
        self.sum_abs = {n: torch.zeros(m.in_features, dtype=torch.float32) for n, m in linears.items()}
        self.sum = {n: torch.zeros(m.in_features, dtype=torch.float32) for n, m in linears.items()}
        self.count = {n: 0 for n in linears}
        self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in linears.items()]

    def _hook(self, name: str) -> Callable:
        def hook(module, inputs, output):
            x = inputs[0].detach()
            flat = x.reshape(-1, x.shape[-1]).float()
            self.sum_abs[name] += flat.abs().sum(dim=0).cpu()
            self.sum[name] += flat.sum(dim=0).cpu()
            self.count[name] += flat.shape[0]
        return hook

    def mean(self, name: str) -> torch.Tensor:
        """E|x| per input channel."""
        return self.sum_abs[name] / max(1, self.count[name])

    def signed_mean(self, name: str) -> torch.Tensor:
        """E[x] per input channel."""
        return self.sum[name] / max(1, self.count[name])

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


class CallRecorder:
    """Records the inputs of linears and the calls (inputs + output) of checked modules."""

    def __init__(self, linears: dict[str, nn.Module], inspects: dict[int, nn.Module]):
        self.linear_inputs: dict[str, torch.Tensor] = {}
        self.calls: dict[int, tuple[tuple, dict, Any]] = {}
        self._hooks = []
        for name, mod in linears.items():
            self._hooks.append(mod.register_forward_hook(
                lambda m, i, o, n=name: self.linear_inputs.__setitem__(n, i[0].detach())))
        for key, mod in inspects.items():
            self._hooks.append(mod.register_forward_hook(self._call_hook(key), with_kwargs=True))

    def _call_hook(self, key: int) -> Callable:
        def hook(module, args, kwargs, output):
            kwargs = {k: v for k, v in kwargs.items() if k not in LAYER_CACHE_KWARGS}
            self.calls[key] = (args, kwargs, first_tensor(output).detach())
        return hook

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def is_tokenwise(module: nn.Module) -> bool:
    """True when `module` maps each token on its own (an MLP, a linear): nothing inside it is named
    like attention. A wrong True would score attention on tokens from unrelated sequences, so any
    class name containing "attn" or "attention" counts as mixing tokens."""
    return not any(k in type(m).__name__.lower() for m in module.modules() for k in ("attention", "attn"))


class TokenSample:
    """The inputs and outputs of token-wise checked modules at `positions`: a fixed random subset of
    every token of every calibration sequence, gathered while the whole block runs. A grid loss on
    them sees the variety of the whole calibration set at the cost of a few sequences."""

    def __init__(self, modules: dict[int, nn.Module], positions: torch.Tensor):
        self.positions = positions                          # sorted global token indices
        self.inputs: dict[int, list[torch.Tensor]] = {k: [] for k in modules}
        self.outputs: dict[int, list[torch.Tensor]] = {k: [] for k in modules}
        self.seen = {k: 0 for k in modules}
        self._hooks = [m.register_forward_hook(self._hook(k)) for k, m in modules.items()]

    def _hook(self, key: int) -> Callable:
        def hook(module, inputs, output):
            x, y = inputs[0].detach(), first_tensor(output).detach()
            n, start = x.numel() // x.shape[-1], self.seen[key]                 # x [..., in]: n tokens
            lo, hi = torch.searchsorted(self.positions, torch.tensor([start, start + n])).tolist()
            local = (self.positions[lo:hi] - start).to(x.device)
            self.inputs[key].append(x.reshape(n, -1)[local].cpu())
            self.outputs[key].append(y.reshape(n, -1)[local].cpu())
            self.seen[key] += n
        return hook

    def call(self, key: int, device: torch.device) -> tuple[tuple, dict, torch.Tensor]:
        """(args, kwargs, output) as one [1, tokens, features] call of the module."""
        x = torch.cat(self.inputs[key]).unsqueeze(0).to(device)
        return (x,), {}, torch.cat(self.outputs[key]).unsqueeze(0).to(device)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


class InputGrams:
    """Second moments of linears' inputs, so squared output errors need no activations kept.

    For a weight error Δ [out, in], Σ_tokens ‖x·Δᵀ‖² = Σ (Δ·G)⊙Δ with G = Σ xᵀx. Per quantization
    group (G_g [n_groups, g, g], over every token) that scores the clip search on the whole
    calibration set; whole (G [in, in], over the tokens at `positions`) it scores the scale search
    of a mapping whose checked module is that linear. Linears fed the same tensor (q/k/v behind one
    norm) share one entry: `groups` lists each set, keyed by its first name. Only the inputs of the
    names in `per_group` (those clipped) and `whole` are accumulated, each only in the form asked for.
    """

    def __init__(self, linears: dict[str, nn.Linear], groups: list[list[str]], group_size: int,
                 per_group: set[str], whole: set[str], positions: torch.Tensor):
        self.owner = {name: members[0] for members in groups for name in members}
        self.group_size = group_size
        self.positions = positions
        self.grouped: dict[str, torch.Tensor] = {}
        self.whole: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.whole_count: dict[str, int] = {}
        self.seen: dict[str, int] = {}
        want_grouped = {self.owner[n] for n in per_group}
        want_whole = {self.owner[n] for n in whole}
        self._hooks = [linears[key].register_forward_hook(self._hook(key, key in want_grouped, key in want_whole))
                       for key in {members[0] for members in groups} if key in want_grouped | want_whole]

    def _hook(self, key: str, grouped: bool, whole: bool) -> Callable:
        def hook(module, inputs, output):
            x = inputs[0].detach().float()
            with torch.autocast(x.device.type, enabled=False):     # moments in float32 under any autocast
                self._add(key, x.reshape(-1, x.shape[-1]), grouped, whole)
        return hook

    def _add(self, key: str, x: torch.Tensor, grouped: bool, whole: bool) -> None:
        """Add the input tokens x [n, in] of linear `key` to its per-group and/or whole second moments."""
        n, width = x.shape
        if grouped:
            g = width if self.group_size == -1 else self.group_size
            xg = x.reshape(n, width // g, g).transpose(0, 1)               # [ng, n, g]
            gram = torch.bmm(xg.transpose(1, 2), xg).cpu()
            self.grouped[key] = self.grouped[key] + gram if key in self.grouped else gram
            self.count[key] = self.count.get(key, 0) + n
        if whole:
            start = self.seen.get(key, 0)
            lo, hi = torch.searchsorted(self.positions, torch.tensor([start, start + n])).tolist()
            rows = x[(self.positions[lo:hi] - start).to(x.device)]
            full = (rows.t() @ rows).cpu()
            self.whole[key] = self.whole[key] + full if key in self.whole else full
            self.whole_count[key] = self.whole_count.get(key, 0) + rows.shape[0]
            self.seen[key] = start + n

    def per_group(self, name: str) -> tuple[torch.Tensor, int]:
        """(Σ xᵀx per group [ng, g, g], tokens) for `name`'s input."""
        key = self.owner[name]
        return self.grouped[key], self.count[key]

    def full(self, name: str) -> tuple[torch.Tensor, int]:
        """(Σ xᵀx [in, in], tokens) over the sampled positions, for `name`'s input."""
        key = self.owner[name]
        return self.whole[key], self.whole_count[key]

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
