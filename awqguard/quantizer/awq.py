"""AWQ, block by block (docs/architecture.md §4): statistics -> scale search -> fold -> clip -> round -> pack."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch
from torch import nn

from awqguard import progress
from awqguard.errors import ConfigError, ModelLoadError
from awqguard.kernels.wqlinear import AWQLinear
from awqguard.quantizer import rounding
from awqguard.quantizer.apply import apply_clip, fold_scale
from awqguard.quantizer.blocks import (IN_RAM, Activations, CallRecorder, InputGrams, InputStats, TokenSample,
                                      capture_block_inputs, compute_dtype, is_tokenwise, run_block)
from awqguard.quantizer.config import QuantConfig, group_size_for, workable_group_sizes
from awqguard.quantizer.kneedle import outlier_channels
from awqguard.quantizer.mappings import (Architecture, ResolvedMapping, find_blocks, resolve_architecture,
                                        resolve_block)
from awqguard.quantizer.rounders import round_weight
from awqguard.quantizer.search import (GramCall, InspectCall, sample_rows, search_clip, search_clip_gram,
                                      search_scale)

log = logging.getLogger(__name__)

FOLD_CHECK_RTOL = 1e-3   # folding is exact math; anything larger means a mapping is not foldable


def fold_tolerance(dtype: torch.dtype) -> float:
    """The fold check's bound in the block's compute precision: rounding alone moves bf16 outputs by
    a few 1e-3, while a mapping that is not function-preserving moves them by tens of percent."""
    return max(FOLD_CHECK_RTOL, 4 * torch.finfo(dtype).eps)


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
    clip_shrink: dict[str, float] = field(default_factory=dict)  # linear -> mean clip / max|w| per group


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
             "ratios": {b.name: b.ratios for b in self.blocks},
             "clip_shrink": {b.name: b.clip_shrink for b in self.blocks}}
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
    check_finite(model.named_parameters())
    check_shapes(blocks_name, blocks, cfg)


def check_finite(named_parameters) -> None:
    for name, param in named_parameters:
        if not torch.isfinite(param).all():
            bad = int((~torch.isfinite(param)).sum())
            raise ModelLoadError(f"weight {name} holds {bad} NaN/Inf values: the model file is damaged "
                                 "or was saved from a diverged run; quantizing it would hide that")


def check_shapes(blocks_name: str, blocks: nn.ModuleList, cfg: QuantConfig) -> None:
    """Group sizes that do not divide, rows that cannot be packed: from the layers' shapes alone, so
    it also runs on a model whose weights are not loaded yet."""
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


# How a mapping's scale-search loss is scored (docs/architecture.md §4.3), decided once per mapping:
GRAM = "gram"              # spread, the checked module is the mapping's one linear: Σ (Δ·G)⊙Δ
TOKENS = "tokens"          # spread, a token-wise checked module: its calls at tokens from every sequence
SEQUENCES = "sequences"    # the checked module re-run on a few whole sequences (attention; the default)


@torch.no_grad()
def quantize_block(block: nn.Module, block_name: str, hidden: torch.Tensor, call, arch: Architecture,
                   cfg: QuantConfig, device: torch.device, chunk: int,
                   activations: Activations = IN_RAM,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, BlockReport]:
    """Quantize `block` in place, computing on `device` in `dtype`; returns the full-precision
    block's outputs (the next block's inputs). The block comes back to the CPU in float32."""
    report = BlockReport(block_name)
    block.to(device, dtype)
    linears = block_linears(block, block_name, cfg)
    probes = [(rm, _probe_kind(rm, cfg)) for rm in _block_mappings(block, block_name, arch, linears)]
    clipped = {n: m for n, m in linears.items() if _clips(n, cfg, arch)}
    evidence = _gather_evidence(block, hidden, call, probes, linears, clipped, cfg, device, chunk, activations)
    scales = _search_scales(probes, evidence, linears, cfg, device, report)
    folded = _fold_scales(scales, linears, arch)
    # without second moments the clip search scores the folded linears' recorded input tokens
    token_inputs = _check_fold(block, block_name, [rm for rm, _ in probes], evidence, call,
                               {} if evidence.grams is not None else clipped, device, report)
    for name, lin in linears.items():     # clip (never q/k), then round and pack
        if name in clipped:
            max_val = _clip_values(name, lin, evidence.grams, folded.get(name), token_inputs, cfg)
            report.clip_shrink[name] = _mean_shrink(lin.weight, max_val, cfg.group_size)
            apply_clip(lin, max_val, cfg.group_size)
        means = evidence.stats.signed_mean(name).to(device)
        if name in folded:     # the folded layer sees x / s
            means = means / folded[name].float()
        replace_linear(block, name, lin, cfg, means, report)
        report.quantized.append(name)
    if dtype == torch.float32:
        block.to("cpu")
    else:
        block.to("cpu", torch.float32)
    return evidence.next_hidden, report


def _block_mappings(block: nn.Module, block_name: str, arch: Architecture,
                    linears: dict[str, nn.Linear]) -> list[ResolvedMapping]:
    """The block's mappings whose linears are all quantized: a mapping with an excluded linear is skipped."""
    return [rm for rm in resolve_block(block, arch, block_name)
            if all(any(l is m for m in linears.values()) for l in rm.linears)]


def _probe_kind(rm: ResolvedMapping, cfg: QuantConfig) -> str:
    """GRAM, TOKENS or SEQUENCES: the cheapest exact way `spread` can score this mapping's loss on
    the whole calibration set; without spread every loss re-runs its module on whole sequences."""
    if cfg.loss_sample != "spread":
        return SEQUENCES
    if len(rm.linears) == 1 and rm.inspect is rm.linears[0]:
        return GRAM
    return TOKENS if is_tokenwise(rm.inspect) else SEQUENCES


def _clips(name: str, cfg: QuantConfig, arch: Architecture) -> bool:
    """Whether linear `name` gets a clip search (never the q/k-style projections of arch.no_clip)."""
    return cfg.apply_clip and not any(frag in name for frag in arch.no_clip)


@dataclass
class _Evidence:
    """What the block's searches are scored on, taken from the full-precision block before any change."""

    next_hidden: torch.Tensor          # the block's outputs for every sequence: the next block's inputs
    stats: InputStats                  # E|x| and E[x] of every linear's input, over every token
    grams: InputGrams | None           # spread: second moments for GRAM losses and the clip search
    sampler: TokenSample               # TOKENS: calls of token-wise checked modules at sampled tokens
    recorder: CallRecorder             # SEQUENCES: calls of checked modules on `sub`
    sub: torch.Tensor                  # the whole sequences those calls (and the fold check) ran on
    sub_out: torch.Tensor              # the block's outputs for `sub`
    precision: Callable[[], ContextManager] | None    # bfloat16 products for the losses, or None

    def probe(self, rm: ResolvedMapping, kind: str, linears: dict[str, nn.Linear],
              device: torch.device) -> InspectCall | GramCall:
        if kind == GRAM:
            return GramCall(*self.grams.full(_name_of(linears, rm.linears[0])))
        key = id(rm.inspect)
        call = InspectCall(*(self.sampler.call(key, device) if kind == TOKENS else self.recorder.calls[key]))
        return call if self.precision is None else call.in_precision(rm, self.precision)


def _gather_evidence(block: nn.Module, hidden: torch.Tensor, call, probes: list[tuple[ResolvedMapping, str]],
                     linears: dict[str, nn.Linear], clipped: dict[str, nn.Linear], cfg: QuantConfig,
                     device: torch.device, chunk: int, activations: Activations) -> _Evidence:
    """Two passes of the unchanged block: every calibration token (statistics, the next block's
    inputs and, spread, second moments and token samples), then the whole loss sequences."""
    total = hidden.shape[0] * hidden.shape[1]
    stats = InputStats(linears)
    grams = InputGrams(linears, _input_groups(linears, [rm for rm, _ in probes]), cfg.group_size, set(clipped),
                       {_name_of(linears, rm.inspect) for rm, kind in probes if kind == GRAM},
                       _positions(total, cfg.gram_tokens, cfg.seed)) if cfg.loss_sample == "spread" else None
    sampler = TokenSample({id(rm.inspect): rm.inspect for rm, kind in probes if kind == TOKENS},
                          _positions(total, cfg.loss_tokens, cfg.seed))
    precision = _precision(block, device, cfg)
    try:
        with (precision or contextlib.nullcontext)():
            next_hidden = run_block(block, hidden, call, chunk, device, activations=activations)
    finally:
        stats.remove()
        sampler.remove()
        if grams is not None:
            grams.remove()

    sub = hidden[_loss_sequences(hidden.shape[0], hidden.shape[1], call.batch, cfg)]
    recorder = CallRecorder({}, {id(rm.inspect): rm.inspect for rm, kind in probes if kind == SEQUENCES})
    try:
        sub_out = run_block(block, sub, call, sub.shape[0], device)
    finally:
        recorder.remove()
    return _Evidence(next_hidden, stats, grams, sampler, recorder, sub, sub_out, precision)


def _precision(block: nn.Module, device: torch.device, cfg: QuantConfig) -> Callable[[], ContextManager] | None:
    """The context the calibration pass and the scale-search losses multiply in: bfloat16 products
    when cfg.matmul_dtype asks for them and the block computes in float32, else None (as the block
    computes). The pass on the loss sequences, the fold check, clipping and rounding stay exact."""
    if cfg.matmul_dtype == "float32" or compute_dtype(block) != torch.float32:
        return None
    return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)


def _search_scales(probes: list[tuple[ResolvedMapping, str]], evidence: _Evidence, linears: dict[str, nn.Linear],
                   cfg: QuantConfig, device: torch.device,
                   report: BlockReport) -> list[tuple[ResolvedMapping, torch.Tensor]]:
    """(mapping, best s) per mapping; no weight changes. Records each chosen ratio."""
    scales = []
    for rm, kind in probes:
        first = _name_of(linears, rm.linears[0])
        probe = evidence.probe(rm, kind, linears, device)
        s, ratio, _ = search_scale(rm, evidence.stats.mean(first).to(device), probe, cfg,
                                   evidence.stats.signed_mean(first).to(device))
        scales.append((rm, s))
        report.ratios[rm.mapping.prev] = ratio
    return scales


def _fold_scales(scales: list[tuple[ResolvedMapping, torch.Tensor]], linears: dict[str, nn.Linear],
                 arch: Architecture) -> dict[str, torch.Tensor]:
    """Fold every scale at once; returns linear name -> the scale folded into its input columns."""
    folded = {}
    for rm, s in scales:
        fold_scale(rm, s, arch.norm_offset)
        folded.update({_name_of(linears, lin): s for lin in rm.linears})
    return folded


def _check_fold(block: nn.Module, block_name: str, mappings: list[ResolvedMapping], evidence: _Evidence, call,
                record: dict[str, nn.Linear], device: torch.device, report: BlockReport) -> dict[str, torch.Tensor]:
    """The folded block must compute what it computed before on the loss sequences; returns the
    inputs of the `record` linears on that run (the token clip search's input)."""
    recorder = CallRecorder(record, {})
    try:
        folded_out = run_block(block, evidence.sub, call, evidence.sub.shape[0], device)
    finally:
        recorder.remove()
    report.fold_error = _relative_error(folded_out, evidence.sub_out)
    if not math.isfinite(report.fold_error) or report.fold_error > fold_tolerance(compute_dtype(block)):
        raise ConfigError(
            f"{block_name}: folding AWQ scales changed the block's output by {report.fold_error:.2e} "
            f"(relative): a mapping of this architecture is not function-preserving "
            f"({[rm.mapping.prev for rm in mappings]})")
    return recorder.linear_inputs


def _clip_values(name: str, lin: nn.Linear, grams: InputGrams | None, s: torch.Tensor | None,
                 token_inputs: dict[str, torch.Tensor], cfg: QuantConfig) -> torch.Tensor:
    """Best clip value per (row, group) of the folded `lin`: on every calibration token through the
    per-group second moments when they were gathered (spread), else on recorded input tokens."""
    if grams is not None:
        return search_clip_gram(lin.weight, _folded_gram(grams, name, s), cfg)
    return search_clip(lin.weight, sample_rows(token_inputs[name], cfg.clip_tokens, cfg.seed), cfg)


def _mean_shrink(weight: torch.Tensor, max_val: torch.Tensor, group_size: int) -> float:
    """Mean over (row, group) of the clip value over the group's max |w|: 1.0 = nothing clipped."""
    g = group_size_for(weight.shape[1], group_size)
    max_abs = weight.detach().float().reshape(weight.shape[0], -1, g).abs().amax(dim=-1)
    return round(float((max_val / max_abs.clamp(min=1e-12)).mean()), 4)


def _input_groups(linears: dict[str, nn.Linear], mappings) -> list[list[str]]:
    """Sets of linears fed the same tensor: each mapping's linears, and every other linear alone."""
    groups = [[_name_of(linears, lin) for lin in rm.linears] for rm in mappings]
    grouped = {n for g in groups for n in g}
    return groups + [[n] for n in linears if n not in grouped]


def _folded_gram(grams: InputGrams, name: str, s: torch.Tensor | None) -> torch.Tensor:
    """Per-group second moments of the input `name` sees after folding: x / s."""
    gram, _ = grams.per_group(name)
    if s is None:
        return gram
    inv = (1.0 / s.float().cpu()).reshape(gram.shape[0], -1)                    # [ng, g]
    return gram * inv.unsqueeze(-1) * inv.unsqueeze(-2)


def _positions(total: int, n: int, seed: int) -> torch.Tensor:
    """n token positions out of `total`, seeded, sorted."""
    pick = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    return pick.sort().values


def _loss_sequences(n_total: int, seqlen: int, batch: int, cfg: QuantConfig) -> torch.Tensor:
    """Which whole sequences the module-run losses and the fold check see, at most one captured
    batch: spread, `loss_sequences` evenly spaced over the set; else enough seeded ones for `loss_tokens`."""
    spread = cfg.loss_sample == "spread"
    n = cfg.loss_sequences if spread else math.ceil(cfg.loss_tokens / seqlen)
    n = min(n_total, batch, max(1, n))
    if spread:
        return torch.linspace(0, n_total - 1, n).round().long().unique()
    pick = torch.randperm(n_total, generator=torch.Generator().manual_seed(cfg.seed))[:n]
    return pick.sort().values


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

@dataclass(frozen=True)
class Compute:
    """Where and in what precision blocks are quantized: the devices (each block goes to the one
    with the most free memory) and the dtype."""

    devices: tuple[torch.device, ...]
    dtype: torch.dtype = torch.float32

    def pick(self) -> torch.device:
        if len(self.devices) == 1 or self.devices[0].type != "cuda":
            return self.devices[0]
        return max(self.devices, key=lambda d: torch.cuda.mem_get_info(d)[0])


def pick_chunk(seqlen: int, hidden: int) -> int:
    """Sequences per block forward: keeps the largest activation near 256 MB."""
    return max(1, min(64, int(256e6 / (4 * seqlen * hidden * 4))))


def prepare_model(model: nn.Module) -> tuple[str, Architecture, str, nn.ModuleList]:
    """(model type, architecture, blocks' attribute path, blocks), with GPT-2's Conv1D made Linear."""
    model_type, arch = resolve_architecture(model)
    if arch.conv1d_to_linear:
        convert_conv1d(model)
    blocks_name, blocks = find_blocks(model, arch)
    model.eval()
    return model_type, arch, blocks_name, blocks


def calibration_chunk(model: nn.Module, samples: torch.Tensor) -> int:
    hidden_size = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", 1024)
    return pick_chunk(samples.shape[1], hidden_size)


@torch.no_grad()
def quantize_model(model: nn.Module, samples: torch.Tensor, cfg: QuantConfig,
                   device: torch.device | str | Compute = "cpu", activations: Activations = IN_RAM) -> QuantReport:
    """Quantize `model` (on CPU) in place with calibration token samples [n, T]."""
    start = time.perf_counter()
    compute = device if isinstance(device, Compute) else Compute((torch.device(device),))
    model_type, arch, blocks_name, blocks = prepare_model(model)
    check_model(model, blocks_name, blocks, cfg)
    chunk = calibration_chunk(model, samples)
    hidden, call = capture_block_inputs(model, blocks[0], samples, chunk, activations)
    reports = []
    with progress.task(f"AWQ w{cfg.w_bit} g{cfg.group_size}", total=len(blocks)) as bar:
        for i, block in enumerate(blocks):
            name = f"{blocks_name}.{i}"
            hidden, rep = quantize_block(block, name, hidden, call, arch, cfg, compute.pick(), chunk, activations,
                                         compute.dtype)
            reports.append(rep)
            bar.advance(description=f"AWQ w{cfg.w_bit} g{cfg.group_size}: {name}")
    return QuantReport(model_type, reports, time.perf_counter() - start)
