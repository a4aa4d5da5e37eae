"""awqguard.files: UTF-8 reads, strict JSON, atomic files and folders, stale staging, output checks."""

import json
import os
import subprocess
import sys

import pytest

from awqguard import files
from awqguard.errors import AwqguardError, ConfigError


def test_read_text_names_the_file_and_the_first_bad_byte(tmp_path):
    path = tmp_path / "doc.md"
    path.write_bytes("# Title\n\ncaf".encode() + b"\xe9\n")
    with pytest.raises(AwqguardError, match=r"doc\.md is not UTF-8 text \(byte 0xe9 at offset 12\)"):
        files.read_text(path)
    with pytest.raises(ConfigError):
        files.read_text(path, ConfigError)


def test_json_is_strict_both_ways(tmp_path):
    text = files.dumps({"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": {"d": 2}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"a": None, "b": [1.5, None, None], "c": {"d": 2}}
    for literal in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="not a JSON number"):
            files.loads(f'{{"x": {literal}}}')


def test_write_bytes_replaces_atomically_and_leaves_no_staging(tmp_path):
    path = tmp_path / "sub" / "out.json"
    files.write_json(path, {"v": 1})
    files.write_json(path, {"v": 2})
    assert files.loads(path.read_text()) == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_staging_left_by_a_killed_process_is_cleaned_on_the_next_write(tmp_path):
    dead = _dead_pid()
    stale_dir = tmp_path / f".ckpt.partial-{dead}-0123abcd"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"half")
    stale_file = tmp_path / f".results.json.partial-{dead}-89abcdef"
    stale_file.write_text("{")
    live = tmp_path / f".other.partial-{os.getppid()}-00000000"       # a running process's staging stays
    live.mkdir()
    old = files._STARTED - 60                 # older than this process
    for p in (stale_dir, stale_file, live):
        os.utime(p, (old, old))
    files.write_text(tmp_path / "results.json", "{}")
    assert not stale_dir.exists() and not stale_file.exists()
    assert live.exists()


def test_a_killed_save_leaves_nothing_the_next_save_does_not_clean(tmp_path):
    """SIGKILL in the middle of a folder save: the staging folder stays, the target never appears."""
    target = tmp_path / "ckpt"
    code = ("import os, signal, sys; from awqguard import files\n"
            f"with files.staging_dir(__import__('pathlib').Path({str(target)!r})) as tmp:\n"
            "    (tmp / 'model.safetensors').write_bytes(b'x' * 1000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    left = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert len(left) == 1 and not target.exists()
    old = files._STARTED - 60                 # left before this process started (pytest started long ago)
    os.utime(left[0], (old, old))
    with files.staging_dir(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"y")
        assert files.publish_dir(tmp, target)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_publish_dir_keeps_what_another_process_published_first(tmp_path):
    target = tmp_path / "entry"
    with files.staging_dir(target) as first:
        (first / "a").write_text("first")
        assert files.publish_dir(first, target)
    with files.staging_dir(target) as second:
        (second / "a").write_text("second")
        assert not files.publish_dir(second, target)
    assert (target / "a").read_text() == "first"
    with files.staging_dir(target) as third:
        (third / "a").write_text("third")
        assert files.publish_dir(third, target, replace=True)
    assert (target / "a").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_check_writable_refuses_what_cannot_be_written_and_creates_nothing(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a folder"):
        files.check_writable(a_file, "--out")
    with pytest.raises(ConfigError, match="file.txt is a file, so nothing can be created under it"):
        files.check_writable(a_file / "deeper" / "out", "--out")
    with pytest.raises(ConfigError, match="is a folder; give a file name"):
        files.check_writable(tmp_path, "-o", kind="file")
    with pytest.raises(ConfigError, match="cannot write in /proc"):
        files.check_writable("/proc/awqguard-out/x", "--out")
    assert files.check_writable(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
