"""Files as awqguard reads and writes them.

- Text is UTF-8; a file that is not gets an error naming it and the first bad byte.
- JSON is strict both ways: NaN and Infinity are never written (they become null) and never read.
- Writes are atomic. A file or folder is staged beside its target as `.NAME.partial-PID-HEX` and
  renamed into place, so readers see the old version or the whole new one. A staging entry whose
  process died (SIGKILL, power loss) is removed by the next write into the same folder.
- Output locations are checked before any work, so a bad `--out` fails in a second, not after an
  hour of quantization.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from awqguard.errors import AwqguardError, ConfigError

_STARTED = time.time()
_STAGING = re.compile(r"^\..+\.(?:partial|old)-(\d+)-[0-9a-f]{8}$")


# ---- reading ----------------------------------------------------------------------------------------

def read_text(path: str | Path, error: type[AwqguardError] = AwqguardError) -> str:
    """The file's text; raises `error` naming the file and the first byte that is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (awqguard writes null for a value it could not measure)")


def loads(text: str) -> Any:
    """JSON that refuses NaN, Infinity and -Infinity (Python's json accepts them by default)."""
    return json.loads(text, parse_constant=_refuse_constant)


# ---- strict JSON ------------------------------------------------------------------------------------

def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """Strict JSON text: non-finite floats become null rather than the invalid literal NaN."""
    return json.dumps(finite(value), indent=indent, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False)


# ---- atomic writes ----------------------------------------------------------------------------------

def _staging_name(target: Path, kind: str = "partial") -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove staging entries left in `folder` by processes that died before this one started."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _STAGING.match(entry.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            if entry.lstat().st_mtime >= _STARTED:
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a staging sibling and rename: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = _staging_name(path)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any, indent: int | None = None, sort_keys: bool = False) -> Path:
    return write_bytes(path, dumps(value, indent, sort_keys).encode("utf-8"))


@contextmanager
def staging_dir(target: str | Path) -> Iterator[Path]:
    """A fresh staging folder beside `target`, removed if the block fails or the folder is not published."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent)
    tmp = _staging_name(target)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)       # a no-op once published


def publish_dir(staging: Path, target: Path, replace: bool = False) -> bool:
    """Rename a finished staging folder to `target`. True if it landed. With `replace` False and a
    non-empty `target` already there (another process finished first), nothing moves: False."""
    if replace and target.exists():
        old = _staging_name(target, "old")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        staging.rename(target)                       # replaces an empty folder, never a full one
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


# ---- output locations -------------------------------------------------------------------------------

def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def check_writable(path: str | Path, option: str, kind: str = "folder") -> Path:
    """Raise ConfigError unless `path` can be written as a `kind` ("folder" or "file"); creates nothing.

    Checked before any work: a file where a folder is needed, a path under a file, or a place this
    user cannot write into.
    """
    path = Path(path).expanduser()
    if path.exists() and kind == "folder" and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a folder (it will be created if missing)")
    if path.is_dir() and kind == "file":
        raise ConfigError(f"{option} {path} is a folder; give a file name such as {path / 'report.html'}")
    base = path if path.is_dir() else _existing_ancestor(path.parent)
    if not base.is_dir():
        raise ConfigError(f"{option} {path}: {base} is a file, so nothing can be created under it")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".awqguard-write-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write in {base} ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    return path
