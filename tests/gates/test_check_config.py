import copy
import dataclasses
import json
from pathlib import Path

import pytest

from awqguard.errors import ConfigError
from awqguard.gates.config import (DEFAULTS, CheckConfig, build_check_config, find_config, gates_from_config,
                                   load_config, validate)
from awqguard.quantizer.config import QuantConfig


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config() is None
    assert load_config() == DEFAULTS


def test_yaml_overrides_merge_and_gate_overrides(tmp_path):
    path = tmp_path / "awqguard.yaml"
    path.write_text("seeds: [3]\npipeline: {top_k: 10}\ngates:\n  coverage: {threshold: 0.8}\n"
                    "  kl-mean: {enabled: false}\n")
    config = load_config(path)
    assert config["seeds"] == [3] and config["pipeline"]["top_k"] == 10
    assert config["pipeline"]["chunk_tokens"] == 64                        # untouched defaults kept
    gates = {g.id: g for g in gates_from_config(config)}
    assert gates["coverage"].threshold == 0.8 and "kl-mean" not in gates


def test_pyproject_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.awqguard]\nlimit = 5\n[tool.awqguard.decoding]\ngreedy = true\n")
    assert find_config(tmp_path) == tmp_path / "pyproject.toml"
    config = load_config(tmp_path / "pyproject.toml")
    assert config["limit"] == 5 and config["decoding"]["greedy"] is True


@pytest.mark.parametrize("text,match", [
    ("sedes: [1]\n", r"unknown key 'sedes' \(did you mean 'seeds'\?\)"),
    ("pipeline: {topk: 3}\n", r"pipeline: unknown key 'topk' \(did you mean 'top_k'\?\)"),
    ("gates: {coverge: {threshold: 1}}\n", r"unknown gate 'coverge' \(did you mean 'coverage'\?\)"),
    ("gates: {coverage: {threshold: high}}\n", r"gates.coverage.threshold: 'high' is not of type 'number'"),
    ("decoding: {top_p: 2}\n", r"decoding.top_p: 2 is greater than the maximum of 1"),
    ("seeds: 0\n", r"seeds: 0 is not of type 'array'"),
])
def test_bad_config_names_the_key(tmp_path, text, match):
    path = tmp_path / "awqguard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


# ---- CheckConfig: the one parsed configuration of awqguard check and pytest --awq-gates ---------------

def _merged_as_before(path, overrides: dict, label: str) -> dict:
    """The merge the front ends did by hand before CheckConfig existed: the dict must stay byte-identical."""
    config = load_config(path)
    for key in ("reference", "candidate", "suite", "out"):
        if overrides.get(key) is not None:
            config[key] = str(overrides[key])
    if overrides.get("seeds") is not None:
        config["seeds"] = overrides["seeds"]
    if overrides.get("limit") is not None:
        config["limit"] = overrides["limit"]
    if overrides.get("decoding.greedy"):
        config["decoding"]["greedy"] = True
    validate({k: v for k, v in config.items() if k != "gates"}, label)
    return config


@pytest.mark.parametrize("overrides", [
    {},
    {"suite": Path("s"), "reference": "r.gguf", "candidate": None, "out": Path("o")},
    {"seeds": [3, 4], "limit": 2, "decoding.greedy": True},
    {"seeds": None, "limit": None, "decoding.greedy": None, "out": None},
])
def test_check_config_data_is_the_old_merge_byte_for_byte(tmp_path, overrides):
    path = tmp_path / "awqguard.yaml"
    path.write_text("seeds: [7]\nquantize: {w_bit: 4, group_size: 32}\ngates:\n  coverage: {threshold: 0.8}\n")
    check = build_check_config(path, overrides)
    expected = _merged_as_before(path, overrides, "command line")
    assert json.dumps(check.data, sort_keys=False) == json.dumps(expected, sort_keys=False)
    assert check.gates == gates_from_config(expected)
    assert check.quantize == QuantConfig(**expected["quantize"])
    assert check.out == Path(expected["out"])


def test_check_config_defaults_and_frozen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check = build_check_config(None)
    assert isinstance(check, CheckConfig) and check.data == DEFAULTS and check.data is not DEFAULTS
    assert check.out == Path("reports/latest") and check.quantize == QuantConfig(w_bit=4, group_size=64)
    assert [g.id for g in check.gates] == [g.id for g in gates_from_config(DEFAULTS)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.out = Path("elsewhere")
    before = copy.deepcopy(DEFAULTS)
    build_check_config(None, {"decoding.greedy": True, "seeds": [9]})
    assert DEFAULTS == before                                  # overrides never leak into the defaults


@pytest.mark.parametrize("text,overrides,label,match", [
    ("", {"limit": 0}, "command line", r"^command line: limit: 0 is less than the minimum of 1$"),
    ("", {"suite": 3}, "pytest options", r"^pytest options: suite: 3 is not of type 'string'$"),
    ("pipeline: {topk: 3}\n", {"limit": 0}, "command line", r"awqguard.yaml: pipeline: unknown key 'topk'"),
    ("quantize: {w_bits: 4}\n", {}, "command line", r"^quantize: .*unexpected keyword argument 'w_bits'"),
    ("quantize: {w_bit: 5}\n", {}, "command line", r"^w_bit must be one of \(2, 3, 4, 8\); got 5$"),
    ("quantize: {max_flip_percent: lots}\n", {}, "command line", r"^quantize: could not convert string"),
    ("quantize: {version: gemv}\n", {}, "command line",
     r"^version: only 'gemm' is written .*got 'gemv'; remove the key or set version: gemm$"),
])
def test_check_config_errors_name_the_source_and_key(tmp_path, text, overrides, label, match):
    path = tmp_path / "awqguard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        build_check_config(path, overrides, label)


def test_check_config_accepts_gemm_in_any_case(tmp_path):
    path = tmp_path / "awqguard.yaml"
    path.write_text("quantize: {version: GEMM}\n")
    check = build_check_config(path)
    assert check.data["quantize"]["version"] == "GEMM"          # recorded as written
    assert check.quantize.to_dict()["version"] == "gemm"        # the candidate's cache key is unchanged
