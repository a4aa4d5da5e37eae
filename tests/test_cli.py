"""The command line as a user meets it: exit codes, one-line errors, nothing half-written."""

import json
import os
import subprocess
import sys

import pytest

import tiny_models


def awqguard(*args, cwd=None):
    env = dict(os.environ, CI="1")
    return subprocess.run([sys.executable, "-m", "awqguard.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tiny_models.save_hf_folder("llama-gqa", root / "tiny")
    (root / "calib.jsonl").write_text("\n".join(json.dumps({"text": p}) for p in tiny_models.CALIB_TEXT.split("\n\n")))
    return root


def test_quantize_tiny_end_to_end(tiny):
    out = tiny / "q"
    r = awqguard("quantize", tiny / "tiny", "--out", out, "--group-size", "32", "--n-samples", "8",
                 "--seqlen", "32", "--calib", tiny / "calib.jsonl", "--no-duo-scaling", "--not-convert", "down_proj")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr
    record = json.loads((out / "awqguard.json").read_text())
    assert record["config"]["duo_scaling"] is False
    assert record["config"]["modules_to_not_convert"] == ["down_proj"]
    assert record["quantization"]["quantized_linears"] == 2 * 6
    again = awqguard("quantize", tiny / "tiny", "--out", out, "--group-size", "32", "--n-samples", "8",
                     "--seqlen", "32", "--calib", tiny / "calib.jsonl", "--no-duo-scaling", "--not-convert", "down_proj")
    assert again.returncode == 0 and "already holds this checkpoint" in again.stderr


BASE = {"--group-size": "32", "--n-samples": "8", "--seqlen": "32", "--calib": "calib.jsonl"}


@pytest.mark.parametrize("change,expect", [
    ({"--group-size": "128"}, "does not divide in_features 64"),
    ({"--group-size": "48"}, "group_size must be -1 (whole row) or a power of two"),
    ({"--n-samples": "5000"}, "calibration data has"),
    ({"--calib": "missing.txt"}, "calibration source missing.txt does not exist"),
    ({"--w-bit": "5"}, "w_bit must be one of"),
    ({"--max-flip-percent": "1.5"}, "max_flip_percent is a share of in_features in [0, 1]"),
    ({"--knee-tolerance": "-2"}, "knee_tolerance is a share of the searched channels in [-1, 1]"),
])
def test_bad_input_exits_4_with_one_clear_line(tiny, change, expect):
    options = [x for kv in {**BASE, **change}.items() for x in kv]
    r = awqguard("quantize", "tiny", "--out", "bad", *options, cwd=tiny)
    assert r.returncode == 4, r.stderr
    assert expect in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tiny / "bad").exists()


def test_quantize_with_dh_rounding_records_what_it_did(tiny):
    out = tiny / "q-dh"
    r = awqguard("quantize", tiny / "tiny", "--out", out, "--group-size", "32", "--n-samples", "8",
                 "--seqlen", "32", "--calib", tiny / "calib.jsonl", "--rounding", "dh",
                 "--max-flip-percent", "0.05", "--knee-tolerance", "0.1")
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "awqguard.json").read_text())
    assert {k: record["config"][k] for k in ("rounding", "max_flip_percent", "knee_tolerance")} == {
        "rounding": "dh", "max_flip_percent": 0.05, "knee_tolerance": 0.1}
    dh = record["quantization"]["dh"]
    assert 0 < dh["flipped_share"] <= 0.05 and 0 < dh["outlier_share"] < 1
    assert f"{dh['flipped_share']:.2%} of weights flipped" in r.stderr
    r = awqguard("quantize", "--out", tiny / "bad", "--rounding", "stochastic")
    assert r.returncode == 2 and "invalid choice: 'stochastic'" in r.stderr


def test_missing_model_and_unknown_option(tiny):
    r = awqguard("quantize", tiny / "nope", "--out", tiny / "bad")
    assert r.returncode == 4 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = awqguard("quantize", "--out", tiny / "bad", "--group-sz", "64")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr   # argparse's own usage error


def test_doctor_reports_machine_and_paths():
    r = awqguard("doctor", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["machine"]["torch"] and "cuda_available" in info["machine"]
    assert info["kernels"]["paths"]["reference"]["available"] is True
    assert info["kernels"]["default_cpu"] == "dequant"
    r = awqguard("doctor")
    assert r.returncode == 0 and "kernel paths" in r.stdout


QUANT_OPTIONS = {"--w-bit": "w_bit", "--n-samples": "n_samples", "--seqlen": "seqlen", "--rounding": "rounding",
                 "--max-flip-percent": "max_flip_percent", "--knee-tolerance": "knee_tolerance", "--seed": "seed",
                 "--version": "version"}


def test_quantize_defaults_are_quantconfigs_and_help_shows_them():
    import dataclasses

    from awqguard.cli import build_parser
    from awqguard.quantizer.config import QuantConfig
    fields = {f.name: f.default for f in dataclasses.fields(QuantConfig)}
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["quantize"]
    actions = {a.option_strings[0]: a for a in sub._actions if a.option_strings}
    help_text = " ".join(sub.format_help().split())
    for option, field in QUANT_OPTIONS.items():
        assert actions[option].default == fields[field], option
        assert f"(default {fields[field]}" in " ".join((actions[option].help % {"default": fields[field]}).split())
    assert f"(default {fields['group_size']};" in help_text and "(default 0.01 = 1%)" in help_text


def test_version_gemv_is_gone_from_quantize(tiny):
    r = awqguard("quantize", tiny / "tiny", "--out", tiny / "bad", "--version", "gemv")
    assert r.returncode == 2 and "invalid choice: 'gemv'" in r.stderr
    assert not (tiny / "bad").exists()


def test_check_refuses_a_gemv_quantize_section_before_any_work(tmp_path, capsys):
    from awqguard.cli import main
    cfg = tmp_path / "awqguard.yaml"
    cfg.write_text("quantize: {version: gemv}\n")
    assert main(["check", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "awqguard check: error: version: only 'gemm' is written" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_check_command_line_overrides_the_config_file(tmp_path):
    from pathlib import Path

    from awqguard.cli import build_parser, check_config
    cfg = tmp_path / "awqguard.yaml"
    cfg.write_text("seeds: [5]\nsuite: from-file\n")
    args = build_parser().parse_args(["check", "--config", str(cfg), "--seeds", "1, 2", "--limit", "3", "--greedy",
                                      "--out", str(tmp_path / "o")])
    check = check_config(args)
    assert check.data["seeds"] == [1, 2] and check.data["limit"] == 3 and check.data["decoding"]["greedy"] is True
    assert check.data["suite"] == "from-file" and check.data["out"] == str(tmp_path / "o")
    assert check.out == Path(tmp_path / "o")


def test_check_strict_becomes_the_decision_override(tmp_path, monkeypatch):
    from awqguard import cli
    from awqguard.gates import config as gates_config
    parser = cli.build_parser()
    assert cli.check_overrides(parser.parse_args(["check"]))["decision.strict"] is None      # the file decides
    assert cli.check_overrides(parser.parse_args(["check", "--strict"]))["decision.strict"] is True
    seen = {}
    monkeypatch.setattr(gates_config, "build_check_config", lambda path, overrides, label: seen.update(overrides))
    cli.check_config(parser.parse_args(["check", "--strict", "--greedy"]))
    assert seen["decision.strict"] is True and seen["decoding.greedy"] is True
    sub = next(a for a in parser._actions if a.dest == "command").choices["check"]
    assert "inconclusive gates fail the check" in " ".join(sub.format_help().split())
