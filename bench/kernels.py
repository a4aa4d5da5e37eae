"""AWQLinear compute paths against the float model on SmolLM2-135M-Instruct, on this machine.

Prints JSON: median forward time of the whole model at batch-1 decode (one new token after a
128-token KV cache) and at a 512-token prefill, for the float reference and for each AWQ path;
the ratio to float; and the bytes the linear layers' weights occupy on each path. Target (issue 2):
the default CPU path ('dequant') is at most 1.5x the float forward. The packed paths' speed is
reported as measured, whatever it is.

    python bench/kernels.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import emit  # noqa: E402

from awqguard.doctor import machine_facts  # noqa: E402
from awqguard.kernels.paths import available_paths, default_path  # noqa: E402
from awqguard.kernels.wqlinear import AWQLinear, set_kernel_path  # noqa: E402
from awqguard.models import load_reference  # noqa: E402
from awqguard.quantizer.awq import block_linears  # noqa: E402
from awqguard.quantizer.config import QuantConfig  # noqa: E402
from awqguard.quantizer.mappings import find_blocks, resolve_architecture  # noqa: E402
from awqguard.quantizer.rounding import quantize  # noqa: E402

TARGET_RATIO = 1.5


def packed_copy(model, group_size: int):
    """The model with every block linear replaced by an AWQLinear (round-to-nearest: speed only)."""
    model = copy.deepcopy(model)
    _, arch = resolve_architecture(model)
    name, blocks = find_blocks(model, arch)
    for i, block in enumerate(blocks):
        for lname, lin in block_linears(block, f"{name}.{i}", QuantConfig(group_size=group_size)).items():
            parent, _, child = lname.rpartition(".")
            setattr(block.get_submodule(parent), child, AWQLinear.from_quantized(
                quantize(lin.weight.detach(), 4, group_size), lin.bias))
    return model


def linear_weight_bytes(model) -> int:
    total = 0
    for m in model.modules():
        if isinstance(m, AWQLinear):
            total += sum(t.numel() * t.element_size() for t in (m.qweight, m.qzeros, m.scales))
            total += sum(t.numel() * t.element_size() for t in m._cache.values())
        elif isinstance(m, torch.nn.Linear) and m.weight.shape[0] != 49152:    # lm_head stays float
            total += m.weight.numel() * m.weight.element_size()
    return total


@torch.no_grad()
def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


@torch.no_grad()
def timings(model, repeats: int) -> dict:
    from transformers import DynamicCache
    prompt = torch.randint(100, 40000, (1, 128), generator=torch.Generator().manual_seed(0))
    cache = DynamicCache()
    model(input_ids=prompt, past_key_values=cache, use_cache=True)

    def decode():
        c = copy.deepcopy(cache)
        model(input_ids=prompt[:, :1], past_key_values=c, use_cache=True)

    prefill_ids = torch.randint(100, 40000, (1, 512), generator=torch.Generator().manual_seed(1))
    return {"decode_ms": median_ms(decode, repeats),
            "prefill512_ms": median_ms(lambda: model(input_ids=prefill_ids, use_cache=False), max(3, repeats // 4)),
            "linear_weight_mib": round(linear_weight_bytes(model) / 2**20, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    reference, _, source = load_reference()
    results = {"float": timings(reference, args.repeats)}
    awq = packed_copy(reference, 64)
    for path, ok in available_paths().items():
        if not ok or path == "cuda-int4":
            continue
        counts = set_kernel_path(awq, path)
        r = timings(awq, args.repeats if path != "reference" else 3)
        r["layers_on_path"] = counts
        r["decode_vs_float"] = round(r["decode_ms"] / results["float"]["decode_ms"], 3)
        r["prefill_vs_float"] = round(r["prefill512_ms"] / results["float"]["prefill512_ms"], 3)
        results[path] = r
    default = default_path("cpu")
    payload = {
        "benchmark": "kernels", "model": source.label, "group_size": 64, "results": results,
        "default_cpu_path": default,
        "targets": {f"{default}_decode<=1.5x_float": results[default]["decode_vs_float"] <= TARGET_RATIO,
                    f"{default}_prefill<=1.5x_float": results[default]["prefill_vs_float"] <= TARGET_RATIO,
                    "packed_path_exists": any(k in results for k in ("int4pack", "reference"))},
        "gpu": "not measured: this machine has no CUDA device" if not torch.cuda.is_available() else "see cuda-int4",
        "environment": machine_facts(),
    }
    emit(payload)
    return 0 if all(payload["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
