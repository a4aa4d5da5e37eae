"""The `.awqguard/` cache (DESIGN.md §9): keyed by everything that can change a score, written atomically.

Its root is `$AWQGUARD_CACHE` when set, else `.awqguard/` in the working directory. A key is a
hash of a JSON-serialisable description (model fingerprints, configs, fixture hash, seeds, awqguard
version), so a changed input is a miss, never a stale hit. Files appear complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import awqguard

ENV_VAR = "AWQGUARD_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(ENV_VAR) or ".awqguard")


def cache_key(description: dict[str, Any]) -> str:
    """A short stable hash of `description` plus the awqguard version."""
    blob = json.dumps({**description, "awqguard": awqguard.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def entry(kind: str, key: str, suffix: str = "") -> Path:
    """Where a cache entry of `kind` ("runs", "index", "candidates", ...) with `key` lives."""
    return cache_root() / kind / f"{key}{suffix}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary sibling and rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, ensure_ascii=False).encode("utf-8"))


def read_json(path: Path) -> Any | None:
    """The cached value, or None when missing or unreadable (a damaged entry is a miss)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
