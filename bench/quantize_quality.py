"""Does awqguard's AWQ beat round-to-nearest on SmolLM2-135M-Instruct, fast, on this CPU, on text
of the calibration's kind and on kinds it never saw?

Prints JSON: for each held-out domain, perplexity over non-overlapping 512-token windows for the float
model, round-to-nearest on the same grid, and awqguard AWQ, and the share of RTN's perplexity gap
that AWQ recovers; wall time and peak memory of quantization. Calibration is the built-in default
(the Python language reference plus docstrings of stdlib modules) unless --calib-text says otherwise.
Held-out domains: `docstrings` (docstrings of other stdlib modules: the calibration's kind), and,
fetched by bench/corpora.py, `fiction` (Pride and Prejudice) and `news` (Brown corpus press
reportage), two kinds the calibration never saw.

Beside each share it prints AutoAWQ 0.2.9's share on the same windows, from a checkpoint that
bench/autoawq_reference.py made in its own environment from the same float model and calibration
tokens: evaluated now with --autoawq DIR, or else the figures recorded in bench/baselines/ (used only
when the calibration fingerprint and window count match). Targets: on every domain a share at least
AutoAWQ's (and >= 0.55 where AutoAWQ is not known); quantization <= 300 s.

    python bench/quantize_quality.py                                 # w4 g64, 128 x 512, all domains
    python bench/quantize_quality.py --heldout docstrings            # the same-domain case only
    python bench/quantize_quality.py --model gemma-3-270m            # a second architecture
    python bench/quantize_quality.py --n-samples 16 --seqlen 256 --max-windows 8   # quick look
    python bench/quantize_quality.py --loss-sample spread            # losses over the whole set
    python bench/quantize_quality.py --autoawq /path/to/autoawq-w4g64 --record-autoawq   # new AutoAWQ figures
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path


sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import emit_with_targets, measure, versions  # noqa: E402
from corpora import SOURCES, corpus  # noqa: E402

from awqguard import QuantConfig, quantize  # noqa: E402
from awqguard.quantizer.config import MATMUL_DTYPES  # noqa: E402
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

HELDOUT_TEXTS = {
    "docstrings": stdlib_docstrings,         # docstrings of modules disjoint from the calibration's
    **{name: (lambda name=name: [corpus(name)]) for name in SOURCES},     # kinds the calibration never saw
}

SAME_KIND = {"docstrings": {"default", "docstrings", "pydoc"}}    # held-out domain -> calibrations of its kind
TARGET_SHARE = 0.55
TARGET_SECONDS = 300
BASELINE = Path(__file__).parent / "baselines" / "autoawq_quality.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None,
                    help="a model folder, .gguf file or packaged model (gemma-3-270m); default SmolLM2-135M-Instruct")
    ap.add_argument("--w-bit", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--calib-text", choices=sorted(CALIBRATION_TEXTS), default="default",
                    help="calibration text (default: the CLI's built-in one)")
    ap.add_argument("--loss-tokens", type=int, default=QuantConfig.loss_tokens,
                    help="tokens the scale-search loss is computed on")
    ap.add_argument("--loss-sample", choices=["sequences", "spread"], default=QuantConfig.loss_sample,
                    help="which calibration tokens the searches' losses see (see docs/architecture.md §4)")
    ap.add_argument("--scale-search", choices=["full", "coarse"], default=QuantConfig.scale_search,
                    help="every ratio of the grid, or coarse-to-fine (10 of 20)")
    ap.add_argument("--compute-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                    help="precision the blocks are quantized in (quantize's --compute-dtype)")
    ap.add_argument("--matmul-dtype", choices=MATMUL_DTYPES, default=QuantConfig.matmul_dtype,
                    help="products of the calibration pass and the scale search (quantize's --matmul-dtype)")
    ap.add_argument("--max-windows", type=int, default=64, help="held-out 512-token windows (default 64)")
    ap.add_argument("--heldout", default=",".join(HELDOUT_TEXTS),
                    help=f"comma-separated held-out domains (default: all of {', '.join(HELDOUT_TEXTS)})")
    ap.add_argument("--save", type=Path, help="also write awqguard's checkpoint here (for bench/awq_compare.py)")
    ap.add_argument("--autoawq", type=Path, help="an AutoAWQ checkpoint from bench/autoawq_reference.py")
    ap.add_argument("--record-autoawq", action="store_true",
                    help="with --autoawq: also write its figures to bench/baselines/autoawq_quality.json")
    args = ap.parse_args(argv)

    domains = [d.strip() for d in args.heldout.split(",") if d.strip()]
    unknown = sorted(set(domains) - set(HELDOUT_TEXTS))
    if unknown or not domains:
        ap.error(f"--heldout: unknown domain(s) {unknown}; choose from {', '.join(HELDOUT_TEXTS)}")
    load_start = time.perf_counter()
    reference, tokenizer, source = load_reference(args.model)
    load_seconds = time.perf_counter() - load_start
    windows = {d: heldout_windows(tokenizer, HELDOUT_TEXTS[d](), 512, args.max_windows) for d in domains}
    cfg = QuantConfig(w_bit=args.w_bit, group_size=args.group_size, n_samples=args.n_samples,
                      seqlen=args.seqlen, loss_tokens=args.loss_tokens, loss_sample=args.loss_sample,
                      scale_search=args.scale_search, matmul_dtype=args.matmul_dtype)

    ppl = {d: {"float": model_perplexity(reference, w)} for d, w in windows.items()}
    rtn = copy.deepcopy(reference)
    rtn_fake_quantize(rtn, cfg)
    for d, w in windows.items():
        ppl[d]["rtn"] = model_perplexity(rtn, w)
    del rtn

    with measure() as cost:
        result = quantize(copy.deepcopy(reference), tokenizer=tokenizer, config=cfg,
                          calib=CALIBRATION_TEXTS[args.calib_text](), out=args.save, force=True,
                          compute_dtype=args.compute_dtype)
    for d, w in windows.items():
        ppl[d]["awq"] = model_perplexity(result.model, w)
    calibration = result.record["calibration"]["fingerprint"]
    autoawq = _autoawq_figures(args, windows, calibration)

    heldout = {d: _domain_entry(ppl[d], windows[d], autoawq["perplexity"].get(d) if autoawq else None,
                                "same" if args.calib_text in SAME_KIND.get(d, ()) else "cross")
               for d in domains}
    payload = {
        "benchmark": "quantize_quality",
        "model": source.label,
        "config": {"w_bit": cfg.w_bit, "group_size": cfg.group_size, "n_samples": cfg.n_samples,
                   "seqlen": cfg.seqlen, "loss_tokens": cfg.loss_tokens, "loss_sample": cfg.loss_sample,
                   "scale_search": cfg.scale_search, "matmul_dtype": cfg.matmul_dtype,
                   "loss_sequences": cfg.loss_sequences, "gram_tokens": cfg.gram_tokens,
                   "calibration": args.calib_text,
                   "compute_dtype": result.record["environment"]["compute_dtype"],
                   "calibration_fingerprint": calibration},
        "heldout": heldout,
        "autoawq": {k: v for k, v in autoawq.items() if k != "perplexity"} if autoawq else
        "not known for this calibration and window count: run bench/autoawq_reference.py, then --autoawq DIR",
        "quantize": {"wall_s": cost["seconds"], "peak_rss_gib": cost["peak_rss_gib"],
                     "rss_before_gib": cost["rss_before_gib"]},
        "model_load_s": round(load_seconds, 2),
        "targets": {**{f"{d}.share>={'autoawq' if 'autoawq' in e else TARGET_SHARE}": _meets(e)
                       for d, e in heldout.items()},
                    f"quantize_wall_s<={TARGET_SECONDS}": bool(cost["seconds"] <= TARGET_SECONDS)},
        "environment": versions(),
    }
    return emit_with_targets(payload)


def _autoawq_figures(args, windows: dict, calibration: str) -> dict | None:
    """AutoAWQ's perplexity per domain on these windows: measured now from --autoawq, or recorded."""
    if args.autoawq is None:
        if not BASELINE.exists():
            return None
        recorded = json.loads(BASELINE.read_text())
        fits = (recorded["calibration_fingerprint"] == calibration and recorded["windows"] == args.max_windows
                and set(windows) <= set(recorded["perplexity"]))
        return {**recorded, "source": f"recorded {recorded['measured']}"} if fits else None
    from awqguard.quantizer.checkpoint import load_quantized
    record = json.loads((args.autoawq / "autoawq_record.json").read_text())
    if record["calibration"]["fingerprint"] != calibration:
        raise SystemExit(f"{args.autoawq} was calibrated on tokens {record['calibration']['fingerprint']}, "
                         f"this run on {calibration}: the comparison would not be like for like")
    model = load_quantized(args.autoawq, "cpu")
    figures = {"measured": time.strftime("%Y-%m-%d"), "checkpoint_made": record["date"],
               "versions": record["versions"], "quantize_s": record["seconds"]["quantize"],
               "calibration_fingerprint": calibration, "windows": args.max_windows,
               "perplexity": {d: model_perplexity(model, w) for d, w in windows.items()}}
    if args.record_autoawq:
        BASELINE.parent.mkdir(exist_ok=True)
        BASELINE.write_text(json.dumps(figures, indent=1, allow_nan=False) + "\n")
    return {**figures, "source": f"measured now from {args.autoawq}"}


def _meets(entry: dict) -> bool:
    """awqguard's share at least AutoAWQ's where that is known, else at least TARGET_SHARE."""
    floor = entry["autoawq"]["gap_recovered_share"] if "autoawq" in entry else TARGET_SHARE
    return bool(entry["gap_recovered_share"] >= floor)


def _share(ppl: dict[str, float], quantized: float) -> float:
    gap = ppl["rtn"] - ppl["float"]
    return round((ppl["rtn"] - quantized) / gap, 4) if gap > 0 else float("nan")


def _domain_entry(ppl: dict[str, float], windows, autoawq_ppl: float | None, kind: str) -> dict:
    """One held-out domain's figures: perplexities, each variant's cost, and AWQ's share of RTN's
    gap, beside AutoAWQ's when known. `kind` says whether the calibration was text of this kind."""
    entry = {"kind": f"{kind}-domain", "windows": int(windows.shape[0]), "tokens": int(windows.numel()),
             "perplexity": {k: round(v, 4) for k, v in ppl.items()},
             "rtn_cost_pct": round(100 * (ppl["rtn"] / ppl["float"] - 1), 2),
             "awq_cost_pct": round(100 * (ppl["awq"] / ppl["float"] - 1), 2),
             "gap_recovered_share": _share(ppl, ppl["awq"])}
    if autoawq_ppl is not None:
        entry["autoawq"] = {"perplexity": round(autoawq_ppl, 4), "gap_recovered_share": _share(ppl, autoawq_ppl)}
    return entry


if __name__ == "__main__":
    sys.exit(main())
