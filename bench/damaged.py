"""Do the gates mean something? Identical, AWQ and deliberately damaged candidates on the full default suite.

Candidates (all built from the default reference, SmolLM2-135M-Instruct):
  identical      the reference itself: every gate must pass (the false-alarm floor)
  awq            awqguard's AWQ w4 g64 (the default candidate, quantized once and cached)
  rtn-w3         3-bit round-to-nearest, group 64 (fake-quantized)
  rtn-w2         2-bit round-to-nearest, group 64 (fake-quantized)
  awq-corrupt    the AWQ candidate with its scales in blocks 8-21 multiplied by random factors in [0.5, 1.5]

Prints JSON: per candidate, pass/fail, the failed and warned gates, the symptoms named, key metrics
and wall time. The expectation it checks (and reports as "as_expected"): identical passes, each
damaged candidate fails, and every damaged one names the ppl-drift symptom.
Run: python bench/damaged.py [--limit N] [--only name,name] [--out DIR]
(--out writes each candidate's results.json, report.html, junit.xml and summary.md to DIR/NAME/.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import emit  # noqa: E402

CANDIDATES = ("identical", "awq", "rtn-w3", "rtn-w2", "awq-corrupt")
KEY_METRICS = ("perplexity.ratio", "kl.mean", "drift.answer_ds_excess", "drift.seed_noise", "lambda.convergence_rate",
               "json.validity_drop", "entropy.onset_share", "entropy.slope_excess", "retrieval.top1_agreement")


def build(name: str, reference, tokenizer, awq_model):
    from awqguard.gates.engine import LoadedModel
    from awqguard.quantizer.damage import corrupt_scales, rtn_candidate
    if name == "identical":
        return LoadedModel(reference, tokenizer, "the reference itself", "reference-itself")
    if name == "awq":
        return LoadedModel(awq_model, tokenizer, "AWQ w4 g64", "awq-w4-g64", quantized=True)
    if name.startswith("rtn-w"):
        bits = int(name[-1])
        return LoadedModel(rtn_candidate(reference, bits, 64), tokenizer, f"RTN w{bits} g64", f"rtn-w{bits}-g64")
    if name == "awq-corrupt":
        return LoadedModel(corrupt_scales(awq_model, range(8, 22), 0.5), tokenizer, "AWQ, scales corrupted in blocks 8-21",
                           "awq-corrupt-8-21", quantized=True)
    raise ValueError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N items only")
    ap.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates")
    ap.add_argument("--out", type=Path, default=None, help="write each candidate's check outputs to OUT/NAME/")
    args = ap.parse_args()

    from awqguard import cache
    from awqguard.gates.config import DEFAULTS
    from awqguard.gates.engine import LoadedModel, run_gates
    from awqguard.models import fingerprint, load_reference
    from awqguard.quantizer.api import quantize
    from awqguard.quantizer.config import QuantConfig

    import copy
    config = copy.deepcopy(DEFAULTS)
    config["limit"] = args.limit
    reference, tokenizer, source = load_reference()
    ref = LoadedModel(reference, tokenizer, source.label, fingerprint(source))
    qcfg = QuantConfig(**config["quantize"])
    out = cache.entry("candidates", cache.cache_key({"model": ref.fingerprint, "quant": qcfg.to_dict()}))
    awq = quantize(None, out=out, config=qcfg)
    awq_model, awq_fp = awq.model, cache.cache_key(awq.record["identity"])   # the fingerprint awqguard check uses
    # identical fingerprints tell the engine the candidate is the reference (its notice)
    rows = {}
    for name in args.only.split(","):
        cand = build(name, reference, tokenizer, awq_model)
        if name == "identical":
            cand.fingerprint = ref.fingerprint
        elif name == "awq":
            cand.fingerprint = awq_fp
        start = time.perf_counter()
        results = run_gates(config, reference=ref, candidate=cand)
        if args.out is not None:
            from awqguard.report.outputs import write_outputs
            write_outputs(results, args.out / name)
        rows[name] = {
            "passed": results["passed"],
            "failed": [g["id"] for g in results["gates"] if g["status"] == "fail"],
            "warned": [g["id"] for g in results["gates"] if g["status"] == "warn"],
            "symptoms": results["summary"]["symptoms"],
            "metrics": {k: results["metrics"].get(k) for k in KEY_METRICS},
            "wall_s": round(time.perf_counter() - start, 1),
            "stages": results["timing"]["stages"],
        }
        print(f"{name}: passed={results['passed']} failed={rows[name]['failed']} warned={rows[name]['warned']}",
              file=sys.stderr)
    expected = all((rows[n]["passed"] and not rows[n]["warned"]) if n == "identical"
                   else (not rows[n]["passed"] and "ppl-drift" in rows[n]["symptoms"])
                   for n in rows if n != "awq")
    emit({"bench": "damaged", "items": args.limit or "all", "candidates": rows, "as_expected": expected})


if __name__ == "__main__":
    main()
