"""`quantize(...)`: the one way in. Accepts AutoAWQ's keyword names so its users switch easily."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from awqguard.version import __version__
from awqguard import files
from awqguard.errors import ConfigError
from awqguard.files import check_writable
from awqguard.models import ModelSource, fingerprint, load_model, load_tokenizer, resolve_device, resolve_model
from awqguard.quantizer.awq import QuantReport, quantize_model
from awqguard.quantizer.calibration import CalibrationSet, build_samples, gather_texts
from awqguard.quantizer.checkpoint import (RECORD_FILE, check_output_folder, load_quantized,
                                           round_to_checkpoint_precision, save_checkpoint)
from awqguard.quantizer.config import QuantConfig, coerce_config
from awqguard.quantizer.shards import DEFAULT_MAX_SHARD, parse_size

RECORD_FORMAT = 1


@dataclass
class QuantizeResult:
    model: nn.Module
    tokenizer: Any
    record: dict
    path: Path | None = None
    reused: bool = False


def quantize(
    model: str | Path | nn.Module | None = None,
    out: str | Path | None = None,
    config: QuantConfig | Mapping[str, Any] | None = None,
    *,
    tokenizer: Any = None,
    calib: str | Path | Sequence[str | Path] | None = None,
    calib_data: str | Path | Sequence[str | Path] | None = None,   # AutoAWQ's name
    device: str = "auto",
    force: bool = False,
    max_shard_size: str | int = DEFAULT_MAX_SHARD,
    quant_config: Mapping[str, Any] | None = None,                 # AutoAWQ's name
    **options: Any,
) -> QuantizeResult:
    """Quantize `model` (default: SmolLM2-135M-Instruct) with AWQ; save to `out` when given.

    `options` are QuantConfig fields or AutoAWQ's names (max_calib_samples, max_calib_seq_len,
    duo_scaling, apply_clip, n_grid, q_group_size, ...). When `out` already holds the same
    checkpoint (same model, config and calibration), it is loaded instead of recomputed. Weights
    are written in shards of at most `max_shard_size` ("5GB", "500MB", bytes), as transformers does.
    """
    start = time.perf_counter()
    cfg = coerce_config(config if config is not None else quant_config)
    cfg = cfg.replace(**{k: v for k, v in options.items() if v is not None}) if options else cfg
    dev = resolve_device(device)
    if out is not None:
        check_writable(out, "out")                        # before any work, not after it
        parse_size(max_shard_size)
    calib = calib if calib is not None else calib_data
    source, model_fp, float_model, tokenizer = _resolve_model(model, tokenizer)

    texts, labels = gather_texts(calib)
    calib_set = build_samples(texts, tokenizer, cfg.n_samples, cfg.seqlen, cfg.seed, labels, cfg.n_samples_unit)
    identity = {"model": model_fp, "config": cfg.to_dict(), "calibration": calib_set.fingerprint,
                "awqguard": __version__}
    if out is not None and check_output_folder(Path(out), identity, force):
        record = files.loads(files.read_text(Path(out) / RECORD_FILE))
        return QuantizeResult(load_quantized(out, device), tokenizer, record, Path(out), reused=True)

    if float_model is None:
        float_model = load_model(source, torch.float32)
    report = quantize_model(float_model, calib_set.samples, cfg, dev)
    round_to_checkpoint_precision(float_model)
    record = _record(identity, source, report, cfg, calib_set, dev, start)
    path = save_checkpoint(float_model, tokenizer, Path(out), cfg, record, force, max_shard_size) if out is not None else None
    return QuantizeResult(float_model, tokenizer, record, path)


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
            calib_set: CalibrationSet, dev: torch.device, start: float) -> dict:
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
        "calibration": calib_set.describe(),
        "quantization": report.to_dict(),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device": str(dev), "threads": torch.get_num_threads()},
    }


def _module_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]
