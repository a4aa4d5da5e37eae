"""AutoAWQ GEMM-format checkpoints (docs/architecture.md §5): atomic save, and loading ours or AutoAWQ's.

On disk: model.safetensors, or shards of at most --max-shard-size with model.safetensors.index.json
(qweight/qzeros/scales per quantized linear, every other tensor fp16), config.json with
"quantization_config", the tokenizer, and awqguard.json recording how it was made.
A save is written to a hidden sibling folder and renamed into place, so an interrupted or failed
run never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from awqguard import files
from awqguard.errors import AwqguardError, ModelLoadError, OutputExistsError
from awqguard.kernels.paths import default_path
from awqguard.kernels.wqlinear import AWQLinear, set_kernel_path
from awqguard.models import ModelSource, load_model, read_json, reference_dtype, resolve_device
from awqguard.shards import DEFAULT_MAX_SHARD, ShardWriter, has_weights, load_all, parse_size

RECORD_FILE = "awqguard.json"
CHECKPOINT_DTYPE = torch.float16      # AutoAWQ / vLLM expect fp16 for everything not packed


# ---- saving -------------------------------------------------------------------------------------

def round_to_checkpoint_precision(model: nn.Module) -> None:
    """Pass float parameters through fp16 so the in-memory model equals what a reload gives."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.copy_(p.to(CHECKPOINT_DTYPE).to(p.dtype))


def to_checkpoint(t: torch.Tensor) -> torch.Tensor:
    """A tensor as the checkpoint stores it: floats in fp16, on CPU, contiguous."""
    if t.is_floating_point():
        t = t.to(CHECKPOINT_DTYPE)
    return t.detach().cpu().contiguous()


def checkpoint_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    # shared with the embedding when tied; safetensors stores each tensor once
    return {name: to_checkpoint(t) for name, t in model.state_dict().items()
            if not (tied and name == "lm_head.weight")}


def quantization_config(cfg) -> dict[str, Any]:
    return {"quant_method": "awq", "bits": cfg.w_bit, "group_size": cfg.group_size,
            "zero_point": cfg.zero_point, "version": "gemm",
            "modules_to_not_convert": list(cfg.modules_to_not_convert) or None}


def save_checkpoint(model: nn.Module, tokenizer, out: Path, cfg, record: dict, force: bool = False,
                    max_shard_size: str | int = DEFAULT_MAX_SHARD) -> Path:
    """Write the checkpoint folder atomically; `record` goes to awqguard.json.

    When another process published the same checkpoint (same identity) to `out` first, its copy is
    kept and this one dropped: two parallel jobs making one checkpoint both succeed.
    """
    with files.staging_dir(out) as tmp:
        writer = ShardWriter(tmp, parse_size(max_shard_size))
        writer.add(checkpoint_tensors(model))
        writer.close()
        return publish_checkpoint(tmp, Path(out), model, tokenizer, cfg, record, force)


def publish_checkpoint(tmp: Path, out: Path, model: nn.Module, tokenizer, cfg, record: dict, force: bool) -> Path:
    """Add config, tokenizer and record beside the shards already in the staging folder `tmp`, then
    rename it to `out`."""
    config = json.loads(model.config.to_json_string(use_diff=False))
    config.pop("quantization_config", None)
    if cfg.packed:
        config["quantization_config"] = quantization_config(cfg)
    config["torch_dtype"] = config["dtype"] = "float16"
    files.write_json(tmp / "config.json", config, indent=2, sort_keys=True)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    files.write_json(tmp / RECORD_FILE, record, indent=2, sort_keys=True)
    if not files.publish_dir(tmp, out, replace=force) and _identity(out) != record["identity"]:
        raise OutputExistsError(f"{out} is not empty; choose another --out or pass --force")
    return out


def _identity(folder: Path) -> dict:
    """The identity recorded in a checkpoint's awqguard.json ({} when there is none or it is unreadable)."""
    try:
        record = files.loads(files.read_text(folder / RECORD_FILE))
    except (OSError, ValueError, AwqguardError):
        return {}
    return record.get("identity", {}) if isinstance(record, dict) else {}


def check_output_folder(out: Path, identity: dict, force: bool) -> bool:
    """True when `out` already holds this exact checkpoint (reuse it); raises if it holds another."""
    out = Path(out)
    if not out.exists() or not any(out.iterdir()):
        return False
    if (out / RECORD_FILE).exists():
        existing = _identity(out)
        if existing == identity and has_weights(out):
            return not force
        if force:
            return False
        diffs = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
        raise OutputExistsError(
            f"{out} already holds a different checkpoint (differs in: {', '.join(diffs) or 'record'}); "
            "choose another --out, or pass --force to replace it")
    if force:
        return False
    what = "a checkpoint not made by awqguard" if (out / "config.json").exists() else "other files"
    raise OutputExistsError(f"{out} already holds {what}; choose an empty or new --out folder "
                            "(or pass --force to replace it)")


# ---- loading ------------------------------------------------------------------------------------

def read_quantization_config(folder: Path) -> dict | None:
    config = read_json(folder / "config.json")
    qc = config.get("quantization_config")
    if qc is None and (folder / "quant_config.json").exists():     # AutoAWQ before transformers' format
        qc = read_json(folder / "quant_config.json")
    if qc is None:
        return None
    qc = dict(qc)
    qc.setdefault("bits", qc.get("w_bit"))
    qc.setdefault("group_size", qc.get("q_group_size"))
    return qc


def _check_qc(folder: Path, qc: dict) -> int:
    if str(qc.get("quant_method", "awq")).lower() != "awq":
        raise ModelLoadError(f"{folder}: quant_method is {qc.get('quant_method')!r}, not awq")
    if int(qc.get("bits") or 4) != 4:
        raise ModelLoadError(f"{folder}: {qc.get('bits')}-bit packed checkpoints are not supported (only 4)")
    version = str(qc.get("version", "gemm")).lower()
    if version != "gemm":
        raise ModelLoadError(f"{folder}: AWQ version {version!r} checkpoints are not supported; "
                             "awqguard reads GEMM-layout checkpoints (version gemm)")
    return int(qc.get("group_size") or 128)


def load_quantized(path: str | Path, device: str | None = "auto", kernel: str | None = None) -> nn.Module:
    """A transformers causal LM from an awqguard or AutoAWQ checkpoint, with AWQLinear layers.

    Checkpoints without a quantization_config (fake-quantized 2/3/8-bit ones) load as float models.
    `kernel` picks the compute path (see awqguard.kernels.paths); default: the device's fast path.
    """
    folder = Path(path)
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"{folder} is not a checkpoint folder (no config.json)")
    dev = resolve_device(device)
    qc = read_quantization_config(folder)
    if qc is None:
        return load_model(ModelSource(str(folder), folder), reference_dtype(dev)).to(dev)
    group_size = _check_qc(folder, qc)
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelLoadError(f"{folder}/config.json cannot be read by transformers: {exc}") from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    tensors = load_all(folder)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    install_awq_linears(model, tensors, group_size, folder)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(f"{folder}: tensors do not match the {config.model_type} architecture "
                             f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    if tied:
        model.tie_weights()
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(reference_dtype(dev))
    set_kernel_path(model, kernel or default_path(dev))
    return model.eval()


def install_awq_linears(model: nn.Module, tensors: dict[str, torch.Tensor], group_size: int,
                        folder: Path) -> None:
    """Swap in an empty AWQLinear for every `<prefix>.qweight` in `tensors`, after checking the packed
    shapes against the layer it replaces, so a following load_state_dict fills them. `folder` only
    names the source in errors. Shared by load_quantized and the quantized-embedder cache."""
    prefixes = sorted(k[: -len(".qweight")] for k in tensors if k.endswith(".qweight"))
    if not prefixes:
        raise ModelLoadError(f"{folder}: config says AWQ but no tensor ends in .qweight")
    for prefix in prefixes:
        try:
            linear = model.get_submodule(prefix)
        except AttributeError:
            raise ModelLoadError(f"{folder}: {prefix}.qweight names no layer of this model") from None
        in_f, out_f = _linear_shape(linear, prefix, folder)
        g = in_f if group_size == -1 else group_size
        expected = {"qweight": (in_f, out_f // 8), "qzeros": (in_f // g, out_f // 8), "scales": (in_f // g, out_f)}
        for part, shape in expected.items():
            got = tuple(tensors[f"{prefix}.{part}"].shape) if f"{prefix}.{part}" in tensors else None
            if got != shape:
                raise ModelLoadError(f"{folder}: {prefix}.{part} has shape {got}, expected {shape} "
                                     f"(in={in_f}, out={out_f}, group={g})")
        model.set_submodule(prefix, AWQLinear(in_f, out_f, g, bias=f"{prefix}.bias" in tensors))


def _linear_shape(module: nn.Module, prefix: str, folder: Path) -> tuple[int, int]:
    """(in_features, out_features) of a Linear, or of GPT-2's Conv1D (weight stored [in, out])."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":
        return tuple(module.weight.shape)
    raise ModelLoadError(f"{folder}: {prefix} is a {type(module).__name__}, not a Linear")
