"""quantize -> save -> load on tiny models: mechanics, file format, and error handling."""

import json

import pytest
import torch
from safetensors.torch import save_file

import tiny_models
from awqguard import QuantConfig, load_quantized, quantize
from awqguard.errors import CalibrationError, ConfigError, ModelLoadError, OutputExistsError
from awqguard.kernels.wqlinear import AWQLinear

CFG = QuantConfig(group_size=32, n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64)


@pytest.fixture()
def tiny_dir(tmp_path):
    folder = tmp_path / "tiny-llama"
    tiny_models.save_hf_folder("llama-gqa", folder)
    return folder


@pytest.fixture()
def calib_file(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(tiny_models.CALIB_TEXT)
    return path


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _no_partial_dirs(parent):
    return not [p for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_save_load_round_trip_identical_logits(tiny_dir, calib_file, tmp_path):
    out = tmp_path / "q"
    result = quantize(str(tiny_dir), out=out, config=CFG, calib=[calib_file])
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "awq", "bits": 4, "group_size": 32,
                                             "zero_point": True, "version": "gemm",
                                             "modules_to_not_convert": None}
    record = json.loads((out / "awqguard.json").read_text())
    assert record["calibration"]["n_samples"] == 8 and record["wall_time_s"] > 0
    assert record["quantization"]["quantized_linears"] == 2 * 7
    assert (out / "tokenizer.json").exists()
    loaded = load_quantized(out)
    n_awq = sum(isinstance(m, AWQLinear) for m in loaded.modules())
    assert n_awq == 14
    ids = torch.randint(3, 97, (2, 24))
    assert torch.equal(_logits(result.model, ids), _logits(loaded, ids))
    assert _no_partial_dirs(tmp_path)


def test_quantized_model_is_close_to_float_and_generates(tiny_dir, calib_file, tmp_path):
    from transformers import AutoModelForCausalLM
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_dir)).eval()
    result = quantize(str(tiny_dir), out=tmp_path / "q", config=CFG, calib=[calib_file])
    ids = torch.randint(3, 97, (1, 16))
    a, b = _logits(ref, ids), _logits(result.model, ids)
    assert (b - a).norm() / a.norm() < 0.2
    out = result.model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 20)


def test_same_request_reuses_and_different_request_refuses(tiny_dir, calib_file, tmp_path):
    out = tmp_path / "q"
    quantize(str(tiny_dir), out=out, config=CFG, calib=[calib_file])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = quantize(str(tiny_dir), out=out, config=CFG, calib=[calib_file])
    assert again.reused
    with pytest.raises(OutputExistsError, match="different checkpoint.*config"):
        quantize(str(tiny_dir), out=out, config=CFG.replace(group_size=16), calib=[calib_file])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    forced = quantize(str(tiny_dir), out=out, config=CFG.replace(group_size=16), calib=[calib_file], force=True)
    assert not forced.reused and json.loads((out / "config.json").read_text())["quantization_config"]["group_size"] == 16


def test_output_folder_with_other_files_is_refused(tiny_dir, calib_file, tmp_path):
    out = tmp_path / "q"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="other files"):
        quantize(str(tiny_dir), out=out, config=CFG, calib=[calib_file])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_group_size_that_does_not_divide_names_layer_and_sizes(tiny_dir, calib_file, tmp_path):
    with pytest.raises(ConfigError) as err:
        quantize(str(tiny_dir), out=tmp_path / "q", config=CFG.replace(group_size=128), calib=[calib_file])
    msg = str(err.value)
    assert "model.layers.0.self_attn.q_proj" in msg and "in_features 64" in msg and "64, 32, 16, -1" in msg
    assert not (tmp_path / "q").exists() and _no_partial_dirs(tmp_path)


def test_calibration_too_short(tiny_dir, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("only a few words")
    with pytest.raises(CalibrationError, match=r"17 tokens but 8 samples x 8 tokens need 64.*at most 2"):
        quantize(str(tiny_dir), out=tmp_path / "q", config=CFG.replace(seqlen=8), calib=[short])
    with pytest.raises(CalibrationError, match=r"17 tokens, less than one 32-token sample"):
        quantize(str(tiny_dir), out=tmp_path / "q", config=CFG, calib=[short])
    assert not (tmp_path / "q").exists()


def test_nan_weights_are_named(tmp_path, calib_file):
    folder = tmp_path / "nan-model"
    model = tiny_models.save_hf_folder("llama-gqa", folder)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["model.layers.1.mlp.down_proj.weight"][0, 0] = float("nan")
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    for stream in (True, False):
        with pytest.raises(ModelLoadError, match=r"model.layers.1.mlp.down_proj.weight holds 1 NaN/Inf"):
            quantize(str(folder), out=tmp_path / "q", config=CFG, calib=[calib_file], stream=stream)
        assert not (tmp_path / "q").exists() and _no_partial_dirs(tmp_path)
    del sd["lm_head.weight"]                      # an untied head missing from the file is named, not invented
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"missing: \['lm_head.weight'\]"):
        quantize(str(folder), out=tmp_path / "q", config=CFG, calib=[calib_file])


def test_missing_and_corrupt_model_files(tmp_path, calib_file):
    with pytest.raises(ModelLoadError, match="does not exist"):
        quantize(str(tmp_path / "nope"), out=tmp_path / "q", config=CFG, calib=[calib_file])
    bad_gguf = tmp_path / "bad.gguf"
    bad_gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="bad.gguf"):
        quantize(str(bad_gguf), out=tmp_path / "q", config=CFG, calib=[calib_file])
    folder = tmp_path / "truncated"
    tiny_models.save_hf_folder("llama-gqa", folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot load model"):
        quantize(str(folder), out=tmp_path / "q", config=CFG, calib=[calib_file])
    assert not (tmp_path / "q").exists() and _no_partial_dirs(tmp_path)


def test_fake_quant_bits_save_float_checkpoint(tiny_dir, calib_file, tmp_path):
    out = tmp_path / "q3"
    result = quantize(str(tiny_dir), out=out, config=CFG.replace(w_bit=3), calib=[calib_file])
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert result.record["fake_quantized"] is True
    loaded = load_quantized(out)
    assert not any(isinstance(m, AWQLinear) for m in loaded.modules())
    w = loaded.model.layers[0].mlp.down_proj.weight.reshape(64, 4, 32)
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 32)) <= 8     # at most 2^3 levels per group
    ids = torch.randint(3, 97, (1, 12))
    torch.testing.assert_close(_logits(loaded, ids), _logits(result.model, ids))


@pytest.mark.parametrize("name", ["qwen3", "gemma2", "phi3", "opt", "gpt2", "gpt_neox"])
def test_quantize_other_architectures(name, tmp_path, calib_file):
    folder = tmp_path / name
    ref = tiny_models.save_hf_folder(name, folder)
    result = quantize(str(folder), out=tmp_path / "q", config=CFG, calib=[calib_file])
    assert result.record["quantization"]["max_fold_error"] < 1e-4
    loaded = load_quantized(tmp_path / "q")
    ids = torch.randint(3, 97, (1, 12))
    a, b = tiny_models.outputs(ref, ids), _logits(loaded, ids)
    assert torch.isfinite(b).all() and (b - a).norm() / a.norm() < 0.3
