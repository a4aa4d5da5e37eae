"""Applying search results to the model: fold scales into the previous op, clamp clipped weights.

Folding divides prev's output by s and multiplies the linears' input columns by s, so
W·x = (W·diag(s))·(x / s): the function is unchanged before rounding. Gemma's RMSNorm scales by
(1 + w), so there the new weight is (1 + w)/s − 1. A linear prev scales only its last len(s)
output rows (the "up" half of a fused gate_up projection; all rows otherwise).
"""

from __future__ import annotations

import torch
from torch import nn

from awqguard.errors import ConfigError
from awqguard.quantizer.config import group_size_for
from awqguard.quantizer.mappings import ResolvedMapping


@torch.no_grad()
def fold_scale(rm: ResolvedMapping, s: torch.Tensor, norm_offset: float = 0.0) -> None:
    prev = rm.prev
    n = s.numel()
    if isinstance(prev, nn.Linear):
        sw = s.to(prev.weight.dtype)
        prev.weight[-n:].div_(sw.view(-1, 1))
        if prev.bias is not None:
            prev.bias[-n:].div_(sw)
    else:
        weight = getattr(prev, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.shape != s.shape:
            raise ConfigError(f"cannot fold a scale into {type(prev).__name__} ({rm.mapping.prev}): "
                              "it has no per-channel weight of the right size")
        sw = s.to(weight.dtype)
        if norm_offset:
            weight.copy_((weight + norm_offset) / sw - norm_offset)
        else:
            weight.div_(sw)
        bias = getattr(prev, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.div_(sw)
    for lin in rm.linears:
        lin.weight.mul_(s.to(lin.weight.dtype).view(1, -1))


@torch.no_grad()
def apply_clip(linear: nn.Linear, max_val: torch.Tensor, group_size: int) -> None:
    """Clamp each (row, group) of the weight to ±max_val [out, in/g]."""
    w = linear.weight
    out_f, in_f = w.shape
    g = group_size_for(in_f, group_size)
    limit = max_val.to(w.dtype).unsqueeze(-1)
    wg = w.view(out_f, in_f // g, g)
    wg.copy_(torch.maximum(torch.minimum(wg, limit), -limit))
