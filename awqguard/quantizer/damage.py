"""Deliberately damaged candidates: the proof that the gates catch what they should (issue 3).

`rtn_candidate` rounds every block linear to nearest on a coarse grid (2/3-bit): broad damage.
`corrupt_scales` multiplies the group scales of the AWQ layers in some blocks by a seeded random
factor, as a botched scale fold or a bad checkpoint conversion would: local damage that keeps
the packed format intact. The faults below imitate other quantizer and conversion bugs on a
packed AWQ model: shifted zero points, a wrong nibble order in one layer type, one garbage
tensor, scales off by a constant factor, scales stored through bfloat16 (harmless).
All work on copies; the model passed in is left as it was.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from awqguard.kernels.packing import REVERSE_ORDER, pack_int4, unpack_int4
from awqguard.kernels.wqlinear import AWQLinear
from awqguard.quantizer.awq import block_linears, replace_linear
from awqguard.quantizer.config import QuantConfig
from awqguard.quantizer.mappings import find_blocks, resolve_architecture
from awqguard.quantizer.rtn import rtn_fake_quantize


def rtn_candidate(model: nn.Module, w_bit: int, group_size: int) -> nn.Module:
    """A copy of `model` with every block linear rounded to nearest (fake-quantized floats)."""
    damaged = copy.deepcopy(model)
    rtn_fake_quantize(damaged, QuantConfig(w_bit=w_bit, group_size=group_size))
    return damaged


@torch.no_grad()
def rtn_packed(model: nn.Module, group_size: int) -> nn.Module:
    """A copy of `model` with 4-bit round-to-nearest AWQLinear layers (the packed format, no search)."""
    packed = copy.deepcopy(model)
    cfg = QuantConfig(w_bit=4, group_size=group_size)
    _, arch = resolve_architecture(packed)
    blocks_name, blocks = find_blocks(packed, arch)
    for i, block in enumerate(blocks):
        for name, lin in block_linears(block, f"{blocks_name}.{i}", cfg).items():
            replace_linear(block, name, lin, cfg)
    return packed


@torch.no_grad()
def corrupt_scales(model: nn.Module, blocks: Sequence[int], spread: float = 0.5, seed: int = 0) -> nn.Module:
    """A copy whose AWQLinear scales in `blocks` are multiplied by factors drawn from [1-spread, 1+spread]."""
    damaged = copy.deepcopy(model)
    _, arch = resolve_architecture(damaged)
    _, block_list = find_blocks(damaged, arch)
    g = torch.Generator().manual_seed(seed)
    touched = 0
    for i in blocks:
        for module in block_list[i].modules():
            if isinstance(module, AWQLinear):
                factor = 1 + spread * (2 * torch.rand(module.scales.shape, generator=g) - 1)
                module.scales.mul_(factor.to(module.scales.dtype))
                module.set_path(module.path)          # drop any cached dequantized weight
                touched += 1
    if touched == 0:
        raise ValueError(f"no AWQLinear layers in blocks {list(blocks)}: corrupt_scales needs a packed AWQ model")
    return damaged


# nibble orders a buggy packer might use instead of AutoAWQ's (0, 2, 4, 6, 1, 3, 5, 7)
WRONG_ORDERS = {"sequential": tuple(range(8)), "reverse": REVERSE_ORDER}


def _block_awq_layers(model: nn.Module, blocks: Sequence[int] | None = None) -> list[tuple[int, str, AWQLinear]]:
    """(block index, name inside the block, layer) for every AWQLinear in `blocks` (all blocks when None)."""
    _, arch = resolve_architecture(model)
    _, block_list = find_blocks(model, arch)
    indices = range(len(block_list)) if blocks is None else blocks
    return [(i, name, module) for i in indices for name, module in block_list[i].named_modules()
            if isinstance(module, AWQLinear)]


def _all_awq_layers(model: nn.Module, fault: str) -> list[AWQLinear]:
    layers = [m for m in model.modules() if isinstance(m, AWQLinear)]
    if not layers:
        raise ValueError(f"no AWQLinear layers in the model: {fault} needs a packed AWQ model")
    return layers


def _refresh(layer: AWQLinear) -> None:
    """Drop the cached dequantized or repacked weight so the next forward reads the damaged buffers."""
    layer.set_path(layer.path)


def pack_in_order(values: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """int [rows, cols] in [0, 15] -> int32 [rows, cols/8] whose nibble i holds column 8j + order[i]."""
    rows, cols = values.shape
    v = values.to(torch.int64).reshape(rows, cols // 8, 8)[..., list(order)]
    words = (v << torch.arange(0, 32, 4, dtype=torch.int64, device=v.device)).sum(dim=-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


@torch.no_grad()
def shift_zero_points(model: nn.Module, blocks: Sequence[int], shift: int = 1) -> nn.Module:
    """Zero points in `blocks` off by `shift` (clamped to 0..15): an off-by-one in a converter's zero-point handling."""
    damaged = copy.deepcopy(model)
    layers = _block_awq_layers(damaged, blocks)
    if not layers:
        raise ValueError(f"no AWQLinear layers in blocks {list(blocks)}: shift_zero_points needs a packed AWQ model")
    for _, _, layer in layers:
        z = (unpack_int4(layer.qzeros) + shift).clamp(0, 15)
        layer.qzeros.copy_(pack_int4(z))
        _refresh(layer)
    return damaged


@torch.no_grad()
def misorder_packing(model: nn.Module, layer: str = "down_proj", order: str = "sequential") -> nn.Module:
    """Every block's `layer` repacked in a wrong nibble order (qweight and qzeros): a packer bug in one layer type."""
    if order not in WRONG_ORDERS:
        raise ValueError(f"unknown nibble order {order!r}; choose from {sorted(WRONG_ORDERS)}")
    damaged = copy.deepcopy(model)
    layers = [m for _, name, m in _block_awq_layers(damaged) if name.endswith(layer)]
    if not layers:
        raise ValueError(f"no AWQLinear named *{layer} in any block: misorder_packing needs a packed AWQ model")
    for m in layers:
        m.qweight.copy_(pack_in_order(unpack_int4(m.qweight), WRONG_ORDERS[order]))
        m.qzeros.copy_(pack_in_order(unpack_int4(m.qzeros), WRONG_ORDERS[order]))
        _refresh(m)
    return damaged


def _random_like(t: torch.Tensor, owner: nn.Module, attr: str, g: torch.Generator) -> torch.Tensor:
    """Random values of `t`'s dtype spanning its own range (random nibbles for packed 4-bit tensors)."""
    if isinstance(owner, AWQLinear) and attr in ("qweight", "qzeros"):
        rows, words = t.shape
        return pack_int4(torch.randint(0, 16, (rows, words * 8), generator=g))
    if t.is_floating_point():
        lo, hi = float(t.min()), float(t.max())
        return (lo + (hi - lo) * torch.rand(t.shape, generator=g)).to(t.dtype)
    return torch.randint(int(t.min()), int(t.max()) + 1, t.shape, generator=g).to(t.dtype)


@torch.no_grad()
def corrupt_tensor(model: nn.Module, name: str, seed: int = 0) -> nn.Module:
    """The tensor `name` (e.g. "model.layers.12.self_attn.o_proj.scales") filled with random values of its
    dtype and range: a checkpoint shard or conversion step that wrote one tensor as garbage."""
    damaged = copy.deepcopy(model)
    tensors = {**dict(damaged.named_parameters()), **dict(damaged.named_buffers())}
    if name not in tensors:
        near = sorted(k for k in tensors if k.startswith(name.rsplit(".", 1)[0]))[:8]
        raise ValueError(f"no tensor named {name!r} in the model: corrupt_tensor needs a full tensor name"
                         + (f" such as {', '.join(near)}" if near else ""))
    module_name, _, attr = name.rpartition(".")
    owner = damaged.get_submodule(module_name)
    t = tensors[name]
    t.copy_(_random_like(t, owner, attr, torch.Generator().manual_seed(seed)).to(t.device))
    if isinstance(owner, AWQLinear):
        _refresh(owner)
    return damaged


@torch.no_grad()
def scale_all(model: nn.Module, factor: float) -> nn.Module:
    """Every AWQLinear's scales times `factor`: a scale folded in twice or a wrong max-range constant."""
    damaged = copy.deepcopy(model)
    for layer in _all_awq_layers(damaged, "scale_all"):
        layer.scales.copy_((layer.scales.float() * factor).to(layer.scales.dtype))
        _refresh(layer)
    return damaged


@torch.no_grad()
def scales_through_bf16(model: nn.Module) -> nn.Module:
    """Every scale rounded through bfloat16 and back: a checkpoint saved in bf16, harmless at 4 bits."""
    damaged = copy.deepcopy(model)
    for layer in _all_awq_layers(damaged, "scales_through_bf16"):
        layer.scales.copy_(layer.scales.to(torch.bfloat16).to(layer.scales.dtype))
        _refresh(layer)
    return damaged
