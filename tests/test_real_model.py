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


def test_gguf_reference_is_converted_once_and_cached_bit_for_bit(tmp_path, monkeypatch):
    from awqguard.models import load_model, load_tokenizer, resolve_model
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path))
    source = resolve_model(None)
    first, tok_first = load_model(source), load_tokenizer(source)
    folders = list((tmp_path / "models").iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").exists()
    assert "quantization_config" not in (folders[0] / "config.json").read_text()      # a plain float folder
    again, tok_again = load_model(source), load_tokenizer(source)
    a, b = first.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    text = "Rotate [auth#rotating-keys] with `tarn keys rotate` — 24 h, ünïcode."
    assert tok_first(text)["input_ids"] == tok_again(text)["input_ids"]
    assert tok_first.chat_template == tok_again.chat_template
