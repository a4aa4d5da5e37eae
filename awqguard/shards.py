"""Sharded safetensors, in transformers' layout: written tensor by tensor, read lazily.

One shard is `model.safetensors`; more are `model-00001-of-0000N.safetensors` with
`model.safetensors.index.json` ({"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}),
the layout transformers, AutoAWQ and vLLM read. The writer does not know N until the last tensor,
so it writes numbered parts and renames them when it closes; it only ever writes inside a staging
folder (checkpoint.py), so a failed run leaves no shard behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from awqguard import files
from awqguard.errors import ConfigError, ModelLoadError

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD = "5GB"                 # transformers' default for save_pretrained
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int, what: str = "max shard size") -> int:
    """Bytes from "5GB", "500MB", "2GiB" or a plain number (decimal units, as transformers reads them);
    `what` names the setting in the error."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(text).upper())
        if not match or match.group(2) not in _UNITS:
            raise ConfigError(f"{what} {text!r} is not a size; write it like 5GB, 500MB or 2GiB")
        size = int(float(match.group(1)) * _UNITS[match.group(2)])
    if size <= 0:
        raise ConfigError(f"{what} {text!r} must be more than 0 bytes")
    return size


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}


class _ShardFile:
    """One safetensors file written tensor by tensor: each tensor's bytes go to a side file at once
    and only its name, dtype, shape and offsets stay in memory; `finish` writes the header and
    copies the bytes after it. (safetensors' own writer needs every tensor of a file in memory.)"""

    def __init__(self, path: Path):
        self.path, self.blob = path, path.with_suffix(".data")
        self._data = self.blob.open("wb")
        self.header: dict[str, dict] = {}
        self.size = 0

    def add(self, name: str, t: torch.Tensor) -> None:
        t = t.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        self._data.write(raw)
        self.header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                             "data_offsets": [self.size, self.size + len(raw)]}
        self.size += len(raw)

    def finish(self) -> None:
        import json
        import shutil
        self._data.close()
        header = json.dumps({"__metadata__": {"format": "pt"}, **self.header}, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)                  # the data starts 8-byte aligned
        with self.path.open("wb") as out, self.blob.open("rb") as data:
            out.write(len(header).to_bytes(8, "little"))
            out.write(header)
            shutil.copyfileobj(data, out, 16 * 2**20)
        self.blob.unlink()


class ShardWriter:
    """Writes tensors in order into shards of at most `max_bytes` (a tensor larger than that gets a
    shard of its own), each tensor to disk as it arrives, so memory holds none of them."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self._parts: list[_ShardFile] = []
        self.total_bytes = 0

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            size = tensor_bytes(t)
            current = self._parts[-1] if self._parts else None
            if current is None or (current.header and current.size + size > self.max_bytes):
                current = _ShardFile(self.folder / f".part-{len(self._parts):05d}.safetensors")
                self._parts.append(current)
            current.add(name, t)
            self.total_bytes += size

    def close(self) -> list[str]:
        """Finish every shard, give them their final names (and the index when there are several);
        returns the shard file names."""
        for part in self._parts:
            part.finish()
        if len(self._parts) <= 1:
            if self._parts:
                self._parts[0].path.rename(self.folder / WEIGHTS_FILE)
            return [WEIGHTS_FILE] if self._parts else []
        n = len(self._parts)
        weight_map, names = {}, []
        for i, part in enumerate(self._parts, start=1):
            name = f"model-{i:05d}-of-{n:05d}.safetensors"
            part.path.rename(self.folder / name)
            weight_map.update({t: name for t in part.header})
            names.append(name)
        files.write_json(self.folder / INDEX_FILE, {"metadata": {"total_size": self.total_bytes},
                                                    "weight_map": dict(sorted(weight_map.items()))}, indent=2)
        return names


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint: those its index names, else model.safetensors, else
    every *.safetensors in the folder. A shard the index names but the folder lacks is an error."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.exists():
        try:
            value = files.loads(files.read_text(index, ModelLoadError))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {index}: {exc}") from None
        weight_map = value.get("weight_map") if isinstance(value, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no weight_map of tensor names to shard files")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ModelLoadError(f"{index} names shards that are not in {folder}: {', '.join(missing[:3])}"
                                 f"{' …' if len(missing) > 3 else ''} (an incomplete download or copy?)")
        return [folder / s for s in shards]
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        raise ModelLoadError(f"{folder} holds no .safetensors file")
    return found


def has_weights(folder: Path) -> bool:
    try:
        return bool(weight_files(folder))
    except ModelLoadError:
        return False


class LazyTensors:
    """Tensor name -> tensor, read from memory-mapped shards only when asked for, so a model larger
    than RAM can be walked one block at a time. Each read maps its files and unmaps them when done,
    so the pages it touched do not stay in the process's resident memory."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._where: dict[str, Path] = {}
        for f in weight_files(self.folder):
            try:
                with safe_open(str(f), framework="pt") as handle:
                    self._where.update({k: f for k in handle.keys()})
            except (SafetensorError, OSError) as exc:
                raise ModelLoadError(f"{f} is unreadable or truncated: {exc}") from None

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The named tensors (copies, not views of the mapping), grouped by shard."""
        by_file: dict[Path, list[str]] = {}
        for name in names:
            by_file.setdefault(self._where[name], []).append(name)
        out = {}
        for f, group in by_file.items():
            try:
                with safe_open(str(f), framework="pt") as handle:
                    out.update({name: handle.get_tensor(name).clone() for name in group})
            except (SafetensorError, OSError, RuntimeError) as exc:
                raise ModelLoadError(f"{f}: a tensor of {group[0].rsplit('.', 1)[0]} is unreadable or "
                                     f"truncated: {exc}") from None
        return {name: out[name] for name in names}

    def get(self, name: str) -> torch.Tensor:
        return self.read([name])[name]


def load_all(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, sharded or not, ours or AutoAWQ's."""
    tensors = LazyTensors(folder)
    return tensors.read(tensors.keys())
