"""Does quantization memory depend on one block, not on depth? Random Llama models of one width.

Builds random-weight Llama models (hidden 1024, intermediate 4096, 16 heads, 4 KV heads, the default
tokenizer's 49,152-token vocabulary) with 8, 16 and 32 layers, saved as fp16 safetensors in 200 MB
shards, and quantizes each (w4 g64) in a fresh process, streaming (the default) and, as the
same-run baseline, in memory (--in-memory). Prints JSON: peak RSS and wall time per model and mode,
the 32-to-8-layer peak ratio of each mode, and the default model's (SmolLM2-135M) quantization time
with the default calibration (skip with --skip-default).

Targets: streaming peak RSS at 32 layers within 1.3x of 8 layers; the default model in <= 300 s.
The random models use a smaller calibration and search than the default (32 x 256 tokens, 1,024
loss tokens, 128 clip tokens) and the in-memory baseline runs only at the shallowest and deepest
model, so that the bench fits in about half an hour on two cores; memory, not quality, is measured.

    python bench/quantize_scale.py                       # 8, 16, 32 layers, both modes, + default model
    python bench/quantize_scale.py --layers 8,32 --modes streamed --skip-default
    python bench/quantize_scale.py --layers none         # only the default model's time
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import emit_with_targets, versions  # noqa: E402

from awqguard.quantizer.config import MATMUL_DTYPES, QuantConfig  # noqa: E402

WIDTH = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_key_value_heads": 4}
MODES = ("streamed", "in-memory")

# run in a fresh interpreter, so that its peak RSS is its own: quantize, then report. The peak is
# VmHWM, the high-water mark of this process's own memory: getrusage's ru_maxrss survives fork and
# exec, so a child of a bench that has just built a 1 GB model would report the parent's peak.
CHILD = """
import json, sys, time
from awqguard import QuantConfig, quantize

def peak_gib():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 2**20

args = json.loads(sys.argv[1])
start = time.perf_counter()
result = quantize(args["model"], out=args["out"], config=QuantConfig(**args["config"]), stream=args["stream"],
                  max_shard_size="500MB")
print(json.dumps({"seconds": round(time.perf_counter() - start, 1),
                  "quantize_seconds": result.record["quantization"]["seconds"],
                  "peak_rss_gib": round(peak_gib(), 3),
                  "streamed": result.record["streamed"],
                  "shards": len([p for p in __import__("pathlib").Path(args["out"]).glob("model*.safetensors")])}))
"""


def build_model(layers: int, folder: Path) -> float:
    """A random Llama with `layers` layers saved to `folder` (fp16, sharded); returns its size in GiB."""
    import torch
    import transformers as tf

    from awqguard.models import load_tokenizer, resolve_model
    tokenizer = load_tokenizer(resolve_model(None))
    config = tf.LlamaConfig(vocab_size=len(tokenizer), num_hidden_layers=layers, max_position_embeddings=2048,
                            tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, **WIDTH)
    torch.manual_seed(layers)
    model = tf.LlamaForCausalLM(config).to(torch.float16)
    model.save_pretrained(str(folder), max_shard_size="200MB")
    tokenizer.save_pretrained(str(folder))
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**30
    del model
    return round(size, 3)


def run_child(model: str, out: Path, config: dict, stream: bool) -> dict:
    args = json.dumps({"model": model, "out": str(out), "config": config, "stream": stream})
    proc = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True,
                          env={**__import__("os").environ, "CI": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"quantizing {model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="8,16,32", help="comma-separated depths, or none")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--n-samples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--skip-default", action="store_true", help="do not time the default model")
    ap.add_argument("--matmul-dtype", choices=MATMUL_DTYPES, default=QuantConfig.matmul_dtype,
                    help="products of the calibration pass and the scale search (quantize's --matmul-dtype)")
    args = ap.parse_args()
    layers = [] if args.layers == "none" else [int(n) for n in args.layers.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    small = {"group_size": 64, "n_samples": args.n_samples, "seqlen": args.seqlen, "loss_tokens": 1024,
             "clip_tokens": 128, "matmul_dtype": args.matmul_dtype}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="awqguard-scale-") as tmp:
        for n in layers:
            folder = Path(tmp) / f"llama-{n}"
            size = build_model(n, folder)
            for mode in modes:
                if mode == "in-memory" and n not in (min(layers), max(layers)):
                    continue             # the baseline needs only its ends
                out = Path(tmp) / f"q-{n}-{mode}"
                row = run_child(str(folder), out, small, stream=mode == "streamed")
                rows[f"{n} layers, {mode}"] = {"layers": n, "mode": mode, "source_gib": size, **row}
                print(f"{n} layers {mode}: {row}", file=sys.stderr)
            subprocess.run(["rm", "-rf", str(folder)] + [str(Path(tmp) / f"q-{n}-{m}") for m in modes])
        default = None
        if not args.skip_default:
            from awqguard.gates.config import DEFAULTS
            default = run_child("default", Path(tmp) / "q-default",
                                {**DEFAULTS["quantize"], "matmul_dtype": args.matmul_dtype}, stream=True)
            print(f"default model: {default}", file=sys.stderr)

    def ratio(mode: str):
        if not layers:
            return None
        a, b = rows.get(f"{min(layers)} layers, {mode}"), rows.get(f"{max(layers)} layers, {mode}")
        return round(b["peak_rss_gib"] / a["peak_rss_gib"], 3) if a and b and a is not b else None

    ratios = {mode: ratio(mode) for mode in modes}
    targets = {}
    if ratios.get("streamed") is not None:
        targets[f"streamed peak RSS {max(layers)}/{min(layers)} layers <= 1.3"] = ratios["streamed"] <= 1.3
    if default is not None:
        targets["default model quantized in <= 300 s"] = default["quantize_seconds"] <= 300
    payload = {"bench": "quantize_scale", "width": WIDTH, "calibration": small, "versions": versions(),
               "models": rows, "peak_ratio_deepest_to_shallowest": ratios, "default_model": default,
               "targets": targets}
    return emit_with_targets(payload)


if __name__ == "__main__":
    raise SystemExit(main())
