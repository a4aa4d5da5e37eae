import pytest

from awqguard.errors import ConfigError
from awqguard.gates.config import DEFAULTS, find_config, gates_from_config, load_config


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
