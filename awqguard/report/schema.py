"""The JSON Schema of results.json as `run_gates` writes it (less the records), and its checks.

The schema requires everything report.html, junit.xml and summary.md read, so they index it
directly; other keys may be present. `validate_results` adds what a schema cannot say: the file's schema version is
the one this awqguard reads, and the summary's counts, the verdict and `passed` agree with the gates.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jsonschema

from awqguard import files
from awqguard.gates.document import SCHEMA_VERSION, verdict_of     # one number for the writer and the reader
from awqguard.gates.policy import OPS, SEVERITIES

MAX_PROBLEMS = 3            # schema problems named in one message
MAX_DEPTH = 32              # results.json nests about 6 deep; far deeper is damage, not data
IDENTITY = ("schema_version", "passed", "summary", "gates")   # a file with none of them is some other JSON
STATUSES = ("pass", "fail", "warn", "skip", "inconclusive", "uninformative")
VERDICTS = ("pass", "fail", "inconclusive")
COUNTED = (("failed", "fail"), ("warned", "warn"), ("skipped", "skip"), ("inconclusive", "inconclusive"),
           ("uninformative", "uninformative"))          # summary count -> the gate status it counts

NUMBER = {"type": "number"}
NUMBER_OR_NULL = {"type": ["number", "null"]}
TEXT = {"type": "string"}
TEXTS = {"type": "array", "items": TEXT}
CURVE = {"type": "array", "items": NUMBER_OR_NULL}       # a point the model could not measure is null, not drawn
COUNT = {"type": "integer", "minimum": 0}
INTERVAL = {"type": ["array", "null"], "prefixItems": [NUMBER_OR_NULL, NUMBER_OR_NULL], "minItems": 2, "maxItems": 2}
SPREAD = {"type": ["array", "null"], "items": NUMBER, "minItems": 2, "maxItems": 2}      # drawn as a bar: numbers


def _object(required: dict, optional: dict | None = None, kind: str | list = "object", **extra) -> dict:
    """An object schema: `required` keys with their schemas, `optional` ones typed when present."""
    return {"type": kind, "required": list(required), "properties": {**required, **(optional or {})}, **extra}


GATE = _object(
    {"id": {"type": "string", "minLength": 1}, "metric": TEXT, "description": TEXT, "value": NUMBER_OR_NULL,
     "reference": NUMBER_OR_NULL, "threshold": NUMBER, "op": {"enum": list(OPS)}, "tolerance": NUMBER_OR_NULL,
     "severity": {"enum": list(SEVERITIES)}, "status": {"enum": list(STATUSES)}, "message": TEXT,
     "basis": {"enum": ["absolute", "reference", "none"]}, "ci": INTERVAL,
     "symptoms": {"type": "array", "items": _object({"id": TEXT, "title": TEXT})},
     "fixes": TEXTS, "worst_items": {"type": "array", "items": _object({"item": TEXT, "value": NUMBER_OR_NULL})}},
    # n: the resampling units behind the interval; absent from a results.json written before it
    {"passed": {"type": "boolean"}, "n": {"type": ["integer", "null"], "minimum": 0}},
    # judged against the reference means a tolerance was applied: the report prints it
    **{"if": {"required": ["basis"], "properties": {"basis": {"const": "reference"}}},
       "then": {"properties": {"tolerance": NUMBER}}})

SIDE = _object({"lambda": TEXT, "ds_qr": NUMBER_OR_NULL, "coverage": NUMBER, "retrieved": TEXTS, "answer": TEXT})

ITEM = _object(
    {"kind": TEXT, "question": TEXT, "reference": SIDE, "candidate": SIDE,
     # seed_noise is null under greedy decoding (every seed gives the same answer)
     "drift": _object({"answer_ds_excess": NUMBER, "seed_noise": NUMBER_OR_NULL, "answer_ds_ci": SPREAD})})

ENTROPY_SHOWN = {"smoothed_reference": CURVE, "smoothed_candidate": CURVE, "kl": CURVE,
                 "onset_candidate": NUMBER_OR_NULL,
                 "slope_excess": NUMBER_OR_NULL, "sequences": {"type": ["integer", "null"]}}
HAS_CURVES = {"type": "object", "required": ["entropy_reference"],
              "properties": {"entropy_reference": {"type": "array", "minItems": 1}}}
ENTROPY = {
    # {} when the suite has no long items; else the curves and verdict the entropy and KL plots show
    **_object({}, {"entropy_reference": CURVE, **ENTROPY_SHOWN}),
    "if": HAS_CURVES, "then": {"required": list(ENTROPY_SHOWN)},
}
# the KL plot's note quotes the metric the engine computes alongside the entropy curves
KL_MEAN_WITH_CURVES = {
    "if": {"required": ["entropy"], "properties": {"entropy": HAS_CURVES}},
    "then": {"properties": {"metrics": _object({"continuation.kl_mean": _object({"value": NUMBER_OR_NULL})})}},
}

ENV_KEYS = ("awqguard", "python", "torch", "transformers", "platform", "device", "dtype", "threads", "kernel_paths")
ENVIRONMENT = _object({
    **{k: {"items": TEXT} for k in ENV_KEYS},                     # a list is shown joined, so of strings
    "reference": _object({"source": {}, "fingerprint": {}}), "candidate": _object({"source": {}, "fingerprint": {}}),
    "suite": _object({"name": {}, "items": {}, "fingerprint": {}}),
    "embedder": _object({"fingerprint": {}, "candidate_pipeline": {}}),
    "seeds": {"type": "array"}, "config": {"type": "object"}})

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "awqguard results.json",
    **_object(
        {"schema_version": {"type": "integer"}, "created": TEXT, "passed": {"type": "boolean"},
         "warn_only": {"type": "boolean"},
         "summary": _object({k: COUNT for k in ("gates", "failed", "warned", "skipped", "items", "runs")},
                            {"symptoms": TEXTS, "inconclusive": COUNT, "uninformative": COUNT}),
         "gates": {"type": "array", "items": GATE}, "notices": TEXTS,
         "symptoms": {"type": "array", "items": _object({"id": TEXT, "title": TEXT, "description": TEXT,
                                                         "causes": TEXTS, "fixes": TEXTS, "gates": TEXTS})},
         "metrics": {"type": "object", "additionalProperties": {"type": "object"}},
         "items": {"type": "object", "additionalProperties": ITEM},
         "entropy": ENTROPY,
         "perplexity": {"type": ["object", "null"],         # null when the suite's corpus is too short to measure
                        "required": ["ppl_reference", "ppl_candidate", "mean_kl", "same_top_rate"],
                        "properties": {k: NUMBER_OR_NULL for k in ("ppl_reference", "ppl_candidate", "mean_kl",
                                                                   "same_top_rate")}},
         "environment": ENVIRONMENT,
         "timing": _object({"wall_s": NUMBER, "stages": {"type": "object", "additionalProperties": NUMBER}})},
        # absent from a results.json written before inconclusive gates: read as not strict, verdict from passed
        {"strict": {"type": "boolean"}, "verdict": {"enum": list(VERDICTS)}}),
    **KL_MEAN_WITH_CURVES,
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def validate_results(data: Any, path) -> None:
    """Raise ValueError, one message naming `path` and where, unless `data` is a results.json this awqguard reads."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an awqguard results.json (the top level is a JSON {_json_type(data)}, "
                         "not an object)")
    missing = [k for k in IDENTITY if k not in data]
    if len(missing) == len(IDENTITY):
        raise ValueError(f"{path}: not an awqguard results.json (missing {', '.join(missing)})")
    _check_version(data.get("schema_version"), data.get("awqguard_version"), path)
    for where, value, depth in _walk(data):
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}: {_where(where)}: nested deeper than {MAX_DEPTH} levels; the file is damaged")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path}: {_where(where)}: {value} is not a finite number (awqguard writes null for "
                             "a value it could not measure); the file was edited or damaged")
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: _sort_key(e.absolute_path))
    if errors:
        problems = [f"{_where(e.absolute_path)}: {_message(e)}" for e in errors[:MAX_PROBLEMS]]
        more = f"; and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS else ""
        raise ValueError(f"{path}: " + "; ".join(problems) + more)
    _check_counts(data, path)


def loads_strict(text: str) -> Any:
    """JSON with NaN, Infinity and -Infinity refused (ValueError naming where the first one is)."""
    try:
        return files.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:                          # files.loads refuses a non-finite constant
        where = next((w for w, v, _ in _walk(json.loads(text)) if isinstance(v, float) and not math.isfinite(v)), ())
        raise ValueError(f"{_where(where)}: {exc}; the file was edited or damaged") from None


def _check_version(version: Any, writer: Any, path) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version == SCHEMA_VERSION:
        return                                       # a missing or non-integer version is the schema's to name
    by = f" (awqguard_version {writer})" if isinstance(writer, str) else ""
    who = "a newer awqguard wrote it" if version > SCHEMA_VERSION else "an older awqguard wrote it"
    raise ValueError(f"{path}: schema_version {version}{by}, but this awqguard reads schema_version "
                     f"{SCHEMA_VERSION}: {who}, or the file was edited; render it with the awqguard that wrote it, "
                     "or rerun awqguard check")


def _check_counts(data: dict, path) -> None:
    """The summary's counts, `verdict` and `passed` agree with the gates; a count or key an older
    results.json lacks is read as 0, not strict, and the verdict its `passed` implies."""
    gates, summary = data["gates"], data["summary"]
    counted = {"gates": len(gates), **{k: sum(g["status"] == s for g in gates) for k, s in COUNTED}}
    claimed = {k: summary.get(k, 0) for k in counted}
    if claimed != counted:
        raise ValueError(f"{path}: summary says {_counts(claimed)} but the gates list holds {_counts(counted)}: "
                         "the file was edited (a gate removed or a status changed); rerun awqguard check")
    strict = data.get("strict", False)
    verdict, earlier = _verdicts(gates, strict)
    if data.get("verdict", verdict) == earlier != verdict:        # written before the rule changed
        verdict = earlier
    if data.get("verdict", verdict) != verdict:
        raise ValueError(f"{path}: verdict is {data['verdict']} but the gates make it {verdict} "
                         f"({_counts(counted)}{', strict' if strict else ''}): the file was edited; "
                         "rerun awqguard check")
    if data["passed"] != (verdict != "fail"):
        raise ValueError(f"{path}: passed is {str(data['passed']).lower()} but {counted['failed']} gate(s) failed"
                         + (f" and {counted['inconclusive']} were inconclusive under strict" if strict else "")
                         + ": the file was edited; rerun awqguard check")


def _verdicts(gates: list[dict], strict: bool) -> tuple[str, str]:
    """The verdict the gates make (a failed gate fails the check, and so does an undecided
    fail-severity one under strict), and the one they made before undecided warn-severity gates
    stopped moving it, which a results.json written then carries."""
    outcomes = [(g["status"], g["severity"]) for g in gates]
    return verdict_of(outcomes, strict), verdict_of([(status, "fail") for status, _ in outcomes], strict)


def _counts(c: dict) -> str:
    others = "".join(f", {c[k]} {k}" for k in ("inconclusive", "uninformative") if c[k])
    return f"{c['gates']} gates ({c['failed']} failed, {c['warned']} warned{others}, {c['skipped']} skipped)"


def _walk(data: Any):
    """(path, value, depth) of every value inside `data`, without recursion."""
    stack = [((), data)]
    while stack:
        where, value = stack.pop()
        yield where, value, len(where)
        if isinstance(value, dict):
            stack += [((*where, k), v) for k, v in reversed(list(value.items()))]
        elif isinstance(value, list):
            stack += [((*where, i), v) for i, v in reversed(list(enumerate(value)))]


def _where(path) -> str:
    """A JSON path as people write it: gates[3].threshold, items.q001.reference, metrics["kl.mean"]."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", step):
            out += f".{step}" if out else step
        else:
            out += f"[{json.dumps(step)}]"
    return out or "(top level)"


def _sort_key(path) -> list:
    return [(0, step, "") if isinstance(step, int) else (1, 0, str(step)) for step in path]


def _message(error) -> str:
    if error.validator == "type":
        expected = ", ".join(map(repr, error.validator_value)) if isinstance(error.validator_value, list) \
            else repr(error.validator_value)
        return f"{_short(error.instance)} is not of type {expected}"
    message = error.message
    return message if len(message) <= 200 else message[:199] + "…"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
