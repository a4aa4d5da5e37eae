"""The `.awqguard/` cache (docs/architecture.md §12): keyed by everything that can change a score, written atomically.

Its root is `$AWQGUARD_CACHE` when set, else `.awqguard/` in the working directory. A key is a
hash of a JSON-serialisable description (model fingerprints, configs, fixture hash, seeds, awqguard
version), so a changed input is a miss, never a stale hit. Files appear complete or not at all
(awqguard.files), and an entry being computed is locked, so parallel jobs compute it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from awqguard.version import __version__
from awqguard import files

ENV_VAR = "AWQGUARD_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(ENV_VAR) or ".awqguard")


def cache_key(description: dict[str, Any]) -> str:
    """A short stable hash of `description` plus the awqguard version."""
    blob = json.dumps({**description, "awqguard": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def entry(kind: str, key: str, suffix: str = "") -> Path:
    """Where a cache entry of `kind` ("runs", "index", "candidates", ...) with `key` lives."""
    return cache_root() / kind / f"{key}{suffix}"


@contextmanager
def lock(target: Path) -> Iterator[None]:
    """Hold the lock of one cache entry while it is computed: a second process (a parallel CI job)
    computing the same key waits, then finds the entry and reuses it instead of racing to write it."""
    from filelock import FileLock
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield


def read_json(path: Path) -> Any | None:
    """The cached value, or None when missing or unreadable (a damaged entry is a miss)."""
    try:
        return files.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
