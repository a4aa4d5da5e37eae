"""Sensitivity by swapping: put one block, or one linear, of the candidate into the float model and
measure how far its next-token distributions move (KL against the float model, on the suite's text).

The float model's hidden states entering every block are recorded once (`record`). A swap at block
i then runs only blocks i..N: the model's block list is cut to start at the swapped-in block and a
pre-hook hands that block the recorded input, so embeddings, masks and rotary tables are the
model's own and no architecture-specific forward is written here.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from awqguard.diagnose import measures
from awqguard.diagnose.measures import in_float_frame, mean_kl


@dataclass
class Tape:
    """What the float model did on the windows: each block's input, each linear's per-channel
    largest |input|, and its log-probabilities."""
    inputs: list[torch.Tensor]              # [n, T, H] entering block i
    absmax: dict[str, torch.Tensor]         # linear name -> [in_features]
    logprobs: torch.Tensor                  # [n, T, V]


def _hidden_of(args, kwargs) -> torch.Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


@torch.no_grad()
def record(model: nn.Module, blocks: nn.ModuleList, blocks_name: str, windows: torch.Tensor) -> Tape:
    inputs: list[torch.Tensor | None] = [None] * len(blocks)
    absmax: dict[str, torch.Tensor] = {}

    def grab(i):
        def hook(module, args, kwargs):
            inputs[i] = _hidden_of(args, kwargs).detach().clone()
        return hook

    def channel_max(name):
        def hook(module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()
            absmax[name] = x if name not in absmax else torch.maximum(absmax[name], x)
        return hook

    handles = [b.register_forward_pre_hook(grab(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles += [m.register_forward_pre_hook(channel_max(f"{blocks_name}.{i}.{n}"))
                for i, b in enumerate(blocks) for n, m in b.named_modules() if isinstance(m, nn.Linear)]
    try:
        logits = model(input_ids=windows, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    return Tape(inputs, absmax, F.log_softmax(logits.float(), dim=-1))


@contextmanager
def _from_block(model: nn.Module, blocks_name: str, i: int, block: nn.Module, hidden: torch.Tensor) -> Iterator[None]:
    """The model, for one forward, starting at block i (replaced by `block`) with input `hidden`."""
    parent_name, _, attr = blocks_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, attr)

    def feed(module, args, kwargs):
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": hidden}
        return (hidden, *args[1:]), kwargs

    setattr(parent, attr, nn.ModuleList([block, *original[i + 1:]]))
    handle = block.register_forward_pre_hook(feed, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        setattr(parent, attr, original)


@torch.no_grad()
def swap_logprobs(model: nn.Module, blocks_name: str, i: int, block: nn.Module, tape: Tape,
                  windows: torch.Tensor) -> torch.Tensor:
    """The float model's log-probabilities with block i replaced by `block`."""
    with _from_block(model, blocks_name, i, block, tape.inputs[i]):
        logits = model(input_ids=windows, use_cache=False).logits
    return F.log_softmax(logits.float(), dim=-1)


def swap_kl(model: nn.Module, blocks_name: str, i: int, block: nn.Module, tape: Tape, windows: torch.Tensor) -> float:
    """KL(float ‖ float model with block i replaced by `block`), mean over the windows' positions."""
    return mean_kl(tape.logprobs, swap_logprobs(model, blocks_name, i, block, tape, windows))


def effective_weight(module: nn.Module) -> torch.Tensor:
    """A linear's weight as it computes: an AWQLinear's dequantized weight, else the float weight."""
    from awqguard.kernels.wqlinear import AWQLinear
    if isinstance(module, AWQLinear):
        return module.dequantized_weight(torch.float32)
    return module.weight.detach().float()


@dataclass
class Fold:
    """The scales AWQ folded into one block's linears: `inputs[name]` multiplied the linear's input
    columns; `outputs[name]` divided its output rows (a linear that feeds another mapping)."""
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]

    def float_frame(self, name: str, folded: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The candidate's weight of linear `name` as the float model would hold it."""
        if name not in self.inputs:
            return in_float_frame(weight, folded)
        out = folded / self.inputs[name]
        return out * self.outputs[name][:, None] if name in self.outputs else out


def fold_scales(float_block: nn.Module, candidate_block: nn.Module, arch) -> Fold:
    """The scales AWQ folded into a block (candidate ≈ round(float · s), the op before divided by s).

    Where the op before is a norm, s is exact: the norm's weight was divided by it. Where it is a
    linear (v_proj before o_proj, up_proj before down_proj), that linear's output rows were divided
    by s: s comes from its rows by least squares, after its own input scale is taken out. A mapping
    AWQ skipped (shapes differ, as under GQA) has s = 1; a linear in no mapping gets the per-column
    least-squares estimate of measures.fold_scales.
    """
    fold = Fold({}, {})
    for m in arch.mappings:
        prev_f, prev_c = float_block.get_submodule(m.prev), candidate_block.get_submodule(m.prev)
        first = float_block.get_submodule(m.linears[0])
        if getattr(prev_f, "weight", None) is None:
            continue
        if m.needs_same_shape and prev_f.weight.shape[0] != first.in_features:
            s = torch.ones(first.in_features)
        elif prev_f.weight.dim() == 1:                            # a norm: weight (+ offset) divided by s
            w_f = prev_f.weight.detach().float() + arch.norm_offset
            w_c = prev_c.weight.detach().float() + arch.norm_offset
            s = torch.where(w_c.abs() > 1e-12, w_f / w_c, torch.ones_like(w_f))
        else:                                                     # a linear: its output rows divided by s
            rows_c = effective_weight(prev_c) / fold.inputs.get(m.prev, torch.ones(prev_f.weight.shape[1]))
            s = measures.fold_scales(rows_c.t(), prev_f.weight.detach().float().t())   # rows_f[j] ≈ s_j rows_c[j]
            fold.outputs[m.prev] = s
        for name in m.linears:
            fold.inputs[name] = s
    return fold


def with_one_linear(float_block: nn.Module, candidate_block: nn.Module, name: str, fold: Fold) -> nn.Module:
    """A copy of the float block whose linear `name` computes with the candidate's weight, taken
    back into the float frame (`fold` from fold_scales)."""
    block = copy.deepcopy(float_block)
    linear = block.get_submodule(name)
    folded = effective_weight(candidate_block.get_submodule(name))
    linear.weight.data = fold.float_frame(name, folded, linear.weight.detach().float()).to(linear.weight.dtype)
    return block


def linear_names(block: nn.Module) -> list[str]:
    """The block's linears by relative name (an AWQLinear counts as a linear)."""
    from awqguard.kernels.wqlinear import AWQLinear
    return [n for n, m in block.named_modules() if isinstance(m, (nn.Linear, AWQLinear))]
