"""Streaming AWQ: a model larger than RAM, quantized one block at a time (docs/architecture.md §5a).

The model is built with empty (meta) parameters; its weights stay in the source's memory-mapped
safetensors shards. What sits in memory at once: the tensors outside the blocks (embeddings, final
norm, head), the one block being quantized, and the calibration activations flowing between blocks.
Each block is read, quantized exactly as the in-memory path does it (awq.quantize_block), handed to
the shard writer and dropped back to meta. Same inputs, same order, same arithmetic: the checkpoint
is bit for bit the one the in-memory path writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from awqguard import progress
from awqguard.errors import ModelLoadError
from awqguard.quantizer.awq import (Compute, QuantReport, calibration_chunk, check_finite, check_shapes,
                                   prepare_model, quantize_block)
from awqguard.quantizer.blocks import Activations, capture_block_inputs
from awqguard.quantizer.config import QuantConfig
from awqguard.quantizer.mappings import resolve_architecture
from awqguard.quantizer.memory import release
from awqguard.shards import LazyTensors

Write = Callable[[dict[str, torch.Tensor]], None]


def can_stream(folder: Path) -> bool:
    """Streaming needs safetensors weights named as the model names its parameters (transformers
    renames some old checkpoints' tensors as it loads them, e.g. GPT-NeoX's embed_out) and Linear
    layers (GPT-2's Conv1D is converted in memory)."""
    try:
        weights = LazyTensors(folder)
        model = empty_model(folder)
        _, arch = resolve_architecture(model)
    except Exception:       # noqa: BLE001 - any doubt: take the in-memory path, which reports it properly
        return False
    return not arch.conv1d_to_linear and not _mismatch(model, weights)[1]


def empty_model(folder: Path) -> nn.Module:
    """The model of `folder` with every parameter on the meta device (buffers, such as rotary
    frequencies, are real), and the folder's generation config."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    config = AutoConfig.from_pretrained(str(folder))
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if (Path(folder) / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    return model.eval()


@torch.no_grad()
def stream_quantize(folder: Path, samples: torch.Tensor, cfg: QuantConfig, compute: Compute,
                    write: Write, to_checkpoint: Callable[[torch.Tensor], torch.Tensor],
                    activations: Activations) -> tuple[nn.Module, QuantReport]:
    """Quantize the model in `folder` block by block, passing every checkpoint tensor to `write` in
    state-dict order; returns the (empty) model, for its config, and the report."""
    start = time.perf_counter()
    weights = LazyTensors(folder)
    model = empty_model(folder)
    model_type, arch, blocks_name, blocks = prepare_model(model)
    check_shapes(blocks_name, blocks, cfg)
    head, tail = _outside_blocks(model, weights, blocks_name, folder)
    _load(model, head + tail, weights)
    chunk = calibration_chunk(model, samples)
    hidden, call = capture_block_inputs(model, blocks[0], samples, chunk, activations)
    write(_tensors(model, head, to_checkpoint))
    reports = []
    with progress.task(f"AWQ w{cfg.w_bit} g{cfg.group_size} (streaming)", total=len(blocks)) as bar:
        for i, block in enumerate(blocks):
            name = f"{blocks_name}.{i}"
            _load(model, [f"{name}.{k}" for k in block.state_dict()], weights)
            hidden, rep = quantize_block(block, name, hidden, call, arch, cfg, compute.pick(), chunk, activations,
                                         compute.dtype)
            write({f"{name}.{k}": to_checkpoint(t) for k, t in block.state_dict().items()})
            block.to("meta")                                       # release the block's memory
            release()
            reports.append(rep)
            bar.advance(description=f"AWQ w{cfg.w_bit} g{cfg.group_size}: {name}")
    write(_tensors(model, tail, to_checkpoint))
    return model, QuantReport(model_type, reports, time.perf_counter() - start)


def _outside_blocks(model: nn.Module, weights: LazyTensors, blocks_name: str,
                    folder: Path) -> tuple[list[str], list[str]]:
    """The state-dict names before and after the blocks, after checking that the source holds
    exactly the tensors the model expects (a tied head is not stored)."""
    names = _stored_names(model)
    missing, unexpected = _mismatch(model, weights)
    if missing or unexpected:
        raise ModelLoadError(f"{folder}: tensors do not match the {model.config.model_type} architecture "
                             f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    inside = [i for i, k in enumerate(names) if k.startswith(blocks_name + ".")]
    return names[:inside[0]], names[inside[-1] + 1:]


def _stored_names(model: nn.Module) -> list[str]:
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return [k for k in model.state_dict() if not (tied and k == "lm_head.weight")]


def _mismatch(model: nn.Module, weights: LazyTensors) -> tuple[list[str], list[str]]:
    """(tensors the model expects that the source lacks, tensors of the source the model lacks)."""
    names = _stored_names(model)
    return [k for k in names if k not in weights], sorted(set(weights.keys()) - set(model.state_dict()))


def _load(model: nn.Module, names: list[str], weights: LazyTensors) -> None:
    """Read `names` from the shards into the model as float32 parameters (buffers as they are)."""
    from accelerate.utils import set_module_tensor_to_device
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {}
    for name, value in weights.read(names).items():
        if name in params:
            value = value.float()
            loaded[name] = value
        set_module_tensor_to_device(model, name, "cpu", value=value)
    check_finite(loaded.items())
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()


def _tensors(model: nn.Module, names: list[str], to_checkpoint) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {k: to_checkpoint(state[k]) for k in names}
