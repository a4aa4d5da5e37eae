"""Do two `awqguard check` output folders hold the same verdict, metrics and item summaries?

    python scripts/compare_results.py reports/before reports/after [--tolerance 0]

Compares results.json (gates, metrics, items, probes, entropy, perplexity, notices, summary, the
files the evidence digests, the environment less paths) and items.jsonl record by record. What
legitimately changes between two runs of the same check is left out: timestamps, wall times,
tokens per second, peak memory, cache paths and hits, the output folder (and so the config's
digest: the config itself is compared key by key), and a checkpoint's awqguard.json and
config.json, which record where and when it was made (its weights and tokenizer are compared). Prints JSON (the differences, at most 50)
and exits 0 when there are none, 1 otherwise. A refactoring that must not change behaviour is
checked by running the default check before and after it and comparing the two folders.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

VOLATILE = {"created", "timing", "cache"}
VOLATILE_COST = {"reference_tokens_per_s", "candidate_tokens_per_s", "peak_rss_mib", "tokens_per_s_note"}
MADE_WHERE_AND_WHEN = {"awqguard.json", "config.json"}     # a checkpoint's record and its source path
MAX_SHOWN = 50


def comparable(results: dict) -> dict:
    """results.json less what differs between two runs of the same check."""
    body = {k: v for k, v in results.items() if k not in VOLATILE}
    body["cost"] = {k: v for k, v in body.get("cost", {}).items() if k not in VOLATILE_COST}
    env = dict(body.get("environment", {}))
    env["candidate"] = {k: v for k, v in env.get("candidate", {}).items() if k not in ("path", "reused")}
    env.pop("suite", None)
    env["config"] = {k: v for k, v in env.get("config", {}).items() if k != "out"}
    body["environment"] = env
    body["evidence"] = {k: _files(v) for k, v in body.get("evidence", {}).items() if k != "config_sha256"}
    return body


def _files(described):
    """A described folder's file digests, less the files that record where and when it was made."""
    if not isinstance(described, dict) or not isinstance(described.get("files"), dict):
        return described
    return {name: digest for name, digest in described["files"].items() if name not in MADE_WHERE_AND_WHEN}


def differences(a, b, path: str, tolerance: float) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in the first" for k in a if k not in b]
        out += [f"{path}.{k}: only in the second" for k in b if k not in a]
        return out + [d for k in a if k in b for d in differences(a[k], b[k], f"{path}.{k}", tolerance)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} entries vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", tolerance)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=0, abs_tol=tolerance) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"]


def _load(folder: Path) -> tuple[dict, list[dict]]:
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    lines = (folder / "items.jsonl").read_text(encoding="utf-8").splitlines()
    return results, [json.loads(line) for line in lines if line.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.0, help="absolute difference allowed in numbers (default 0)")
    args = ap.parse_args(argv)
    (res_a, rec_a), (res_b, rec_b) = _load(args.first), _load(args.second)
    found = differences(comparable(res_a), comparable(res_b), "results", args.tolerance)
    found += differences(rec_a, rec_b, "records", args.tolerance)
    print(json.dumps({"first": str(args.first), "second": str(args.second), "tolerance": args.tolerance,
                      "gates": len(res_a.get("gates", [])), "records": len(rec_a), "differences": len(found),
                      "shown": found[:MAX_SHOWN]}, indent=1))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
