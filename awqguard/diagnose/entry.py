"""`awqguard diagnose` end to end: load the check's reference and candidate, diagnose the candidate on
the suite's corpus, compute its fixes, write diagnosis.json."""

from __future__ import annotations

from pathlib import Path

from awqguard import files
from awqguard.diagnose.fixes import computed_fixes
from awqguard.diagnose.run import calibration_distance, corpus_windows, diagnose_models
from awqguard.errors import AwqguardError, ConfigError
from awqguard.gates.config import CheckConfig, served_spec
from awqguard.quantizer.config import recorded_config

DIAGNOSIS_FILE = "diagnosis.json"


def _record(path: str) -> dict | None:
    from awqguard.models import read_json
    from awqguard.quantizer.checkpoint import RECORD_FILE
    record = Path(path) / RECORD_FILE if path else None
    return read_json(record) if record is not None and record.exists() else None


def _suite_tokens(tokenizer, suite: str) -> int | None:
    """How many calibration tokens `--calib <suite>` gives the quantizer (None when it cannot read
    them), so a calibration fix asks only for samples the suite can fill."""
    from awqguard.quantizer.calibration import gather_texts, token_stream
    try:
        texts, _ = gather_texts(suite)
    except AwqguardError:
        return None
    return len(token_stream(tokenizer, texts))


def run_diagnosis(config: CheckConfig, tokens: int, linear_blocks: int, use_cache: bool = True) -> dict:
    """diagnosis.json's content for the check `config` describes."""
    from awqguard.gates.load import load_candidate, load_reference, load_suite_input, resolve_suite
    for role in ("reference", "candidate"):       # before anything loads: a served side is never probed
        if (spec := served_spec(config.data[role])) is not None:
            raise ConfigError(f"diagnose swaps the {role}'s layers, so it needs its weights in this process; the "
                              f"{role} is served at {spec['endpoint']}: name its checkpoint folder instead")
    suite_input = load_suite_input(config.data)
    reference = load_reference(config.data, 1, use_cache)
    candidate = load_candidate(config, reference, 1, use_cache)
    if not candidate.quantized:
        raise ConfigError(f"{candidate.source} is not a quantized checkpoint: there is nothing to diagnose")
    texts = [d.text for d in sorted(suite_input.suite.documents.values(), key=lambda d: d.stem)]
    tokenizer = reference.backend.tokenizer
    try:
        windows = corpus_windows(tokenizer, texts, tokens)
    except ValueError as exc:
        raise ConfigError(f"{suite_input.suite.root}: the suite's corpus is too short to diagnose on ({exc})") from None
    record = _record(candidate.path)
    diagnosis = diagnose_models(reference.backend.model, candidate.backend.model, windows, linear_blocks,
                                (reference.source, candidate.source), calibration_distance(tokenizer, texts, record),
                                recorded_config(record["config"]) if record and record.get("config") else None)
    payload = {**diagnosis.to_dict(), "reference_fingerprint": reference.fingerprint,
               "candidate_fingerprint": candidate.fingerprint}
    suite = str(resolve_suite(config.data["suite"]))
    payload["suite_calibration_tokens"] = _suite_tokens(tokenizer, suite)
    payload["fixes"] = [{"id": f.id, "changes": f.changes, "why": f.why, "command": f.command(diagnosis.candidate_config)}
                        for f in computed_fixes(payload, suite)]
    return payload


def write_diagnosis(payload: dict, out: Path) -> Path:
    return files.write_json(Path(out) / DIAGNOSIS_FILE, payload, indent=2)
