"""`awqguard doctor`: what this machine offers the kernels, found without loading any kernel."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess

import torch

from awqguard.kernels.paths import PATHS, available_paths, default_path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_facts() -> dict:
    cuda = torch.cuda.is_available()
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_runtime": torch.version.cuda,
        "nvidia_driver": _nvidia_driver(),
        "gpu": None,
        "compute_capability": None,
        "triton": _version("triton") if importlib.util.find_spec("triton") else None,
    }
    if cuda:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    return facts


def kernel_report() -> dict:
    avail = available_paths()
    return {
        "paths": {name: {"available": avail[name], "keeps_packed": p.keeps_packed, "what": p.description}
                  for name, p in PATHS.items()},
        "default_cpu": default_path("cpu"),
        "default_cuda": default_path("cuda") if torch.cuda.is_available() else None,
        "memory_saving_cpu": "int4pack" if avail["int4pack"] else "reference",
    }
