"""The real SmolLM2-135M-Instruct, quantized in CI with a small calibration set."""

import copy

import pytest
import torch

from awqguard import QuantConfig, load_quantized, quantize
from awqguard.gates.perplexity import heldout_windows, model_perplexity
from awqguard.kernels.wqlinear import AWQLinear
from awqguard.texts import stdlib_docstrings

pytestmark = pytest.mark.slow

SMALL = QuantConfig(group_size=64, n_samples=8, seqlen=256, loss_tokens=1024)


def _answer(model, tokenizer, question):
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def quantized(smollm, tmp_path_factory):
    model, tokenizer = smollm
    out = tmp_path_factory.mktemp("smollm") / "awq"
    result = quantize(copy.deepcopy(model), tokenizer=tokenizer, out=out, config=SMALL)
    return result, out


def test_real_model_quantizes_and_answers(quantized, smollm):
    result, out = quantized
    _, tokenizer = smollm
    assert result.record["quantization"]["quantized_linears"] == 30 * 7
    assert result.record["quantization"]["max_fold_error"] < 1e-4
    loaded = load_quantized(out)
    assert sum(isinstance(m, AWQLinear) for m in loaded.modules()) == 210
    answer = _answer(loaded, tokenizer, "What is the capital of France?")
    assert "Paris" in answer, answer


def test_real_model_awq_perplexity_stays_near_float(quantized, smollm):
    model, tokenizer = smollm
    result, _ = quantized
    windows = heldout_windows(tokenizer, stdlib_docstrings(), 512, max_windows=6)
    ppl_float = model_perplexity(model, windows)
    ppl_awq = model_perplexity(result.model, windows)
    assert ppl_float < ppl_awq < 1.35 * ppl_float, (ppl_float, ppl_awq)


@pytest.fixture(scope="module")
def gguf_direct():
    """The default GGUF as transformers' own loader reads it: every tensor dequantized at once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from awqguard.models import resolve_model
    source = resolve_model(None)
    model = AutoModelForCausalLM.from_pretrained(str(source.folder), gguf_file=source.gguf_file, dtype=torch.float32)
    return model.state_dict(), AutoTokenizer.from_pretrained(str(source.folder), gguf_file=source.gguf_file)


def test_gguf_reference_is_converted_once_and_cached_bit_for_bit(tmp_path, monkeypatch, gguf_direct):
    from awqguard.models import load_model, load_tokenizer, resolve_model
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path))
    source = resolve_model(None)
    first, tok_first = load_model(source), load_tokenizer(source)
    folders = list((tmp_path / "models").iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").exists()
    assert "quantization_config" not in (folders[0] / "config.json").read_text()      # a plain float folder
    stamp = (folders[0] / "model.safetensors").stat().st_mtime_ns
    again = load_model(source)
    assert (folders[0] / "model.safetensors").stat().st_mtime_ns == stamp            # not converted twice
    direct, tok_direct = gguf_direct
    for model in (first, again):
        state = model.state_dict()
        assert state.keys() == direct.keys() and all(torch.equal(state[k], direct[k]) for k in state)
    text = "Rotate [auth#rotating-keys] with `tarn keys rotate` — 24 h, ünïcode."
    assert tok_first(text)["input_ids"] == tok_direct(text)["input_ids"]
    assert tok_first.chat_template == tok_direct.chat_template


def test_gguf_converts_tensor_by_tensor_into_shards(tmp_path, gguf_direct):
    """A small shard size splits the conversion; the shards hold exactly transformers' weights
    (the tied head is not stored)."""
    from awqguard.gguf_convert import convert_gguf
    from awqguard.models import resolve_model
    from awqguard.shards import INDEX_FILE, load_all
    convert_gguf(resolve_model(None).path, tmp_path, max_shard_bytes=100 * 10**6)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) >= 3 and (tmp_path / INDEX_FILE).exists()
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob(".part-*"))
    stored, (direct, _) = load_all(tmp_path), gguf_direct
    assert set(stored) == set(direct) - {"lm_head.weight"}
    assert all(torch.equal(stored[k], direct[k]) for k in stored)


def test_diagnosis_on_the_real_model_finds_a_damaged_linear(quantized, smollm):
    """On SmolLM2 and its AWQ candidate: every block adds some KL, the blocks' KLs add up to about
    the whole candidate's, and a linear given 4x its scales ranks first among the linears."""
    from awqguard.diagnose.run import corpus_windows, diagnose_models
    model, tokenizer = smollm
    result, out = quantized
    candidate = load_quantized(out, "cpu")
    windows = corpus_windows(tokenizer, stdlib_docstrings(), 256)
    intact = diagnose_models(model, candidate, windows, 1, ("float", "awq"), {"measured": False}, None)
    assert len(intact.blocks) == 30 and all(b["kl"] > 0 for b in intact.blocks)
    assert 0.3 < sum(b["kl"] for b in intact.blocks) / intact.kl_total < 3
    target = candidate.get_submodule("model.layers.12.mlp.down_proj")
    target.scales.mul_(4.0)
    target.set_path(target.path)
    damaged = diagnose_models(model, candidate, windows, 2, ("float", "damaged"), {"measured": False}, None)
    assert damaged.blocks[0]["name"] == "model.layers.12"
    assert damaged.linears[0]["name"] == "model.layers.12.mlp.down_proj"
