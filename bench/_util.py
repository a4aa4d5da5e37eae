"""Shared helpers for benchmark scripts: timing, peak memory, JSON output."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

import psutil


@contextmanager
def measure():
    """Yields a dict that receives wall seconds and peak RSS (GiB) of this process over the block."""
    proc = psutil.Process(os.getpid())
    result = {"rss_before_gib": proc.memory_info().rss / 2**30}
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = round(time.perf_counter() - start, 2)
        stop.set()
        thread.join()
        result["peak_rss_gib"] = round(max(peak[0], proc.memory_info().rss) / 2**30, 3)
        result["rss_before_gib"] = round(result["rss_before_gib"], 3)


def emit(payload: dict) -> None:
    """Strict JSON on stdout: a value that came out NaN (a broken candidate) is printed as null."""
    from awqguard.files import dumps
    sys.stdout.write(dumps(payload, indent=2) + "\n")


def versions() -> dict:
    """The versions and thread count a quantization benchmark's numbers depend on."""
    import platform

    import torch

    from awqguard import __version__
    return {"awqguard": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


def emit_with_targets(payload: dict) -> int:
    """Print the payload; exit status 0 when every entry of payload["targets"] holds, else 1."""
    emit(payload)
    return 0 if all(payload["targets"].values()) else 1
