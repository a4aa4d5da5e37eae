"""The check configuration: `awqguard.yaml`, or `[tool.awqguard]` in pyproject.toml (docs/architecture.md §10).

Validated against a JSON Schema (unknown keys are errors, with their path and a "did you mean"),
then merged over the defaults. Gate overrides are keyed by gate id. `build_check_config` adds a
front end's overrides and returns the one `CheckConfig` that `awqguard check` and `pytest --awq-gates`
both run.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from awqguard.errors import ConfigError
from awqguard.files import read_text
from awqguard.gates.policy import DEFAULT_GATES, OVERRIDE_SCHEMA, Gate
from awqguard.quantizer.config import QuantConfig

DEFAULTS: dict[str, Any] = {
    "reference": None,                  # model folder / .gguf / endpoint; None = SmolLM2-135M-Instruct
    "candidate": None,                  # checkpoint folder / endpoint; None = quantized from the reference (cached)
    "suite": "fixtures/default",
    "out": "reports/latest",
    "seeds": [0, 1],
    "limit": None,
    "device": "auto",                   # in-process models: every visible GPU (device_map auto), else CPU; or "cpu"
    "diagnose": "on-failure",           # a failing check diagnoses its candidate (diagnosis.json); or "never"
    "quantize": {"w_bit": 4, "group_size": 64},
    "pipeline": {"chunk_tokens": 64, "chunk_overlap": 16, "top_k": 5, "prompt_chunks": 2, "header_order": "fixed",
                 "embedder": None, "quantize_embedder": True, "embedder_w_bit": 4, "embedder_group_size": 128,
                 "retriever": None, "prompt_template": None},
    "decoding": {"greedy": False, "temperature": 0.7, "top_p": 0.9,
                 "max_new_tokens": {"qa": 24, "json": 64, "long": 64}},
    "probes": {"items": 4, "k": [5, 10], "header_shuffle": True},
    "entropy": {"tokens": 192},
    "perplexity": {"window": 256, "max_windows": 8},
    "decision": {"min_items": 8, "strict": False},   # gates on fewer units are inconclusive; strict: that fails
    "gates": {},
}

_POSITIVE = {"type": "integer", "minimum": 1}
ENDPOINT_SCHEMA: dict[str, Any] = {     # a served model (backends/http.py Endpoint)
    "type": "object", "additionalProperties": False, "required": ["endpoint"],
    "properties": {"endpoint": {"type": "string", "pattern": "^https?://"}, "model": {"type": ["string", "null"]},
                   "api_key_env": {"type": ["string", "null"]}, "tokenizer": {"type": ["string", "null"]},
                   "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 256},
                   "timeout_s": {"type": "number", "exclusiveMinimum": 0}, "retries": {"type": "integer", "minimum": 0},
                   "top_logprobs": {"type": "integer", "minimum": 1, "maximum": 1000},
                   "revision": {"type": "string"}}}
_MODEL = {"oneOf": [{"type": ["string", "null"]}, ENDPOINT_SCHEMA]}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reference": _MODEL,
        "candidate": _MODEL,
        "suite": {"type": "string"},
        "out": {"type": "string"},
        "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "limit": {"type": ["integer", "null"], "minimum": 1},
        "device": {"enum": ["auto", "cpu"]},
        "diagnose": {"enum": ["on-failure", "never"]},
        "quantize": {"type": "object"},     # QuantConfig validates its own fields
        "pipeline": {"type": "object", "additionalProperties": False, "properties": {
            "chunk_tokens": {"type": "integer", "minimum": 8},
            "chunk_overlap": {"type": "integer", "minimum": 0},
            "top_k": _POSITIVE,
            "prompt_chunks": _POSITIVE,
            "header_order": {"enum": ["fixed", "shuffled"]},
            "embedder": {"type": ["string", "null"]},
            "quantize_embedder": {"type": "boolean"},
            "embedder_w_bit": {"enum": [2, 3, 4, 8]},
            "embedder_group_size": {"type": "integer"},
            "retriever": {"type": ["string", "null"], "pattern": "^[A-Za-z_][\\w.]*:[A-Za-z_]\\w*$"},
            "prompt_template": {"type": ["string", "null"]}}},
        "decoding": {"type": "object", "additionalProperties": False, "properties": {
            "greedy": {"type": "boolean"},
            "temperature": {"type": "number", "exclusiveMinimum": 0},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "max_new_tokens": {"oneOf": [_POSITIVE, {"type": "object", "additionalProperties": False,
                                                     "properties": {k: _POSITIVE for k in ("qa", "json", "long")}}]}}},
        "probes": {"type": "object", "additionalProperties": False, "properties": {
            "items": {"type": "integer", "minimum": 0},
            "k": {"type": "array", "items": _POSITIVE},
            "header_shuffle": {"type": "boolean"}}},
        "entropy": {"type": "object", "additionalProperties": False, "properties": {"tokens": {"type": "integer", "minimum": 32}}},
        "perplexity": {"type": "object", "additionalProperties": False, "properties": {
            "window": {"type": "integer", "minimum": 16}, "max_windows": _POSITIVE}},
        "decision": {"type": "object", "additionalProperties": False, "properties": {
            "min_items": {"type": "integer", "minimum": 1}, "strict": {"type": "boolean"}}},
        "gates": {"type": "object", "propertyNames": {"enum": [g.id for g in DEFAULT_GATES]},
                  "additionalProperties": OVERRIDE_SCHEMA},
    },
}


def find_config(start: Path | None = None) -> Path | None:
    """awqguard.yaml in the folder, else a pyproject.toml that has [tool.awqguard]."""
    folder = Path(start or Path.cwd())
    if (folder / "awqguard.yaml").exists():
        return folder / "awqguard.yaml"
    pyproject = folder / "pyproject.toml"
    if pyproject.exists() and "awqguard" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    return None


def _read_toml(path: Path) -> dict:
    import tomllib
    try:
        return tomllib.loads(read_text(path, ConfigError))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The validated configuration merged over DEFAULTS (DEFAULTS alone when there is no file)."""
    if path is None:
        path = find_config()
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} " + ("is a folder" if path.is_dir() else "does not exist"))
        if path.suffix == ".toml":
            tool = _read_toml(path).get("tool", {})
            raw = tool.get("awqguard", {}) if isinstance(tool, dict) else tool
        else:
            try:
                raw = yaml.safe_load(read_text(path, ConfigError)) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
        validate(raw, str(path))
    return _merge(copy.deepcopy(DEFAULTS), raw)


def validate(raw: Any, label: str) -> None:
    import jsonschema
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw), key=lambda e: list(e.path))
    problems = [_describe(e) for e in errors] + [f"{where}: {value} is not a finite number (a NaN or infinite "
                                                 "bar decides nothing; to turn a gate off use enabled: false)"
                                                 for where, value in _non_finite(raw)]
    if problems:
        raise ConfigError(f"{label}: " + "; ".join(problems))


def _non_finite(value: Any, where: str = "") -> list[tuple[str, float]]:
    """(path, value) of every NaN or infinite number: YAML's .nan and .inf pass a "number" schema."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(where or "(top level)", value)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    return []


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else "")
                 for k in extra]
        return f"{where}: unknown key {', '.join(hints)}; allowed: {', '.join(known)}"
    if error.validator == "oneOf" and error.context:
        import jsonschema
        inner = [e for e in error.context if not (e.validator == "type" and not e.path)] or list(error.context)
        return _describe(jsonschema.exceptions.best_match(inner))
    if "propertyNames" in error.schema_path:       # jsonschema reports the inner enum failure
        known = [g.id for g in DEFAULT_GATES]
        m = difflib.get_close_matches(str(error.instance), known, 1)
        return f"gates: unknown gate {error.instance!r}" + (f" (did you mean {m[0]!r}?)" if m else "")
    return f"{where}: {error.message}"


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def gates_from_config(config: dict[str, Any]) -> list[Gate]:
    """The default gates with the config's overrides applied; disabled gates dropped."""
    import dataclasses
    gates = []
    for gate in DEFAULT_GATES:
        override = dict(config.get("gates", {}).get(gate.id, {}))
        if not override.pop("enabled", True):
            continue
        gates.append(dataclasses.replace(gate, **override))
    return gates


@dataclass(frozen=True)
class CheckConfig:
    """A check's configuration, validated once for every front end.

    `data` is the merged dict exactly as the engine reads it and results.json records it (its
    sha256 is release evidence), so it is never rebuilt from the typed fields.
    """

    data: dict[str, Any]
    gates: list[Gate]
    quantize: QuantConfig
    out: Path


def build_check_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None,
                       label: str = "command line") -> CheckConfig:
    """The config file (found as `load_config` finds it when `path` is None) with `overrides` on top.

    `overrides` maps a key, dotted for nested ones ("decoding.greedy"), to its value; None means
    "not given". Problems in the overrides are reported under `label` (the front end's name).
    """
    data = load_config(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(data, key, os.fspath(value) if isinstance(value, os.PathLike) else value)
    return check_config_of(data, label)


def check_config_of(data: Mapping[str, Any], label: str = "configuration") -> CheckConfig:
    """A merged configuration dict (the Python API's way in) as a CheckConfig, validated as a file is;
    problems are reported under `label`."""
    data = dict(data)
    validate({k: v for k, v in data.items() if k != "gates"}, label)
    return CheckConfig(data=data, gates=gates_from_config(data), quantize=quant_config(data["quantize"]),
                       out=Path(data["out"]).expanduser())


def served_spec(value: Any) -> dict[str, Any] | None:
    """The mapping form of a reference/candidate value that names a served model (its URL, or
    {endpoint: URL, ...}); None for a model folder, a file or the default."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return {"endpoint": value}
    return dict(value) if isinstance(value, dict) else None


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    role = key.split(".")[0]
    if role in ("reference", "candidate") and "." in key:        # a served model's field, e.g. candidate.model
        spec = served_spec(data.get(role))
        if spec is None:
            raise ConfigError(f"{key} applies to a served {role} only: give the {role} as an endpoint URL "
                              f"(--{role} http://HOST:PORT/v1)")
        data[role] = spec
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def quant_config(section: Mapping[str, Any]) -> QuantConfig:
    """The `quantize:` section as the QuantConfig that makes the default candidate; its errors name the section."""
    try:
        return QuantConfig(**section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"quantize: {exc}") from None
