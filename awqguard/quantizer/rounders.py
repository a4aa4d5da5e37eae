"""The rounding mode a QuantConfig names, as one call: "nearest" (standard AWQ) or "dh".

Both the scale search and the final rounding go through `round_weight`/`fake_round`, so a dh run
is dh everywhere the method rounds. dh needs the signed calibration means E[x_j] of the
linear's input as the linear sees it (after the AWQ scale is folded in: E[x_j] / s_j); its outlier
channels are the Kneedle knee of their magnitudes, found per layer.
"""

from __future__ import annotations

import torch

from awqguard.quantizer.config import QuantConfig
from awqguard.quantizer.dh import dh_quantize
from awqguard.quantizer.kneedle import outlier_channels
from awqguard.kernels.quantized import QuantizedWeight
from awqguard.quantizer.rounding import fake_quantize, quantize


def round_weight(w: torch.Tensor, cfg: QuantConfig, means: torch.Tensor | None = None) -> QuantizedWeight:
    """Integer weights for `w` [out, in] in cfg's rounding mode; `means` [in] is required for dh."""
    if cfg.rounding == "nearest":
        return quantize(w, cfg.w_bit, cfg.group_size, cfg.zero_point)
    if means is None:
        raise ValueError("dh rounding needs the calibration means of the layer's input")
    means = means.to(w.device, torch.float32)
    return dh_quantize(w, means, cfg.w_bit, cfg.group_size, cfg.zero_point, cfg.max_flip_percent,
                       outlier_channels(means.abs(), cfg.knee_tolerance).to(w.device))


def fake_round(w: torch.Tensor, cfg: QuantConfig, means: torch.Tensor | None = None) -> torch.Tensor:
    """Q(w) in cfg's rounding mode, dequantized to `w`'s dtype."""
    if cfg.rounding == "nearest":
        return fake_quantize(w, cfg.w_bit, cfg.group_size, cfg.zero_point)
    return round_weight(w, cfg, means).dequantize().to(w.dtype)
