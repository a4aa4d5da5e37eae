"""Parallel CI jobs share one cold cache: both checks finish with the same verdict and the candidate and
the embedder are quantized once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tiny_models
from engine_helpers import reduced_suite
from test_check_cli import FAST_YAML

from awqguard.errors import OutputExistsError
from awqguard.quantizer.checkpoint import RECORD_FILE, save_checkpoint
from awqguard.quantizer.config import QuantConfig

QUANTIZE = {"w_bit": 4, "group_size": 32, "n_samples": 8, "seqlen": 32}


def _start_check(root: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, CI="1", AWQGUARD_CACHE=str(root / "cache"))
    return subprocess.Popen([sys.executable, "-m", "awqguard.cli", "check", "--config", str(root / "awqguard.yaml"),
                             "--out", str(root / name)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def test_two_checks_on_a_cold_cache_both_finish_and_quantize_once(tmp_path):
    reduced_suite(tmp_path / "suite", {"qa": 2})
    tiny_models.save_hf_folder("llama-gqa", tmp_path / "ref", seed=0)
    config = {**FAST_YAML, "reference": str(tmp_path / "ref"), "suite": str(tmp_path / "suite"), "seeds": [0],
              "quantize": QUANTIZE, "pipeline": {**FAST_YAML["pipeline"], "quantize_embedder": True}}
    (tmp_path / "awqguard.yaml").write_text(yaml.safe_dump(config))
    jobs = [_start_check(tmp_path, f"out-{i}") for i in range(2)]
    outputs = [job.communicate(timeout=900)[0] for job in jobs]
    codes = [job.returncode for job in jobs]
    assert codes[0] == codes[1] and codes[0] in (0, 1), outputs      # both reach a verdict (the tiny w4 model may fail)
    for text in outputs:    # awqguard's own calls trigger no third-party deprecation on the user's terminal
        assert "FutureWarning" not in text and "DeprecationWarning" not in text and "deprecated" not in text, text
    results = [json.loads((tmp_path / f"out-{i}" / "results.json").read_text()) for i in range(2)]
    assert results[0]["gates"] == results[1]["gates"]
    assert sorted(r["environment"]["candidate"]["reused"] for r in results) == [False, True]   # quantized once
    candidates = tmp_path / "cache" / "candidates"
    assert len([p for p in candidates.iterdir() if not p.name.startswith(".")]) == 1
    for kind in ("candidates", "embedders"):
        assert not [p for p in (tmp_path / "cache" / kind).iterdir() if ".partial-" in p.name]


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_models.build("llama-gqa"), tiny_models.char_tokenizer()


def test_a_checkpoint_published_first_by_another_process_is_kept(tmp_path, tiny_model):
    model, tok = tiny_model
    cfg = QuantConfig(w_bit=8, group_size=32)       # fake-quantized: save_checkpoint writes floats
    record = {"identity": {"model": "m", "config": cfg.to_dict()}}
    out = tmp_path / "entry"
    save_checkpoint(model, tok, out, cfg, {**record, "made_by": "first"})
    save_checkpoint(model, tok, out, cfg, {**record, "made_by": "second"})   # same identity: no error, first kept
    assert json.loads((out / RECORD_FILE).read_text())["made_by"] == "first"
    other = {"identity": {"model": "another", "config": cfg.to_dict()}}
    with pytest.raises(OutputExistsError, match="is not empty"):
        save_checkpoint(model, tok, out, cfg, other)
    assert json.loads((out / RECORD_FILE).read_text())["identity"]["model"] == "m"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
