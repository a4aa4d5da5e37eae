"""Hostile and broken input across quantize, check, fixtures validate, verify and the config.

Every case runs the real command line in-process and asserts: the exit code (4 for the user's
mistake, 1 for a failed gate, never 3), the file / item / field the message names, no traceback,
nothing half-written, no code executed, and strict JSON (no NaN or Infinity) in every file written.
The report's own hostile cases are in tests/report/test_report_hostile.py.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import tiny_models
from awqguard import files
from awqguard.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = {"pipeline": {"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 2, "quantize_embedder": False},
        "decoding": {"max_new_tokens": 8}, "probes": {"items": 1, "k": [3]}, "entropy": {"tokens": 40},
        "perplexity": {"window": 64, "max_windows": 2}, "seeds": [0], "decision": {"min_items": 1}}
EVIL_YAML = "name: x\nitems: !!python/object/apply:os.system ['touch {marker}']\n"


@dataclass
class Outcome:
    code: int
    text: str


def run(capsys, *args) -> Outcome:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Outcome(code, captured.out + captured.err)


def expect(outcome: Outcome, code: int, *names) -> None:
    assert outcome.code == code, outcome.text
    assert "Traceback" not in outcome.text and "internal error" not in outcome.text, outcome.text
    for name in names:
        assert str(name) in outcome.text, (name, outcome.text)


def strict_json_everywhere(folder: Path) -> None:
    """Every .json and .jsonl file under `folder` parses with NaN and Infinity refused."""
    for path in [*folder.rglob("*.json"), *folder.rglob("*.jsonl")]:
        text = path.read_text(encoding="utf-8")
        for chunk in (text.splitlines() if path.suffix == ".jsonl" else [text]):
            files.loads(chunk)


def no_staging_left(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".partial-" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    tiny_models.save_hf_folder("llama-gqa", root / "tiny")
    (root / "calib.txt").write_text(tiny_models.CALIB_TEXT)
    suite = root / "suite"
    spec = yaml.safe_load((ROOT / "fixtures/default/suite.yaml").read_text())
    spec["items"] = [it for it in spec["items"] if it.get("kind", "qa") == "qa"][:2]
    spec["items"][0]["id"] = "q<img src=x onerror=alert(1)>|pipe"
    shutil.copytree(ROOT / "fixtures/default/corpus", suite / "corpus")
    (suite / "suite.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "fast.yaml").write_text(yaml.safe_dump(FAST))
    return root


@pytest.fixture(autouse=True)
def isolated(world, monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("COLUMNS", "400")        # rich folds long table cells at 80 columns
    monkeypatch.setenv("AWQGUARD_CACHE", str(world / "cache"))
    monkeypatch.chdir(tmp_path)


def copy_suite(world, tmp_path) -> Path:
    suite = tmp_path / "suite"
    shutil.copytree(world / "suite", suite)
    return suite


QUANTIZE = ["--group-size", "32", "--n-samples", "8", "--seqlen", "32"]


# ---- quantize ---------------------------------------------------------------------------------------

def quantize(capsys, world, out, *extra, calib=None):
    return run(capsys, "quantize", world / "tiny", "--out", out, *QUANTIZE, "--calib", calib or world / "calib.txt", *extra)


def test_quantize_out_is_a_file(capsys, world, tmp_path):
    (tmp_path / "taken").write_text("keep me")
    expect(quantize(capsys, world, tmp_path / "taken"), 4, "taken is a file")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_quantize_out_under_a_file(capsys, world, tmp_path):
    (tmp_path / "f").write_text("x")
    expect(quantize(capsys, world, tmp_path / "f" / "ckpt"), 4, "is a file, so nothing can be created under it")


def test_quantize_out_unwritable(capsys, world):
    expect(quantize(capsys, world, "/proc/awqguard-ckpt"), 4, "--out /proc/awqguard-ckpt", "cannot write")


def test_quantize_out_holds_other_files(capsys, world, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    expect(quantize(capsys, world, tmp_path / "busy"), 4, "already holds other files")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("name,content,named", [
    ("calib.txt", b"good text\n\nbad \xff\xfe byte", "calib.txt is not UTF-8 text (byte 0xff"),
    ("calib.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "calib.jsonl is not UTF-8 text (byte 0xe9"),
    ("calib.jsonl", b'{"text": "ok"}\n{"text": \n', "calib.jsonl:2: not valid JSON"),
    ("calib.jsonl", b'{"text": 3}\n', 'calib.jsonl:1: each line needs a string field "text"'),
    ("calib.csv", b"a,b\n", "use .txt, .md or .jsonl"),
])
def test_quantize_bad_calibration_file(capsys, world, tmp_path, name, content, named):
    (tmp_path / name).write_bytes(content)
    expect(quantize(capsys, world, tmp_path / "out", calib=tmp_path / name), 4, named)
    assert not (tmp_path / "out").exists()


def test_quantize_calibration_suite_with_bad_yaml(capsys, world, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "suite.yaml").write_text("items: [unclosed\n")
    expect(quantize(capsys, world, tmp_path / "out", calib=tmp_path / "s"), 4, "suite.yaml: not valid YAML")


def test_quantize_calibration_suite_with_a_python_tag_runs_nothing(capsys, world, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "suite.yaml").write_text(EVIL_YAML.format(marker=tmp_path / "pwned"))
    expect(quantize(capsys, world, tmp_path / "out", calib=tmp_path / "s"), 4, "suite.yaml")
    assert not (tmp_path / "pwned").exists()


def test_quantize_dataset_name_is_not_downloaded(capsys, world, tmp_path):
    expect(quantize(capsys, world, tmp_path / "out", calib="pileval"), 4, "does not download")


def _model_copy(world, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(world / "tiny", folder)
    return folder


@pytest.mark.parametrize("content,named", [
    (b'{"model_type": "llama", "x": "\xff"}', "config.json"),
    (b"[1, 2, 3]", "config.json"),
    (b'{"model_type": "no-such-architecture"}', "model"),
    (b"{ not json", "config.json"),
])
def test_quantize_broken_model_config(capsys, world, tmp_path, content, named):
    model = _model_copy(world, tmp_path)
    (model / "config.json").write_bytes(content)
    out = run(capsys, "quantize", model, "--out", tmp_path / "out", *QUANTIZE, "--calib", world / "calib.txt")
    expect(out, 4, named)
    assert not (tmp_path / "out").exists()


def test_quantize_truncated_weights(capsys, world, tmp_path):
    model = _model_copy(world, tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    expect(run(capsys, "quantize", model, "--out", tmp_path / "out", *QUANTIZE, "--calib", world / "calib.txt"), 4,
           "model")
    assert not (tmp_path / "out").exists()


def _evil_pickle_folder(world, tmp_path) -> Path:
    import torch

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)
    model = _model_copy(world, tmp_path)
    (model / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": Evil()}, model / "pytorch_model.bin")
    return model


def test_quantize_pickle_weights_are_refused_without_running_them(capsys, world, tmp_path):
    model = _evil_pickle_folder(world, tmp_path)
    out = run(capsys, "quantize", model, "--out", tmp_path / "out", *QUANTIZE, "--calib", world / "calib.txt")
    expect(out, 4, "pickle", "safetensors")
    assert not (tmp_path / "pwned").exists()
    assert "\x1b" not in out.text and "weights_only=False" not in out.text


def test_quantize_nan_weights_named(capsys, world, tmp_path):
    import safetensors.torch as st
    model = _model_copy(world, tmp_path)
    tensors = st.load_file(str(model / "model.safetensors"))
    tensors["model.layers.1.mlp.up_proj.weight"][0, :3] = float("nan")
    st.save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    out = run(capsys, "quantize", model, "--out", tmp_path / "out", *QUANTIZE, "--calib", world / "calib.txt")
    expect(out, 4, "model.layers.1.mlp.up_proj")
    assert not (tmp_path / "out").exists()
    no_staging_left(tmp_path)


# ---- fixtures validate ------------------------------------------------------------------------------

def test_validate_non_utf8_corpus_file_is_named_and_the_rest_still_checked(capsys, world, tmp_path):
    suite = copy_suite(world, tmp_path)
    (suite / "corpus" / "auth.md").write_bytes(b"# Auth\n\n\x81 bad")
    out = run(capsys, "fixtures", "validate", suite)
    expect(out, 4, "auth.md", "not UTF-8", "unknown section id")     # items anchored in auth.md now dangle


def test_validate_non_utf8_suite_yaml(capsys, world, tmp_path):
    suite = copy_suite(world, tmp_path)
    (suite / "suite.yaml").write_bytes(b"name: x\ndescription: \xc3\x28\n")
    expect(run(capsys, "fixtures", "validate", suite), 4, "suite.yaml", "not UTF-8")


@pytest.mark.parametrize("text,named", [
    ("- just\n- a list\n", "must be a mapping"),
    ("name: x\nitems: [\n", "not valid YAML"),
    ("name: x\ncorpus: nowhere\nitems: []\n", "corpus folder does not exist"),
])
def test_validate_malformed_suite_yaml(capsys, world, tmp_path, text, named):
    suite = copy_suite(world, tmp_path)
    (suite / "suite.yaml").write_text(text)
    expect(run(capsys, "fixtures", "validate", suite), 4, named)


def test_validate_python_tag_runs_nothing(capsys, world, tmp_path):
    suite = copy_suite(world, tmp_path)
    (suite / "suite.yaml").write_text(EVIL_YAML.format(marker=tmp_path / "pwned"))
    expect(run(capsys, "fixtures", "validate", suite), 4, "suite.yaml")
    assert not (tmp_path / "pwned").exists()


def test_validate_missing_folder(capsys, tmp_path):
    expect(run(capsys, "fixtures", "validate", tmp_path / "nowhere"), 4, "no suite.yaml here")


def test_validate_items_with_every_kind_of_mistake(capsys, world, tmp_path):
    suite = copy_suite(world, tmp_path)
    spec = yaml.safe_load((suite / "suite.yaml").read_text())
    spec["items"] = [{"id": "a", "question": "q?", "paraphrases": ["x"], "anchor": "auth#nope", "distractor": "auth#nope2",
                      "answer": "y", "colour": "red"}, {"id": "a", "kind": "poem"}, "not a mapping"]
    (suite / "suite.yaml").write_text(yaml.safe_dump(spec))
    out = run(capsys, "fixtures", "validate", suite)
    expect(out, 4, "unknown section id 'auth#nope'", "duplicate id", "'poem' is not one of", "unknown field",
           "each item must be a mapping", "at least 3 are needed")


# ---- the check configuration ------------------------------------------------------------------------

def check(capsys, world, tmp_path, *extra, config: dict | str | bytes | None = None):
    cfg = tmp_path / "awqguard.yaml"
    if isinstance(config, bytes):
        cfg.write_bytes(config)
    else:
        cfg.write_text(config if isinstance(config, str) else yaml.safe_dump({**FAST, **(config or {})}))
    return run(capsys, "check", "--config", cfg, "--reference", world / "tiny", "--candidate", world / "tiny",
               "--suite", world / "suite", *extra)


@pytest.mark.parametrize("config,named", [
    ("gates: {kl-mean: {threshold: .nan}}\n", "gates.kl-mean.threshold: nan is not a finite number"),
    ("gates: {perplexity-ratio: {threshold: .inf}}\n", "gates.perplexity-ratio.threshold: inf is not a finite"),
    ("gates: {coverage: {tolerance: .nan}}\n", "gates.coverage.tolerance: nan"),
    ("decoding: {temperature: .nan}\n", "decoding.temperature: nan"),
    ("decoding: {top_p: .inf}\n", "decoding.top_p"),
    ("pipline: {top_k: 3}\n", "unknown key 'pipline' (did you mean 'pipeline'?)"),
    ("gates: {kl-man: {threshold: 1}}\n", "unknown gate 'kl-man' (did you mean 'kl-mean'?)"),
    ("seeds: []\n", "seeds"),
    ("- a\n- list\n", "is not of type 'object'"),
    ("suite: [unclosed\n", "not valid YAML"),
    ("pipeline: !!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
    (b"seeds: [0]\n# caf\xe9\n", "awqguard.yaml is not UTF-8 text (byte 0xe9"),
])
def test_check_bad_config(capsys, world, tmp_path, config, named):
    outcome = check(capsys, world, tmp_path, "--out", tmp_path / "out", config=config)
    expect(outcome, 4, named)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "out" / "results.json").exists()
    strict_json_everywhere(tmp_path)


def test_check_config_is_a_folder(capsys, world, tmp_path):
    (tmp_path / "cfgdir").mkdir()
    out = run(capsys, "check", "--config", tmp_path / "cfgdir", "--out", tmp_path / "out")
    expect(out, 4, "cfgdir is a folder")


def test_check_bad_seeds_option(capsys, world, tmp_path):
    expect(check(capsys, world, tmp_path, "--seeds", "a,b", "--out", tmp_path / "out"), 4, "--seeds takes")


def test_check_out_is_a_file_refused_before_any_work(capsys, world, tmp_path):
    (tmp_path / "out-file").write_text("x")
    outcome = check(capsys, world, tmp_path, "--out", tmp_path / "out-file")
    expect(outcome, 4, f"--out {tmp_path / 'out-file'} is a file; give a folder")
    assert (tmp_path / "out-file").read_text() == "x"


def test_check_out_unwritable_refused_and_not_hidden(capsys, world, tmp_path):
    expect(check(capsys, world, tmp_path, "--out", "/proc/awqguard-out"), 4, "--out /proc/awqguard-out", "cannot write")


def test_check_config_error_is_not_hidden_by_an_unusable_out(capsys, world, tmp_path):
    (tmp_path / "out-file").write_text("x")
    outcome = check(capsys, world, tmp_path, "--out", tmp_path / "out-file", "--seeds", "x")
    expect(outcome, 4, "--seeds takes comma-separated integers")
    assert (tmp_path / "out-file").read_text() == "x"


def test_check_error_with_control_characters_still_gives_well_formed_junit(capsys, world, tmp_path):
    import xml.etree.ElementTree as ET
    suite = tmp_path / "bad\x1b[31mname\x07"
    outcome = run(capsys, "check", "--config", _fast_config(tmp_path), "--reference", world / "tiny",
                  "--suite", suite, "--out", tmp_path / "out")
    expect(outcome, 4, "no suite.yaml here")
    ET.parse(tmp_path / "out" / "junit.xml")            # well-formed despite ESC and BEL in the message


def _fast_config(tmp_path) -> Path:
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump(FAST))
    return cfg


def test_failed_check_removes_the_previous_verdict(capsys, world, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("results.json", "report.html", "summary.md", "items.jsonl", "junit.xml"):
        (out / name).write_text("from an older run")
    outcome = check(capsys, world, tmp_path, "--out", out, "--seeds", "x")
    expect(outcome, 4, "--seeds")
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml"]
    assert "awqguard-check" in (out / "junit.xml").read_text()


# ---- check: inputs that reach the models ---------------------------------------------------------------

def test_check_candidate_with_custom_code_runs_nothing(capsys, world, tmp_path):
    cand = _model_copy(world, tmp_path)
    (cand / "evil.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n")
    config = json.loads((cand / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (cand / "config.json").write_text(json.dumps(config))
    outcome = run(capsys, "check", "--config", _fast_config(tmp_path), "--reference", world / "tiny",
                  "--candidate", cand, "--suite", world / "suite", "--out", tmp_path / "out")
    assert outcome.code in (0, 1, 4) and "Traceback" not in outcome.text
    assert not (tmp_path / "pwned").exists()


def test_check_pickle_candidate_is_refused_without_running_it(capsys, world, tmp_path):
    cand = _evil_pickle_folder(world, tmp_path)
    outcome = run(capsys, "check", "--config", _fast_config(tmp_path), "--reference", world / "tiny",
                  "--candidate", cand, "--suite", world / "suite", "--out", tmp_path / "out")
    expect(outcome, 4, "pickle")
    assert not (tmp_path / "pwned").exists()
    assert "\x1b" not in (tmp_path / "out" / "junit.xml").read_text()


@pytest.fixture(scope="module")
def nan_candidate(world):
    """The tiny model quantized by awqguard, then one of its scales set to NaN."""
    import safetensors.torch as st

    from awqguard.quantizer.api import quantize
    folder = world / "nan-candidate"
    quantize(str(world / "tiny"), out=folder, config={"w_bit": 4, "group_size": 32, "n_samples": 8, "seqlen": 32},
             calib=str(world / "calib.txt"))
    tensors = st.load_file(str(folder / "model.safetensors"))
    tensors["model.layers.0.mlp.down_proj.scales"][0, 0] = float("nan")
    st.save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_check_nan_candidate_fails_with_strict_json_and_escaped_summary(capsys, world, tmp_path, nan_candidate):
    import xml.etree.ElementTree as ET
    out = tmp_path / "out"
    outcome = run(capsys, "check", "--config", _fast_config(tmp_path), "--reference", world / "tiny",
                  "--candidate", nan_candidate, "--suite", world / "suite", "--out", out)
    expect(outcome, 1, "FAILED", "perplexity-ratio")
    strict_json_everywhere(out)
    results = files.loads((out / "results.json").read_text())
    assert any("Not a finite number" in n for n in results["notices"])
    assert next(g for g in results["gates"] if g["id"] == "perplexity-ratio")["status"] == "fail"
    ET.parse(out / "junit.xml")
    assert "<img" not in _outside_code_fences((out / "summary.md").read_text())   # code blocks show text literally
    report = (out / "report.html").read_text()
    assert "<img src=x" not in report
    no_staging_left(out)
    # the release evidence names this candidate's files; the deploy step's verify agrees
    expect(run(capsys, "verify", out / "results.json", "--candidate", nan_candidate), 1, "did not pass")


def _outside_code_fences(markdown: str) -> str:
    kept, fence = [], None
    for line in markdown.splitlines():
        if fence is None and line.startswith("```"):
            fence = line
        elif fence is not None and line == fence:
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


# ---- verify ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def passed_check(world, tmp_path_factory):
    """A check of the tiny model against itself (it passes), and the candidate folder it judged."""
    root = tmp_path_factory.mktemp("verify")
    cand = root / "cand"
    shutil.copytree(world / "tiny", cand)
    (root / "fast.yaml").write_text(yaml.safe_dump(FAST))
    os.environ["CI"] = "1"
    code = main(["check", "--config", str(root / "fast.yaml"), "--reference", str(world / "tiny"), "--candidate",
                 str(cand), "--suite", str(world / "suite"), "--out", str(root / "out")])
    assert code == 0
    return root / "out" / "results.json", cand


def test_verify_passes_for_the_checked_files(capsys, passed_check):
    results, cand = passed_check
    expect(run(capsys, "verify", results, "--candidate", cand), 0, "verified")


@pytest.mark.parametrize("damage,named", [
    (lambda c: (c / "config.json").write_text((c / "config.json").read_text() + " "), "config.json differs"),
    (lambda c: (c / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    (lambda c: (c / "pytorch_model.bin").write_bytes(b"extra"), "pytorch_model.bin was not part of the checked files"),
])
def test_verify_names_the_file_that_changed(capsys, passed_check, tmp_path, damage, named):
    results, cand = passed_check
    shipped = tmp_path / "shipped"
    shutil.copytree(cand, shipped)
    damage(shipped)
    expect(run(capsys, "verify", results, "--candidate", shipped), 4, named)


def test_verify_checks_the_suite_too(capsys, passed_check, world, tmp_path):
    results, cand = passed_check
    suite = copy_suite(world, tmp_path)
    (suite / "corpus" / "auth.md").write_text("# changed\n")
    expect(run(capsys, "verify", results, "--candidate", cand, "--suite", suite), 4, "suite", "auth.md differs")


def test_verify_results_without_evidence(capsys, passed_check, tmp_path):
    results, cand = passed_check
    data = files.loads(results.read_text())
    del data["evidence"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    expect(run(capsys, "verify", tmp_path / "old.json", "--candidate", cand), 4, "carries no release evidence")


def test_verify_results_with_nan_literal(capsys, passed_check, tmp_path):
    results, cand = passed_check
    (tmp_path / "nan.json").write_text(results.read_text().replace('"passed": true', '"passed": NaN', 1))
    expect(run(capsys, "verify", tmp_path / "nan.json", "--candidate", cand), 4, "nan.json")
