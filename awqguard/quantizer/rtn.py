"""Round-to-nearest: the same grid as AWQ with no scaling and no clipping. The baseline AWQ must beat,
and a way to build deliberately coarse candidates (2/3-bit) for gate tests."""

from __future__ import annotations

import torch
from torch import nn

from awqguard.quantizer.awq import block_linears, check_model
from awqguard.quantizer.config import QuantConfig
from awqguard.quantizer.mappings import find_blocks, resolve_architecture
from awqguard.quantizer.rounding import fake_quantize


@torch.no_grad()
def rtn_fake_quantize(model: nn.Module, cfg: QuantConfig) -> int:
    """Replace every block linear's weight by Q(W) in place; returns how many layers changed."""
    _, arch = resolve_architecture(model)
    blocks_name, blocks = find_blocks(model, arch)
    check_model(model, blocks_name, blocks, cfg)
    n = 0
    for i, block in enumerate(blocks):
        for lin in block_linears(block, f"{blocks_name}.{i}", cfg).values():
            lin.weight.copy_(fake_quantize(lin.weight.float(), cfg.w_bit, cfg.group_size, cfg.zero_point)
                             .to(lin.weight.dtype))
            n += 1
    return n
