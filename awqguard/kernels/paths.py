"""Compute paths for AWQLinear, declared as data: what each needs, and whether this machine has it.

reference   unpack -> dequantize -> matmul on every call; the ground truth in tests.
dequant     dequantize once into a float weight cache, then F.linear; the fast default on CPU.
int4pack    keeps weights packed (torch's int4 CPU kernel, bf16 activations); saves memory.
cuda-int4   torch's int4 tinygemm kernel on CUDA (bf16), used when CUDA is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KernelPath:
    name: str
    device: str          # "cpu", "cuda" or "any"
    keeps_packed: bool   # memory stays ~4 bits per weight
    description: str


PATHS = {
    p.name: p
    for p in (
        KernelPath("reference", "any", True, "unpack, dequantize, matmul each call (ground truth)"),
        KernelPath("dequant", "any", False, "dequantize once, float matmul (fast, float-sized memory)"),
        KernelPath("int4pack", "cpu", True, "torch int4 CPU kernel on packed weights, bf16 activations"),
        KernelPath("cuda-int4", "cuda", True, "torch int4 tinygemm kernel on CUDA, bf16 activations"),
    )
}


def int4_cpu_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def cuda_int4_available() -> bool:
    if not torch.cuda.is_available() or not hasattr(torch.ops.aten, "_weight_int4pack_mm"):
        return False
    major, _ = torch.cuda.get_device_capability()
    return major >= 8   # tinygemm needs Ampere or newer


def available_paths() -> dict[str, bool]:
    return {
        "reference": True,
        "dequant": True,
        "int4pack": int4_cpu_available(),
        "cuda-int4": cuda_int4_available(),
    }


def default_path(device: torch.device | str) -> str:
    """The path load_quantized picks for a device when the user names none."""
    if torch.device(device).type == "cuda":
        return "cuda-int4" if cuda_int4_available() else "dequant"
    return "dequant"
