"""Release evidence: sha256 digests that bind a results.json to the exact files it judged.

`awqguard check` records the digests of every file of the candidate, the reference and the suite,
and of the effective configuration. `awqguard verify` recomputes them for what is about to ship,
so a deploy step proves that the checkpoint it ships is the one whose gates passed. Digests are not
signatures: anyone who can rewrite results.json can rewrite its digests too, so keep results.json
where the CI system keeps its artifacts (signing it is a job for the CI's own signing tools).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

EVIDENCE_VERSION = 1


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file, remembered per (path, size, mtime) within a process."""
    st = path.stat()
    return _file_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _listed(path: Path) -> list[Path]:
    """The files that make up a model or suite: the file itself, or every file under the folder
    except hidden ones (staging folders, locks)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def digests(path: str | Path) -> dict[str, str]:
    """{name relative to `path`: sha256} for a file or folder."""
    path = Path(path)
    base = path.parent if path.is_file() else path
    return {str(p.relative_to(base)): file_sha256(p) for p in _listed(path)}


def config_sha256(config: dict) -> str:
    """sha256 of the effective configuration as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def describe(path: str | Path | None) -> dict[str, Any]:
    """What a check records about one input: its path and its files' digests (None when in memory)."""
    if path is None or not Path(path).exists():
        return {"path": None, "files": None}
    return {"path": str(path), "files": digests(path)}


def compare(recorded: dict[str, str], path: Path, what: str) -> list[str]:
    """Each difference between the recorded digests and the files at `path`, named."""
    if not path.exists():
        return [f"{what} {path} does not exist"]
    now = digests(path)
    problems = [f"{what}: {name} is missing from {path}" for name in sorted(set(recorded) - set(now))]
    problems += [f"{what}: {name} differs from the file that was checked (sha256 {now[name][:12]}…, "
                 f"checked {recorded[name][:12]}…)" for name in sorted(set(recorded) & set(now))
                 if recorded[name] != now[name]]
    problems += [f"{what}: {path / name} was not part of the checked files" for name in sorted(set(now) - set(recorded))]
    return problems


def verify(results: dict, results_path: Path, paths: dict[str, Path | None]) -> None:
    """Raise ConfigError naming every difference between the recorded digests and `paths`
    ({"candidate": ..., "reference": ..., "suite": ...}; None skips one)."""
    from awqguard.errors import ConfigError
    recorded = results.get("evidence")
    if not isinstance(recorded, dict) or recorded.get("version") != EVIDENCE_VERSION:
        raise ConfigError(f"{results_path} carries no release evidence (written by an older awqguard?); "
                          "run awqguard check again")
    problems: list[str] = []
    for what, path in paths.items():
        if path is None:
            continue
        files = (recorded.get(what) or {}).get("files")
        if not isinstance(files, dict):
            raise ConfigError(f"{results_path}: the {what} was checked from memory, not from files; "
                              "there is nothing to verify it against")
        problems += compare(files, Path(path), what)
    if problems:
        raise ConfigError("not the files that were checked:\n  - " + "\n  - ".join(problems))
