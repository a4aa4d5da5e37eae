"""`awqguard tune` end to end: check the candidate, diagnose it, plan the trials from its fixes,
quantize and check each, keep the first that passes (awqguard/tune.py holds the pure parts)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from awqguard import cache, files
from awqguard.errors import AwqguardError, ConfigError
from awqguard.gates.config import CheckConfig, check_config_of
from awqguard.tune import (Trial, blocking_gates, failed_row, plan_trials, predicted_ratio, run_trials, trial_row,
                           write_tune)


def _check(config: CheckConfig, candidate: str, out: Path) -> dict:
    """Run the check with `candidate`, write its outputs to `out`, return results.json's content."""
    from awqguard.gates.engine import run_gates
    from awqguard.report.outputs import results_body, write_outputs
    data = {**config.data, "candidate": candidate, "out": str(out)}
    results = run_gates(check_config_of(data))
    write_outputs(results, out)
    return results_body(results)


def _base(diagnosis: dict) -> tuple[dict, list[str] | None]:
    """(the candidate's QuantConfig fields, its calibration sources: None for the built-in default)."""
    from awqguard.quantizer.calibration import BUILTIN_DEFAULT
    config = diagnosis.get("candidate_config")
    if not config:
        raise ConfigError(f"{diagnosis['candidate']} has no awqguard.json, so awqguard cannot rebuild it with a "
                          "change: tune starts from a checkpoint awqguard quantize made")
    sources = (diagnosis["calibration"] or {}).get("sources") or [BUILTIN_DEFAULT]
    return config, None if sources == [BUILTIN_DEFAULT] else sources


def _evaluator(config: CheckConfig, reference_fingerprint: str, base: dict, calib, widths, out: Path,
               say: Callable[[str], None]):
    """The function that quantizes and checks one trial. A trial on the built-in calibration lands
    where `check` keeps its default candidate, so a trial that is the check's default is reused."""
    from awqguard.quantizer.api import quantize
    from awqguard.quantizer.config import QuantConfig
    counter = iter(range(1, 10**6))

    def evaluate(trial: Trial) -> dict:
        start = time.perf_counter()
        changes = dict(trial.changes)
        trial_calib = changes.pop("calib", None) or calib
        qcfg = QuantConfig(**{**base, **changes})
        key = {"model": reference_fingerprint, "quant": qcfg.to_dict()}      # check's own key for its candidate
        target = cache.entry("candidates", cache.cache_key(key if trial_calib is None else {**key, "calib": trial_calib}))
        ratio = predicted_ratio({**base, **changes}, widths)
        say(f"trial {trial.label}: quantizing")
        try:
            with cache.lock(target):
                quantize(config.data["reference"], out=target, config=qcfg, calib=trial_calib)
        except AwqguardError as exc:
            return failed_row(trial, str(exc), ratio, time.perf_counter() - start)
        say(f"trial {trial.label}: checking")
        results = _check(config, str(target), out / "trials" / f"{next(counter):02d}")
        row = trial_row(trial, results, ratio, time.perf_counter() - start)
        return {**row, "checkpoint": str(Path(target).resolve())}
    return evaluate


def run_tune(config: CheckConfig, out: Path, budget: int, max_bytes_ratio: float | None,
             say: Callable[[str], None], on_row: Callable[[dict], None]) -> dict:
    """tune.json's content; the best passing checkpoint, if any, copied to out/best."""
    from awqguard.diagnose import LINEAR_BLOCKS, TOKENS
    from awqguard.diagnose.entry import run_diagnosis
    from awqguard.diagnose.on_failure import attach
    start = time.perf_counter()
    say("checking the candidate as given")
    first = _check(config, config.data["candidate"], out / "candidate")
    if not blocking_gates(first):
        return {"candidate": config.data["candidate"], "already_passes": True, "trials": [], "best": None,
                "wall_s": round(time.perf_counter() - start, 1)}
    say("diagnosing it")
    diagnosis = run_diagnosis(config, TOKENS, LINEAR_BLOCKS)
    attach(diagnosis, first, out / "candidate")
    base, calib = _base(diagnosis)
    widths = {k: (diagnosis["in_features"][k], diagnosis["out_features"][k]) for k in diagnosis["in_features"]}
    trials, skipped = plan_trials(diagnosis["fixes"], base, widths, budget, max_bytes_ratio)
    check = {k: v for k, v in config.data.items() if k not in ("candidate", "out")}
    rows, best = run_trials(trials, lambda t: {"check": check, "reference": diagnosis["reference_fingerprint"],
                                               "suite": first["environment"]["suite"]["fingerprint"],
                                               "base": base, "calib": calib, "changes": t.changes},
                            _evaluator(config, diagnosis["reference_fingerprint"], base, calib, widths, out, say),
                            max_bytes_ratio, on_row)
    winner = rows[best] if best is not None else None
    if winner is not None:
        _publish_best(Path(winner["checkpoint"]), out / "best")
    return {"candidate": config.data["candidate"], "already_passes": False, "blocking": blocking_gates(first),
            "diagnosis_seconds": diagnosis["seconds"], "fixes": diagnosis["fixes"], "trials": rows,
            "skipped": skipped, "best": winner, "wall_s": round(time.perf_counter() - start, 1)}


def _publish_best(checkpoint: Path, target: Path) -> None:
    """Copy the winning checkpoint to `target` atomically (replacing an earlier tune's best)."""
    with files.staging_dir(target) as tmp:
        shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
        files.publish_dir(tmp, target, replace=True)


__all__ = ["run_tune", "write_tune"]
