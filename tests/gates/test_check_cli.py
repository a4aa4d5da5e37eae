"""`awqguard check` as a user meets it: exit codes 0/1/4, one clear line for bad input, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tiny_models
from engine_helpers import reduced_suite, save_sharp_model

FAST_YAML = {"pipeline": {"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 2, "quantize_embedder": False},
             "decoding": {"max_new_tokens": 8}, "probes": {"items": 1, "k": [3]}, "entropy": {"tokens": 40},
             "perplexity": {"window": 64, "max_windows": 2}, "decision": {"min_items": 1}}


def check(root: Path, *args, config: dict | None = None):
    cfg = root / "awqguard.yaml"
    cfg.write_text(yaml.safe_dump({**FAST_YAML, **(config or {})}))
    env = dict(os.environ, CI="1", AWQGUARD_CACHE=str(root / "cache"))
    return subprocess.run([sys.executable, "-m", "awqguard.cli", "check", "--config", str(cfg), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    reduced_suite(root / "suite", {"qa": 2, "long": 1})
    tiny_models.save_hf_folder("llama-gqa", root / "ref", seed=0)
    save_sharp_model(root / "other")
    return root


def _common(root):
    return ["--reference", root / "ref", "--suite", root / "suite", "--seeds", "0"]


def test_exit_0_for_identical_and_1_for_a_different_model(root):
    ok = check(root, *_common(root), "--candidate", root / "ref", "--out", root / "out-same")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASSED" in ok.stdout and "perplexity-ratio" in ok.stdout
    assert json.loads((root / "out-same" / "results.json").read_text())["passed"] is True
    bad = check(root, *_common(root), "--candidate", root / "other", "--out", root / "out-other")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED" in bad.stdout and "symptom:" in bad.stdout and "fix:" in bad.stdout
    warn_only = check(root, *_common(root), "--candidate", root / "other", "--out", root / "out-w", "--warn-only")
    assert warn_only.returncode == 0 and "FAILED" in warn_only.stdout


def _bad_suite(root):
    bad = root / "bad-suite"
    reduced_suite(bad, {"qa": 1})
    spec = yaml.safe_load((bad / "suite.yaml").read_text())
    spec["items"][0]["anchor"] = "auth#no-such-section"
    (bad / "suite.yaml").write_text(yaml.safe_dump(spec))
    return bad


def _unreadable(root):
    folder = root / "unreadable"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{ not json")
    return folder


def _wrong_tokenizer(root):
    """The tiny model with a tokenizer whose ids differ from the reference's."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    folder = root / "wrong-tok"
    tiny_models.build("llama-gqa").save_pretrained(str(folder))
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{chr(c): 130 - c for c in range(32, 127)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = tiny_models.CHAT_TEMPLATE
    fast.save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("case,expect", [
    ("suite", "unknown section id"),
    ("candidate", "cannot"),
    ("tokenizer", "encodes text differently"),
    ("config", "unknown key 'pipline' (did you mean 'pipeline'?)"),
])
def test_bad_input_exits_4_with_a_clear_line(root, case, expect):
    args, config = _common(root), None
    if case == "suite":
        args = ["--reference", root / "ref", "--suite", _bad_suite(root), "--candidate", root / "ref"]
    elif case == "candidate":
        args += ["--candidate", _unreadable(root)]
    elif case == "tokenizer":
        args += ["--candidate", _wrong_tokenizer(root)]
    else:
        config = {"pipline": {"top_k": 3}}
        args += ["--candidate", root / "ref"]
    r = check(root, *args, "--out", root / f"out-{case}", config=config)
    assert r.returncode == 4, r.stdout + r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert not (root / f"out-{case}" / "results.json").exists()
