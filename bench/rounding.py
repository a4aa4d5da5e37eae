"""Nearest vs dh rounding on SmolLM2-135M-Instruct: does the Dynamic Heuristic help on this model?

For each bit width and calibration seed, quantizes the float model twice with awqguard's AWQ on the
same calibration samples, once per rounding mode, and measures on held-out text (non-overlapping
512-token windows of standard-library docstrings, disjoint from the calibration text): perplexity,
mean KL(float ‖ quantized) per token, the rate at which the top next token agrees with the float
model's, and quantization wall time. Prints JSON with every run, the mean and spread per mode, and
dh minus nearest paired by seed, with a plain verdict per metric:

    better / worse   every seed moves the same way and the mean paired difference is larger than
                     the seed-to-seed standard deviation of nearest rounding
    within noise     otherwise

Target (issue 5): dh quantization is at most 50% slower than nearest on the same settings (exit 1
otherwise). One quantization with the default settings takes ~6 min on 2 cores, most of it the scale
search's loss on 4096 tokens, so the bench defaults to 32 x 512 calibration tokens and a 2048-token
search loss (12 quantizations and their evaluations in ~55 min). dh's extra cost (the flips, per
candidate scale) does not grow with the loss tokens, so the slowdown measured here is an upper
bound for the defaults.

    python bench/rounding.py                                   # w4 g64 and w3 g64, seeds 0 1 2
    python bench/rounding.py --widths 4 --seeds 0 --n-samples 8 --max-windows 4   # quick look
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import emit_with_targets, measure, versions  # noqa: E402

from awqguard import QuantConfig, quantize  # noqa: E402
from awqguard.gates.perplexity import compare_models, heldout_windows, model_perplexity  # noqa: E402
from awqguard.models import load_reference  # noqa: E402
from awqguard.texts import default_calibration, stdlib_docstrings  # noqa: E402

MODES = ("nearest", "dh")
MAX_SLOWDOWN = 1.5
# metric -> True when higher is better
METRICS = {"perplexity": False, "mean_kl": False, "same_top_rate": True}


def run_one(reference, tokenizer, calib: list[str], windows: torch.Tensor, cfg: QuantConfig) -> dict:
    with measure() as cost:
        result = quantize(copy.deepcopy(reference), tokenizer=tokenizer, config=cfg, calib=calib)
    drift = compare_models(reference, result.model, windows)
    row = {"w_bit": cfg.w_bit, "group_size": cfg.group_size, "seed": cfg.seed, "rounding": cfg.rounding,
           "perplexity": drift.ppl_candidate, "mean_kl": drift.mean_kl, "p99_kl": drift.p99_kl,
           "same_top_rate": drift.same_top_rate, "quantize_s": cost["seconds"],
           "peak_rss_gib": cost["peak_rss_gib"]}
    if "dh" in result.record["quantization"]:
        row["dh"] = result.record["quantization"]["dh"]
    return row


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def verdict(diffs: list[float], noise: float | None, higher_is_better: bool) -> str:
    """'better', 'worse' or 'within noise' for dh, from its paired differences to nearest."""
    if len(diffs) < 2 or noise is None:
        return "too few seeds to tell"
    mean = statistics.fmean(diffs)
    same_way = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    if not same_way or abs(mean) <= noise:
        return "within noise"
    return "better" if (mean > 0) == higher_is_better else "worse"


def summarise(rows: list[dict], widths: list[int]) -> dict:
    out = {}
    for w_bit in widths:
        by_mode = {m: sorted((r for r in rows if r["w_bit"] == w_bit and r["rounding"] == m), key=lambda r: r["seed"])
                   for m in MODES}
        entry = {m: {k: spread([r[k] for r in by_mode[m]]) for k in (*METRICS, "quantize_s")} for m in MODES}
        compare = {}
        for metric, higher in METRICS.items():
            diffs = [d[metric] - n[metric] for d, n in zip(by_mode["dh"], by_mode["nearest"])]
            noise = entry["nearest"][metric]["sd"]
            compare[metric] = {"dh_minus_nearest": diffs, "mean": statistics.fmean(diffs),
                               "nearest_seed_sd": noise, "verdict": verdict(diffs, noise, higher)}
        slowdown = entry["dh"]["quantize_s"]["mean"] / entry["nearest"]["quantize_s"]["mean"]
        compare["quantize_slowdown"] = slowdown
        entry["dh_vs_nearest"] = compare
        out[f"w{w_bit}"] = entry
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="4,3", help="comma-separated bit widths (default 4,3)")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated calibration seeds (default 0,1,2)")
    ap.add_argument("--n-samples", type=int, default=32, help="calibration sequences (default 32)")
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--loss-tokens", type=int, default=2048, help="scale-search loss tokens (default 2048)")
    ap.add_argument("--max-flip-percent", type=float, default=QuantConfig.max_flip_percent)
    ap.add_argument("--knee-tolerance", type=float, default=QuantConfig.knee_tolerance)
    ap.add_argument("--max-windows", type=int, default=32, help="held-out 512-token windows (default 32)")
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    reference, tokenizer, source = load_reference()
    windows = heldout_windows(tokenizer, stdlib_docstrings(), 512, args.max_windows)
    calib = default_calibration()
    float_ppl = model_perplexity(reference, windows)
    rows = []
    for w_bit in widths:
        for seed in seeds:
            for mode in MODES:
                cfg = QuantConfig(w_bit=w_bit, group_size=args.group_size, n_samples=args.n_samples,
                                  seqlen=args.seqlen, loss_tokens=args.loss_tokens, seed=seed, rounding=mode,
                                  max_flip_percent=args.max_flip_percent, knee_tolerance=args.knee_tolerance)
                rows.append(run_one(reference, tokenizer, calib, windows, cfg))
                print(f"w{w_bit} seed {seed} {mode}: ppl {rows[-1]['perplexity']:.3f} "
                      f"kl {rows[-1]['mean_kl']:.4f} {rows[-1]['quantize_s']:.0f} s", file=sys.stderr)
    summary = summarise(rows, widths)
    slowdowns = {k: v["dh_vs_nearest"]["quantize_slowdown"] for k, v in summary.items()}
    payload = {
        "benchmark": "rounding",
        "model": source.label,
        "config": {"group_size": args.group_size, "n_samples": args.n_samples, "seqlen": args.seqlen,
                   "loss_tokens": args.loss_tokens,
                   "max_flip_percent": args.max_flip_percent, "knee_tolerance": args.knee_tolerance,
                   "seeds": seeds, "calibration": "built-in default (Python reference + docstrings)"},
        "heldout": {"text": "stdlib docstrings", "windows": int(windows.shape[0]), "window_tokens": 512},
        "float_perplexity": float_ppl,
        "runs": rows,
        "summary": summary,
        "targets": {f"{k}: dh quantize time <= {MAX_SLOWDOWN}x nearest": bool(v <= MAX_SLOWDOWN)
                    for k, v in slowdowns.items()},
        "environment": versions(),
    }
    return emit_with_targets(payload)


if __name__ == "__main__":
    sys.exit(main())
