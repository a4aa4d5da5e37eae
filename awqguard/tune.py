"""`awqguard tune`: from a failing candidate, try the fixes its diagnosis computed, and prove which passes.

Trials are the fixes alone, then together, cheapest first (by the weight bytes they would store);
each is quantized from the reference with the candidate's config plus its changes and checked
against the same reference, whose run comes from the cache. The first trial that passes every
fail-severity gate within the byte budget wins; its checkpoint is copied to `--out/best`. Each
finished trial is recorded in the cache, so an interrupted tune resumes where it stopped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from awqguard import cache, files
from awqguard.gates.document import undecided_blocks

TUNE_FILE = "tune.json"


@dataclass(frozen=True)
class Trial:
    label: str                    # "group-size 32 + not-convert"
    changes: dict[str, Any]       # QuantConfig field -> value ("calib": the calibration source)


def plan_trials(fixes: list[dict], base: dict, widths: dict[str, tuple[int, int]], budget: int,
                max_bytes_ratio: float | None) -> tuple[list[Trial], list[dict]]:
    """(the trials to run, in order; those left out with why). Singles first, then pairs, then all
    of them, each group by the bytes it would store."""
    groups = [list(itertools.combinations(fixes, n)) for n in range(1, len(fixes) + 1)]
    trials, skipped = [], []
    for combos in groups:
        for combo in sorted(combos, key=lambda c: predicted_ratio({**base, **_merge(c)}, widths)):
            trial = Trial(" + ".join(_describe(f) for f in combo), _merge(combo))
            ratio = predicted_ratio({**base, **trial.changes}, widths)
            if max_bytes_ratio is not None and ratio > max_bytes_ratio:
                skipped.append({"trial": trial.label, "why": f"would store {ratio:.3f} of the float bytes, "
                                                               f"over --max-bytes-ratio {max_bytes_ratio}"})
            else:
                trials.append(trial)
    return trials[:budget], skipped + [{"trial": t.label, "why": f"past --budget {budget}"} for t in trials[budget:]]


def _describe(fix: dict) -> str:
    change = fix["changes"]
    if "group_size" in change:
        return f"group size {change['group_size']}"
    if "modules_to_not_convert" in change:
        return f"{len(change['modules_to_not_convert'])} linears in full precision"
    if "w_bit" in change:
        return f"{change['w_bit']} bits"
    return "calibrated on the suite" if "calib" in change else fix["id"]


def _merge(fixes) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for fix in fixes:
        merged.update(fix["changes"])
    return merged


def predicted_ratio(config: dict, widths: dict[str, tuple[int, int]]) -> float:
    """Bytes the block linears would store (packed weights, zeros and fp16 scales; fp16 for those
    kept in full precision) over their fp16 bytes. Fake-quantized widths (2, 3, 8 bits) are counted
    as if packed: what a serving stack with such a kernel would hold."""
    kept = tuple(config.get("modules_to_not_convert") or ())
    bits, group = config.get("w_bit", 4), config.get("group_size", 128)
    total = stored = 0.0
    for name, (in_f, out_f) in widths.items():
        total += in_f * out_f * 2
        if any(k in name for k in kept):
            stored += in_f * out_f * 2
            continue
        groups = in_f // (in_f if group == -1 else group)
        stored += in_f * out_f * bits / 8 + groups * out_f * (2 + bits / 8)
    return stored / total if total else 1.0


def blocking_gates(results: dict) -> list[str]:
    """The fail-severity gates a check's results do not pass."""
    return [g["id"] for g in results["gates"] if g["status"] == "fail" or undecided_blocks(g["status"], g["severity"])]


def _row(trial: Trial, bytes_ratio: float, seconds: float, **measured) -> dict:
    """A line of the table; what a trial did not measure stays None. `reused` turns true when
    run_trials reads the row back from the cache."""
    return {"trial": trial.label, "changes": trial.changes, "bytes_ratio": round(bytes_ratio, 4), "stored_ratio": None,
            "blocking": [], "passed": False, "perplexity_ratio": None, "kl_mean": None, "bad_miss_rate": None,
            **measured, "seconds": round(seconds, 1), "reused": False}


def trial_row(trial: Trial, results: dict, bytes_ratio: float, seconds: float) -> dict:
    """One line of the table: the trial, the bytes it stores (as packed), its blocking gates and key metrics."""
    metrics = results["metrics"]

    def value(key):      # a paired metric (reference beside candidate) holds the candidate's as "candidate"
        metric = metrics.get(key) or {}
        return metric.get("value", metric.get("candidate"))
    blocking = blocking_gates(results)
    return _row(trial, bytes_ratio, seconds, stored_ratio=value("cost.weight_bytes_ratio"), blocking=blocking,
                passed=not blocking, perplexity_ratio=value("perplexity.ratio"), kl_mean=value("kl.mean"),
                bad_miss_rate=value("lambda.bad_miss_rate"))


def failed_row(trial: Trial, error: str, bytes_ratio: float, seconds: float) -> dict:
    """The row of a trial the quantizer refused (say, a calibration text too short for it): it
    cannot pass, and the next trial is tried."""
    return _row(trial, bytes_ratio, seconds, error=error)


def run_trials(trials: list[Trial], key_of: Callable[[Trial], dict], evaluate: Callable[[Trial], dict],
               max_bytes_ratio: float | None, on_row: Callable[[dict], None]) -> tuple[list[dict], int | None]:
    """Evaluate trials in order (each a quantize and a check) until one passes within the byte
    budget; a trial already recorded in the cache is read back. Returns (rows, index of the winner)."""
    rows = []
    for trial in trials:
        path = cache.entry("tune", cache.cache_key(key_of(trial)), ".json")
        row = cache.read_json(path)
        if row is None:
            row = evaluate(trial)
            files.write_json(path, row)
        else:
            row = {**row, "reused": True}
        rows.append(row)
        on_row(row)
        if row["passed"] and (max_bytes_ratio is None or row["bytes_ratio"] <= max_bytes_ratio):
            return rows, len(rows) - 1
    return rows, None


def write_tune(out: Path, payload: dict) -> Path:
    return files.write_json(Path(out) / TUNE_FILE, payload, indent=2)
