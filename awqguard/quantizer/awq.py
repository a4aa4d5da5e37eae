"""AWQ, block by block (docs/architecture.md §4): statistics -> scale search -> fold -> clip -> round -> pack."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from awqguard import progress
from awqguard.errors import ConfigError, ModelLoadError
from awqguard.kernels.wqlinear import AWQLinear
from awqguard.quantizer import rounding
from awqguard.quantizer.apply import apply_clip, fold_scale
from awqguard.quantizer.blocks import CallRecorder, InputStats, capture_block_inputs, run_block
from awqguard.quantizer.config import QuantConfig, workable_group_sizes
from awqguard.quantizer.kneedle import outlier_channels
from awqguard.quantizer.mappings import Architecture, find_blocks, resolve_architecture, resolve_block
from awqguard.quantizer.rounders import round_weight
from awqguard.quantizer.search import InspectCall, sample_rows, search_clip, search_scale

log = logging.getLogger(__name__)

FOLD_CHECK_RTOL = 1e-3   # folding is exact math; anything larger means a mapping is not foldable


@dataclass
class BlockReport:
    name: str
    ratios: dict[str, float] = field(default_factory=dict)      # mapping prev -> chosen ratio
    fold_error: float = 0.0                                       # relative output change from folding
    quantized: list[str] = field(default_factory=list)
    weights: int = 0                                              # weights rounded in this block
    flipped: int = 0                                              # dh: weights moved off nearest
    outlier_channels: int = 0                                     # dh: input channels never flipped
    channels: int = 0                                             # dh: input channels of its linears


@dataclass
class QuantReport:
    model_type: str
    blocks: list[BlockReport]
    seconds: float

    @property
    def quantized_linears(self) -> int:
        return sum(len(b.quantized) for b in self.blocks)

    def to_dict(self) -> dict:
        d = {"model_type": self.model_type, "quantized_linears": self.quantized_linears,
             "seconds": round(self.seconds, 2),
             "max_fold_error": max((b.fold_error for b in self.blocks), default=0.0),
             "ratios": {b.name: b.ratios for b in self.blocks}}
        channels = sum(b.channels for b in self.blocks)
        if channels:    # dh rounding ran: how much it changed, and how much Kneedle protected
            d["dh"] = {"flipped_share": sum(b.flipped for b in self.blocks) / sum(b.weights for b in self.blocks),
                       "outlier_share": sum(b.outlier_channels for b in self.blocks) / channels}
        return d


# ---- checks before any work ---------------------------------------------------------------------

def is_excluded(name: str, cfg: QuantConfig) -> bool:
    return any(part == name or name.startswith(part + ".") or f".{part}." in f".{name}."
               for part in cfg.modules_to_not_convert)


def block_linears(block: nn.Module, block_name: str, cfg: QuantConfig) -> dict[str, nn.Linear]:
    return {n: m for n, m in block.named_modules()
            if isinstance(m, nn.Linear) and not is_excluded(f"{block_name}.{n}", cfg)}


def check_model(model: nn.Module, blocks_name: str, blocks: nn.ModuleList, cfg: QuantConfig) -> None:
    """Fail early, naming the layer: non-finite weights, group sizes that do not divide, unpackable rows."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            bad = int((~torch.isfinite(param)).sum())
            raise ModelLoadError(f"weight {name} holds {bad} NaN/Inf values: the model file is damaged "
                                 "or was saved from a diverged run; quantizing it would hide that")
    all_linears = {f"{blocks_name}.{i}.{n}": m for i, b in enumerate(blocks)
                   for n, m in block_linears(b, f"{blocks_name}.{i}", cfg).items()}
    if not all_linears:
        raise ConfigError("no linear layer is left to quantize (check --not-convert)")
    ins = sorted({m.in_features for m in all_linears.values()})
    if cfg.group_size != -1:
        for name, m in all_linears.items():
            if m.in_features % cfg.group_size:
                sizes = ", ".join(str(s) for s in workable_group_sizes(ins))
                raise ConfigError(
                    f"group size {cfg.group_size} does not divide in_features {m.in_features} of {name}; "
                    f"sizes that divide every layer: {sizes}")
    if cfg.packed:
        for name, m in all_linears.items():
            if m.out_features % 8:
                raise ConfigError(f"{name} has out_features {m.out_features}, not a multiple of 8, so its "
                                  f"4-bit weights cannot be packed: add --not-convert {name.rsplit('.', 1)[-1]}")


def convert_conv1d(model: nn.Module) -> None:
    """GPT-2's Conv1D (weight [in, out]) -> nn.Linear (weight [out, in]); the same function."""
    from transformers.pytorch_utils import Conv1D
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                lin = nn.Linear(child.weight.shape[0], child.weight.shape[1], bias=child.bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        lin.bias.copy_(child.bias)
                setattr(parent, child_name, lin.to(child.weight.dtype))


# ---- one block ----------------------------------------------------------------------------------

def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


@torch.no_grad()
def quantize_block(block: nn.Module, block_name: str, hidden: torch.Tensor, call, arch: Architecture,
                   cfg: QuantConfig, device: torch.device, chunk: int) -> tuple[torch.Tensor, BlockReport]:
    """Quantize `block` in place; returns the full-precision block's outputs (the next block's inputs)."""
    report = BlockReport(block_name)
    block.to(device)
    mappings = resolve_block(block, arch, block_name)
    linears = block_linears(block, block_name, cfg)
    mappings = [rm for rm in mappings if all(any(l is m for m in linears.values()) for l in rm.linears)]

    # 1. every calibration token: Σ|x| per input channel, and the FP outputs for the next block
    stats = InputStats(linears)
    try:
        next_hidden = run_block(block, hidden, call, chunk, device)
    finally:
        stats.remove()

    # 2. a seeded subsample of whole sequences (attention needs them whole) for the losses
    n_seq = min(hidden.shape[0], call.batch, max(1, math.ceil(cfg.loss_tokens / hidden.shape[1])))
    pick = torch.randperm(hidden.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[:n_seq]
    sub = hidden[pick.sort().values]
    inspects = {id(rm.inspect): rm.inspect for rm in mappings}
    recorder = CallRecorder({}, inspects)
    try:
        sub_out = run_block(block, sub, call, n_seq, device)
    finally:
        recorder.remove()

    # 3. scale search (no weight changes), then 4. fold all scales at once
    scales = []
    for rm in mappings:
        first = _name_of(linears, rm.linears[0])
        args, kwargs, out = recorder.calls[id(rm.inspect)]
        s, ratio, _ = search_scale(rm, stats.mean(first).to(device), InspectCall(args, kwargs, out), cfg,
                                   stats.signed_mean(first).to(device))
        scales.append((rm, s))
        report.ratios[rm.mapping.prev] = ratio
    folded = {}     # linear name -> the scale folded into its input columns
    for rm, s in scales:
        fold_scale(rm, s, arch.norm_offset)
        folded.update({_name_of(linears, lin): s for lin in rm.linears})

    # the folded block must compute what it computed before; also records clip inputs
    recorder = CallRecorder(linears, {})
    try:
        folded_out = run_block(block, sub, call, n_seq, device)
    finally:
        recorder.remove()
    report.fold_error = _relative_error(folded_out, sub_out)
    if not math.isfinite(report.fold_error) or report.fold_error > FOLD_CHECK_RTOL:
        raise ConfigError(
            f"{block_name}: folding AWQ scales changed the block's output by {report.fold_error:.2e} "
            f"(relative): a mapping of this architecture is not function-preserving "
            f"({[rm.mapping.prev for rm in mappings]})")

    # 5. clip search (skipping q/k-style projections), 6. round and pack
    for name, lin in linears.items():
        if cfg.apply_clip and not any(frag in name for frag in arch.no_clip):
            x = sample_rows(recorder.linear_inputs[name], cfg.clip_tokens, cfg.seed)
            apply_clip(lin, search_clip(lin.weight, x, cfg), cfg.group_size)
        means = stats.signed_mean(name).to(device)
        if name in folded:     # the folded layer sees x / s
            means = means / folded[name].float()
        replace_linear(block, name, lin, cfg, means, report)
        report.quantized.append(name)
    block.to("cpu")
    return next_hidden, report


def _name_of(linears: dict[str, nn.Linear], module: nn.Module) -> str:
    return next(n for n, m in linears.items() if m is module)


def replace_linear(block: nn.Module, name: str, lin: nn.Linear, cfg: QuantConfig,
                   means: torch.Tensor | None = None, report: BlockReport | None = None) -> None:
    """Round `lin` (the submodule `name` of `block`) on cfg's grid in cfg's rounding mode: an
    AWQLinear when packed, else its weight replaced by the dequantized floats. `means` [in] is E[x]
    of the layer's input (needed by dh); `report` counts what dh did."""
    w = lin.weight.detach().float()
    qw = round_weight(w, cfg, means)
    if report is not None and cfg.rounding == "dh":
        nearest = rounding.quantize(w, cfg.w_bit, cfg.group_size, cfg.zero_point)
        report.weights += w.numel()
        report.flipped += int((qw.q != nearest.q).sum())
        report.outlier_channels += int(outlier_channels(means.abs(), cfg.knee_tolerance).sum())
        report.channels += w.shape[1]
    if not cfg.packed:     # 2/3/8 bits: keep the dequantized floats (fake quantization)
        lin.weight.copy_(qw.dequantize().to(lin.weight.dtype))
        return
    new = AWQLinear.from_quantized(qw, lin.bias).to(lin.weight.device)
    new.set_path("dequant")
    block.set_submodule(name, new)


# ---- the whole model ----------------------------------------------------------------------------

def pick_chunk(seqlen: int, hidden: int) -> int:
    """Sequences per block forward: keeps the largest activation near 256 MB."""
    return max(1, min(64, int(256e6 / (4 * seqlen * hidden * 4))))


@torch.no_grad()
def quantize_model(model: nn.Module, samples: torch.Tensor, cfg: QuantConfig,
                   device: torch.device | str = "cpu") -> QuantReport:
    """Quantize `model` (on CPU) in place with calibration token samples [n, T]."""
    start = time.perf_counter()
    device = torch.device(device)
    model_type, arch = resolve_architecture(model)
    if arch.conv1d_to_linear:
        convert_conv1d(model)
    blocks_name, blocks = find_blocks(model, arch)
    check_model(model, blocks_name, blocks, cfg)
    model.eval()
    hidden_size = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", 1024)
    chunk = pick_chunk(samples.shape[1], hidden_size)
    hidden, call = capture_block_inputs(model, blocks[0], samples, chunk)
    reports = []
    with progress.task(f"AWQ w{cfg.w_bit} g{cfg.group_size}", total=len(blocks)) as bar:
        for i, block in enumerate(blocks):
            name = f"{blocks_name}.{i}"
            hidden, rep = quantize_block(block, name, hidden, call, arch, cfg, device, chunk)
            reports.append(rep)
            bar.advance(description=f"AWQ w{cfg.w_bit} g{cfg.group_size}: {name}")
    return QuantReport(model_type, reports, time.perf_counter() - start)
