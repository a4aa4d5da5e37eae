"""Deliberately damaged candidates: the proof that the gates catch what they should (issue 3).

`rtn_candidate` rounds every block linear to nearest on a coarse grid (2/3-bit): broad damage.
`corrupt_scales` multiplies the group scales of the AWQ layers in some blocks by a seeded random
factor, as a botched scale fold or a bad checkpoint conversion would: local damage that keeps
the packed format intact. Both work on copies; the model passed in is left as it was.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

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
