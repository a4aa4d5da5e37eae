#!/usr/bin/env bash
# How much the default candidate's check verdict moves with the calibration seed, and with the
# quantizer's products (bfloat16 or float32). Quantizes the default model once per DTYPE:SEED,
# checks each candidate against one cached reference run, and prints one JSON document.
#   bash bench/check_seeds.sh WORKDIR [DTYPE:SEED ...]   (default: bfloat16:0 float32:1 bfloat16:1 float32:2 bfloat16:2)
# About 10 minutes per candidate on two cores, plus 4 for the reference run.
set -euo pipefail
work=${1:?usage: bash bench/check_seeds.sh WORKDIR [DTYPE:SEED ...]}; shift
specs=("$@"); [ ${#specs[@]} -gt 0 ] || specs=(bfloat16:0 float32:1 bfloat16:1 float32:2 bfloat16:2)
mkdir -p "$work" && cd "$work"
export CI=true                                 # no progress bars in the logs
: > rows.jsonl
for spec in "${specs[@]}"; do
  dt=${spec%%:*}; seed=${spec##*:}; cand=$PWD/c-$dt-s$seed; out=$PWD/r-$dt-s$seed
  t0=$(date +%s)
  [ -f "$cand/awqguard.json" ] || awqguard quantize --seed "$seed" --matmul-dtype "$dt" --out "$cand" > "$cand.log" 2>&1
  t1=$(date +%s)
  awqguard check --candidate "$cand" --out "$out" --no-diagnose > "$out.log" 2>&1 || true   # exit 1 is a result
  python3 - "$dt" "$seed" "$out/results.json" $((t1 - t0)) >> rows.jsonl <<'PY'
import json, sys
dtype, seed, path, quantize_s = sys.argv[1:]
results = json.load(open(path))
metrics = results["metrics"]
keys = ("entropy.onset_share", "entropy.slope_excess", "perplexity.ratio", "kl.mean",
        "drift.answer_ds_item_excess_max", "lambda.bad_miss_rate")
print(json.dumps({"matmul_dtype": dtype, "seed": int(seed), "verdict": results["verdict"],
                  "quantize_s": int(quantize_s),
                  "undecided_or_failed": [g["id"] for g in results["gates"] if g["status"] in ("inconclusive", "fail")],
                  "warned": [g["id"] for g in results["gates"] if g["status"] == "warn"],
                  "metrics": {k: metrics.get(k) for k in keys}}))
PY
done
python3 -c "import json, sys; print(json.dumps({'bench': 'check_seeds', 'rows': [json.loads(l) for l in open('rows.jsonl')]}, indent=2))"
