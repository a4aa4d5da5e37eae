"""Does awqguard's AWQ beat round-to-nearest on SmolLM2-135M-Instruct, fast, on this CPU?

Prints JSON: held-out perplexity (non-overlapping 512-token windows of standard-library docstrings)
for the float model, round-to-nearest on the same grid, and awqguard AWQ (calibrated on the built-in
default text: the Python language reference plus docstrings of other, disjoint modules); the share of RTN's perplexity gap that AWQ recovers; wall
time and peak memory of quantization. Targets (issue 2): share >= 0.55, quantization <= 600 s.

    python bench/quantize_quality.py                     # the issue's setting: w4 g64, 128 x 512
    python bench/quantize_quality.py --n-samples 16 --seqlen 256 --max-windows 8   # quick look
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import emit_with_targets, measure, versions  # noqa: E402

from awqguard import QuantConfig, quantize  # noqa: E402
from awqguard.gates.perplexity import heldout_windows, model_perplexity  # noqa: E402
from awqguard.models import load_reference  # noqa: E402
from awqguard.quantizer.rtn import rtn_fake_quantize  # noqa: E402
from awqguard.texts import (calibration_docstrings, default_calibration, python_reference,  # noqa: E402
                            stdlib_docstrings)

CALIBRATION_TEXTS = {
    "default": default_calibration,          # the CLI's built-in default: the two below together
    "pydoc": python_reference,               # the Python language reference alone
    "docstrings": calibration_docstrings,    # docstrings of modules disjoint from the held-out ones
}

TARGET_SHARE = 0.55
TARGET_SECONDS = 600


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--w-bit", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--calib-text", choices=sorted(CALIBRATION_TEXTS), default="default",
                    help="calibration text (default: the CLI's built-in one)")
    ap.add_argument("--loss-tokens", type=int, default=QuantConfig.loss_tokens,
                    help="tokens the scale-search loss is computed on")
    ap.add_argument("--max-windows", type=int, default=64, help="held-out 512-token windows (default 64)")
    args = ap.parse_args(argv)

    load_start = time.perf_counter()
    reference, tokenizer, source = load_reference()
    load_seconds = time.perf_counter() - load_start
    windows = heldout_windows(tokenizer, stdlib_docstrings(), 512, args.max_windows)
    cfg = QuantConfig(w_bit=args.w_bit, group_size=args.group_size, n_samples=args.n_samples,
                      seqlen=args.seqlen, loss_tokens=args.loss_tokens)

    ppl_float = model_perplexity(reference, windows)
    rtn = copy.deepcopy(reference)
    rtn_fake_quantize(rtn, cfg)
    ppl_rtn = model_perplexity(rtn, windows)
    del rtn

    with measure() as cost:
        result = quantize(copy.deepcopy(reference), tokenizer=tokenizer, config=cfg,
                          calib=CALIBRATION_TEXTS[args.calib_text]())
    ppl_awq = model_perplexity(result.model, windows)

    gap = ppl_rtn - ppl_float
    share = (ppl_rtn - ppl_awq) / gap if gap > 0 else float("nan")
    payload = {
        "benchmark": "quantize_quality",
        "model": source.label,
        "config": {"w_bit": cfg.w_bit, "group_size": cfg.group_size, "n_samples": cfg.n_samples,
                   "seqlen": cfg.seqlen, "loss_tokens": cfg.loss_tokens, "calibration": args.calib_text},
        "heldout": {"text": "stdlib docstrings", "windows": int(windows.shape[0]), "window_tokens": 512,
                    "tokens": int(windows.numel())},
        "perplexity": {"float": round(ppl_float, 4), "rtn": round(ppl_rtn, 4), "awq": round(ppl_awq, 4)},
        "rtn_cost_pct": round(100 * (ppl_rtn / ppl_float - 1), 2),
        "awq_cost_pct": round(100 * (ppl_awq / ppl_float - 1), 2),
        "gap_recovered_share": round(share, 4),
        "quantize": {"wall_s": cost["seconds"], "peak_rss_gib": cost["peak_rss_gib"],
                     "rss_before_gib": cost["rss_before_gib"]},
        "model_load_s": round(load_seconds, 2),
        "targets": {"gap_recovered_share>=0.55": bool(share >= TARGET_SHARE),
                    "quantize_wall_s<=600": bool(cost["seconds"] <= TARGET_SECONDS)},
        "environment": versions(),
    }
    return emit_with_targets(payload)


if __name__ == "__main__":
    sys.exit(main())
