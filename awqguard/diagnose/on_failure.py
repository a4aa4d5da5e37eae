"""The diagnosis a failing `awqguard check` runs by itself (config `diagnose: on-failure`), so the
failure arrives with the blocks and linears that cause it and the fixes computed for this candidate.

It runs after the check's outputs are written: a diagnosis that cannot run, or breaks, costs only
its own section, never the verdict or the exit code.
"""

from __future__ import annotations

from pathlib import Path

from awqguard.diagnose import LINEAR_BLOCKS, TOKENS
from awqguard.diagnose.entry import run_diagnosis, write_diagnosis
from awqguard.errors import AwqguardError
from awqguard.gates.config import CheckConfig


def wanted(config: CheckConfig, results: dict) -> bool:
    """Whether this check asks for a diagnosis: it failed, and the config does not say never."""
    return not results["passed"] and config.data["diagnose"] == "on-failure"


def diagnose_failure(config: CheckConfig, use_cache: bool = True) -> tuple[dict | None, str | None]:
    """(diagnosis.json's content, None), or (None, why there is none): a served side has no weights
    here, a float candidate has nothing to swap, and an internal error is reported, not raised."""
    try:
        return run_diagnosis(config, TOKENS, LINEAR_BLOCKS, use_cache), None
    except AwqguardError as exc:
        return None, f"not diagnosed: {exc}"
    except Exception as exc:    # a bug in diagnose must not take the check's verdict with it
        return None, (f"not diagnosed: internal error {type(exc).__name__}: {exc} (run awqguard diagnose --debug "
                      "for the traceback, and please report it)")


def attach(payload: dict, results_body: dict, out: Path) -> Path:
    """Write diagnosis.json into the check's folder and render its report again with the section."""
    from awqguard.report.html import write_report
    from awqguard.report.outputs import OUTPUT_FILES
    path = write_diagnosis(payload, out)
    write_report(results_body, Path(out) / OUTPUT_FILES["report"], payload)
    return path
