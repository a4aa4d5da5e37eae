"""Running one decoder block on captured calibration inputs, chunk by chunk.

The inputs of block 0 are captured by stopping the model's forward at its first block; every later
block is fed the outputs of the full-precision block before it (as AutoAWQ does). Only the block
being processed needs to sit on the compute device.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def for_chunk(self, b: int, device: torch.device) -> tuple[tuple, dict[str, Any]]:
        def fit(v):
            if isinstance(v, torch.Tensor):
                if self.batch > 1 and v.dim() > 0 and v.shape[0] == self.batch:
                    v = v[:b]
                return v.to(device)
            if isinstance(v, tuple):
                return tuple(fit(x) for x in v)
            return v
        return fit(self.args), {k: fit(v) for k, v in self.kwargs.items()}


@torch.no_grad()
def capture_block_inputs(model: nn.Module, first_block: nn.Module, samples: torch.Tensor,
                         chunk: int) -> tuple[torch.Tensor, BlockCall]:
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
    return torch.cat(hiddens, dim=0), captured["call"]


@torch.no_grad()
def run_block(block: nn.Module, hidden: torch.Tensor, call: BlockCall, chunk: int,
              device: torch.device, keep_output: bool = True) -> torch.Tensor | None:
    """Block outputs for `hidden` [n, T, H] (CPU), computed `chunk` sequences at a time."""
    outs = []
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start:start + chunk].to(device)
        args, kwargs = call.for_chunk(h.shape[0], device)
        out = first_tensor(block(h, *args, **kwargs))
        if keep_output:
            outs.append(out.detach().to("cpu"))
    return torch.cat(outs, dim=0) if keep_output else None


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
