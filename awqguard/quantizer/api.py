"""`quantize(...)`: the one way in. Accepts AutoAWQ's keyword names so its users switch easily."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from awqguard.version import __version__
from awqguard import files
from awqguard.errors import ConfigError
from awqguard.files import check_writable
from awqguard.models import (ModelSource, fingerprint, float_folder, load_model, load_tokenizer, resolve_device,
                             resolve_model)
from awqguard.quantizer.awq import Compute, QuantReport, quantize_model
from awqguard.quantizer.calibration import CalibrationSet, build_samples, gather_texts
from awqguard.quantizer.blocks import Activations
from awqguard.quantizer.checkpoint import (RECORD_FILE, check_output_folder, load_quantized, publish_checkpoint,
                                           round_to_checkpoint_precision, save_checkpoint, to_checkpoint)
from awqguard.quantizer.config import QuantConfig, coerce_config
from awqguard.shards import DEFAULT_MAX_SHARD, ShardWriter, parse_size
from awqguard.quantizer.stream import can_stream, stream_quantize

DEFAULT_ACTIVATION_BUDGET = "4GB"     # per activation buffer; a 70B model's default calibration needs 2 GiB

RECORD_FORMAT = 1


class QuantizeResult:
    """The quantized model (loaded from `path` when first asked for, after a streamed run), its
    tokenizer and awqguard.json's record."""

    def __init__(self, model: nn.Module | None, tokenizer: Any, record: dict, path: Path | None = None,
                 reused: bool = False, device: str = "auto"):
        self._model, self.tokenizer, self.record, self.path, self.reused = model, tokenizer, record, path, reused
        self._device = device

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = load_quantized(self.path, self._device)
        return self._model


def quantize(
    model: str | Path | nn.Module | None = None,
    out: str | Path | None = None,
    config: QuantConfig | Mapping[str, Any] | None = None,
    *,
    tokenizer: Any = None,
    calib: str | Path | Sequence[str | Path] | None = None,
    calib_data: str | Path | Sequence[str | Path] | None = None,   # AutoAWQ's name
    device: str = "auto",
    devices: Sequence[int | str] | None = None,
    compute_dtype: str = "auto",
    force: bool = False,
    max_shard_size: str | int = DEFAULT_MAX_SHARD,
    stream: bool | None = None,
    activation_budget: str | int = DEFAULT_ACTIVATION_BUDGET,
    quant_config: Mapping[str, Any] | None = None,                 # AutoAWQ's name
    **options: Any,
) -> QuantizeResult:
    """Quantize `model` (default: SmolLM2-135M-Instruct) with AWQ; save to `out` when given.

    `options` are QuantConfig fields or AutoAWQ's names (max_calib_samples, max_calib_seq_len,
    duo_scaling, apply_clip, n_grid, q_group_size, ...). When `out` already holds the same
    checkpoint (same model, config and calibration), it is loaded instead of recomputed. Weights
    are written in shards of at most `max_shard_size` ("5GB", "500MB", bytes), as transformers does.
    `stream` (default: whenever `out` is given and the source is a safetensors folder or a GGUF
    file) quantizes block by block from the memory-mapped source: peak memory is one block plus the
    calibration activations, which spill to a file beside `out` past `activation_budget` bytes; the
    checkpoint is the same bit for bit. Blocks compute on `device` in `compute_dtype` (auto: float32
    on CPU, float16 on CUDA); with several GPUs (`devices`, default all) each block goes to the one
    with the most free memory. A dtype other than float32 joins the checkpoint's identity.
    """
    start = time.perf_counter()
    cfg = coerce_config(config if config is not None else quant_config)
    cfg = cfg.replace(**{k: v for k, v in options.items() if v is not None}) if options else cfg
    compute = resolve_compute(device, devices, compute_dtype)
    if out is not None:
        check_writable(out, "out")                        # before any work, not after it
        parse_size(max_shard_size), parse_size(activation_budget, "activation budget")
    calib = calib if calib is not None else calib_data
    source, model_fp, float_model, tokenizer = _resolve_model(model, tokenizer)

    texts, labels = gather_texts(calib)
    calib_set = build_samples(texts, tokenizer, cfg.n_samples, cfg.seqlen, cfg.seed, labels, cfg.n_samples_unit)
    identity = _identity(model_fp, cfg, calib_set, compute)
    if out is not None and check_output_folder(Path(out), identity, force):
        record = files.loads(files.read_text(Path(out) / RECORD_FILE))
        return QuantizeResult(load_quantized(out, device), tokenizer, record, Path(out), reused=True)

    folder = _stream_folder(source, out, stream) if float_model is None else None
    if folder is not None:
        return _quantize_streaming(folder, Path(out), cfg, tokenizer, calib_set, identity, source, compute, start,
                                   force, max_shard_size, activation_budget, device)
    if float_model is None:
        float_model = load_model(source, torch.float32)
    report = quantize_model(float_model, calib_set.samples, cfg, compute)
    round_to_checkpoint_precision(float_model)
    record = _record(identity, source, report, cfg, calib_set, compute, start, streamed=False)
    path = save_checkpoint(float_model, tokenizer, Path(out), cfg, record, force, max_shard_size) if out is not None else None
    return QuantizeResult(float_model, tokenizer, record, path)


def _identity(model_fp: str, cfg: QuantConfig, calib_set: CalibrationSet, compute: Compute) -> dict:
    """What makes two checkpoints the same: model, config, calibration tokens, version, and the
    compute dtype where it is not float32."""
    identity = {"model": model_fp, "config": cfg.to_dict(), "calibration": calib_set.fingerprint,
                "awqguard": __version__}
    if compute.dtype != torch.float32:
        identity["compute_dtype"] = str(compute.dtype).removeprefix("torch.")
    return identity


COMPUTE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_compute(device: str, devices: Sequence[int | str] | None, compute_dtype: str) -> Compute:
    """The devices and dtype blocks are quantized with; `devices` picks GPUs by index."""
    dev = resolve_device(device)
    if compute_dtype != "auto" and compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"compute dtype {compute_dtype!r} is not one of auto, {', '.join(COMPUTE_DTYPES)}")
    dtype = COMPUTE_DTYPES.get(compute_dtype, torch.float16 if dev.type == "cuda" else torch.float32)
    if dev.type != "cuda":
        if devices:
            raise ConfigError("--devices picks GPUs, but the quantizer runs on the CPU here "
                              "(torch sees no CUDA device, or --device cpu was given)")
        return Compute((dev,), dtype)
    visible = torch.cuda.device_count()
    picked = [int(str(d).removeprefix("cuda:")) for d in devices] if devices else list(range(visible))
    bad = [d for d in picked if not 0 <= d < visible]
    if bad:
        raise ConfigError(f"--devices {', '.join(map(str, bad))}: torch sees {visible} CUDA device(s), "
                          f"numbered 0 to {visible - 1}")
    return Compute(tuple(torch.device("cuda", d) for d in picked), dtype)


def _stream_folder(source: ModelSource | None, out, stream: bool | None) -> Path | None:
    """The safetensors folder to stream from, or None for the in-memory path. A GGUF source streams
    from its converted float folder (converted tensor by tensor, once, and cached)."""
    if stream is False or out is None or source is None:
        return None
    folder = float_folder(source)
    if folder is not None and can_stream(folder):
        return folder
    if stream:
        raise ConfigError(f"{source.label} cannot be quantized streaming (it needs safetensors weights and "
                          "Linear layers); leave streaming off (--in-memory)")
    return None


def _quantize_streaming(folder: Path, out: Path, cfg: QuantConfig, tokenizer, calib_set: CalibrationSet,
                        identity: dict, source: ModelSource, compute: Compute, start: float, force: bool,
                        max_shard_size, activation_budget, device: str) -> QuantizeResult:
    """Stream-quantize into a staging folder beside `out`, then publish it (nothing half-written)."""
    with files.staging_dir(out) as tmp, tempfile.TemporaryDirectory(dir=out.parent, prefix=".awqguard-spill-") as spill:
        writer = ShardWriter(tmp, parse_size(max_shard_size))
        activations = Activations(parse_size(activation_budget, "activation budget"), Path(spill))
        model, report = stream_quantize(folder, calib_set.samples, cfg, compute, writer.add, to_checkpoint,
                                        activations)
        writer.close()
        record = _record(identity, source, report, cfg, calib_set, compute, start, streamed=True)
        publish_checkpoint(tmp, out, model, tokenizer, cfg, record, force)
    return QuantizeResult(None, tokenizer, record, out, device=device)


def _resolve_model(model: str | Path | nn.Module | None,
                   tokenizer: Any) -> tuple[ModelSource | None, str, nn.Module | None, Any]:
    """(source, fingerprint, in-memory model or None, tokenizer). A named model is only fingerprinted
    here: loading it waits until we know the output folder does not already hold the checkpoint."""
    if isinstance(model, nn.Module):
        if tokenizer is None:
            raise ConfigError("quantize(model=<nn.Module>) also needs tokenizer=...")
        return None, _module_fingerprint(model), model, tokenizer
    source = resolve_model(model)
    return source, fingerprint(source), None, tokenizer or load_tokenizer(source)


def _record(identity: dict, source: ModelSource | None, report: QuantReport, cfg: QuantConfig,
            calib_set: CalibrationSet, compute: Compute, start: float, streamed: bool) -> dict:
    """awqguard.json: how the checkpoint was made (docs/architecture.md §5)."""
    return {
        "format": RECORD_FORMAT,
        "awqguard_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "identity": identity,
        "model": {"source": source.label if source else "<in-memory module>", "fingerprint": identity["model"],
                  "model_type": report.model_type},
        "config": cfg.to_dict(),
        "fake_quantized": not cfg.packed,
        "streamed": streamed,
        "calibration": calib_set.describe(),
        "quantization": report.to_dict(),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device": ", ".join(str(d) for d in compute.devices),
                        "compute_dtype": str(compute.dtype).removeprefix("torch."),
                        "threads": torch.get_num_threads()},
    }


def _module_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]
