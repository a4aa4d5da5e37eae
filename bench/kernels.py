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
from _util import emit_with_targets  # noqa: E402

from awqguard.doctor import machine_facts  # noqa: E402
from awqguard.kernels.paths import available_paths, default_path  # noqa: E402
from awqguard.kernels.wqlinear import AWQLinear, set_kernel_path  # noqa: E402
from awqguard.models import load_reference  # noqa: E402
from awqguard.quantizer.damage import rtn_packed  # noqa: E402
from awqguard.quantizer.mappings import find_blocks, resolve_architecture  # noqa: E402

TARGET_RATIO = 1.5


def linear_weight_bytes(model) -> int:
    """Bytes held by the decoder blocks' linear layers (the ones AWQ replaces), caches included."""
    _, arch = resolve_architecture(model)
    _, blocks = find_blocks(model, arch)
    total = 0
    for m in blocks.modules():
        if isinstance(m, AWQLinear):
            total += sum(t.numel() * t.element_size() for t in (m.qweight, m.qzeros, m.scales))
            total += sum(t.numel() * t.element_size() for t in m._cache.values())
        elif isinstance(m, torch.nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total


@torch.no_grad()
def interleaved_medians(variants: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms per variant for decode and 512-token prefill, measured round-robin so that the
    machine's drift (turbo, other load) hits every variant alike."""
    from transformers import DynamicCache

    from awqguard.hf_compat import cache_kwargs
    prompt = torch.randint(100, 40000, (1, 128), generator=torch.Generator().manual_seed(0))
    prefill_ids = torch.randint(100, 40000, (1, 512), generator=torch.Generator().manual_seed(1))
    caches = {}
    for name, model in variants.items():
        caches[name] = DynamicCache()
        model(input_ids=prompt, use_cache=True, **cache_kwargs(caches[name]))

    def decode(name):
        variants[name](input_ids=prompt[:, :1], use_cache=True, **cache_kwargs(copy.deepcopy(caches[name])))

    def prefill(name):
        variants[name](input_ids=prefill_ids, use_cache=False)

    times: dict[str, dict[str, list[float]]] = {n: {"decode_ms": [], "prefill512_ms": []} for n in variants}
    for kind, fn, rounds in (("decode_ms", decode, repeats), ("prefill512_ms", prefill, max(5, repeats // 2))):
        for name in variants:
            fn(name)                                            # warm-up (builds kernel caches)
        for _ in range(rounds):
            for name in variants:
                start = time.perf_counter()
                fn(name)
                times[name][kind].append((time.perf_counter() - start) * 1e3)
    return {n: {k: round(statistics.median(v), 3) for k, v in t.items()} for n, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    reference, _, source = load_reference()
    awq = rtn_packed(reference, 64)   # round-to-nearest AWQLinear layers: speed only
    variants, counts = {"float": reference}, {}
    for path, ok in available_paths().items():
        if ok and path != "cuda-int4":
            variants[path] = copy.deepcopy(awq)
            counts[path] = set_kernel_path(variants[path], path)
    slow = {k: v for k, v in variants.items() if k == "reference"}     # seconds per call: fewer rounds
    fast = {k: v for k, v in variants.items() if k != "reference"}
    medians = interleaved_medians(fast, args.repeats)
    medians.update(interleaved_medians(slow, 3))     # the reference path is ~10x slower: 3 rounds
    results = {}
    for name, model in variants.items():
        r = dict(medians[name], linear_weight_mib=round(linear_weight_bytes(model) / 2**20, 2))
        if name != "float":
            r["layers_on_path"] = counts[name]
            r["decode_vs_float"] = round(r["decode_ms"] / medians["float"]["decode_ms"], 3)
            r["prefill_vs_float"] = round(r["prefill512_ms"] / medians["float"]["prefill512_ms"], 3)
        results[name] = r
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
    return emit_with_targets(payload)


if __name__ == "__main__":
    sys.exit(main())
