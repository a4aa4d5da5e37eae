"""Swap sensitivity on tiny models: the suffix runs are exact, the fold scale comes back, and a
damaged layer ranks first."""

import copy
import json

import pytest
import torch

import tiny_models
from awqguard import QuantConfig, load_quantized, quantize
from awqguard.diagnose import measures, swap
from awqguard.diagnose.run import diagnose_models

CFG = QuantConfig(group_size=32, n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64)
ARCHS = ["llama-gqa", "gemma3", "qwen3"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(float model, its AWQ candidate, windows) per architecture."""
    out = {}
    for name in ARCHS:
        root = tmp_path_factory.mktemp(name)
        tiny_models.save_hf_folder(name, root / "float")
        (root / "calib.txt").write_text(tiny_models.CALIB_TEXT)
        quantize(str(root / "float"), out=root / "q", config=CFG, calib=[root / "calib.txt"])
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(str(root / "float"), dtype=torch.float32).eval()
        out[name] = (model, load_quantized(root / "q", "cpu"), torch.randint(3, 97, (2, 24)))
    return out


def _blocks(model):
    return model.get_submodule("model.layers")


def _full_swap_kl(model, i, block, windows, reference_logprobs):
    """Ground truth without the suffix trick: a whole copy of the model with block i replaced."""
    other = copy.deepcopy(model)
    _blocks(other)[i] = copy.deepcopy(block)
    with torch.no_grad():
        logprobs = torch.log_softmax(other(input_ids=windows).logits.float(), -1)
    return measures.mean_kl(reference_logprobs, logprobs)


@pytest.mark.parametrize("arch", ARCHS)
def test_suffix_runs_match_the_whole_model(quantized, arch):
    model, candidate, windows = quantized[arch]
    tape = swap.record(model, _blocks(model), "model.layers", windows)
    for i in range(len(_blocks(model))):
        assert swap.swap_kl(model, "model.layers", i, _blocks(model)[i], tape, windows) < 1e-6
        got = swap.swap_kl(model, "model.layers", i, _blocks(candidate)[i], tape, windows)
        expected = _full_swap_kl(model, i, _blocks(candidate)[i], windows, tape.logprobs)
        assert got > 0 and got == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert len(_blocks(model)) == 2            # the model's own block list is back


def test_fold_scale_is_recovered_from_a_rounded_folded_weight():
    torch.manual_seed(0)
    weight = torch.randn(64, 32)
    s = torch.rand(32) * 3 + 0.2
    folded = weight * s + 0.01 * torch.randn(64, 32)          # rounding noise, small against the weight
    assert torch.allclose(measures.fold_scales(weight, folded), s, rtol=0.02)
    back = measures.in_float_frame(weight, folded)
    noise_in_float_frame = (folded - weight * s) / s
    assert (back - weight).norm() <= 1.01 * noise_in_float_frame.norm()     # no worse than the noise itself
    assert (back - weight).norm() > 0.5 * noise_in_float_frame.norm()       # and the error is not wiped out


def test_a_damaged_linear_ranks_first_and_the_diagnosis_is_strict_json(quantized):
    model, candidate, windows = quantized["llama-gqa"]
    damaged = copy.deepcopy(candidate)
    target = _blocks(damaged)[1].mlp.down_proj
    target.scales.mul_(1.5)                                    # a wrong scale on one linear
    target.set_path(target.path)                               # drop any cached weight
    diagnosis = diagnose_models(model, damaged, windows, 2, ("float", "damaged"), {"measured": False}, None)
    intact = diagnose_models(model, candidate, windows, 2, ("float", "awq"), {"measured": False}, None)
    assert diagnosis.blocks[0]["name"] == "model.layers.1"
    assert diagnosis.linears[0]["name"] == "model.layers.1.mlp.down_proj"
    before = next(r["kl"] for r in intact.linears if r["name"] == "model.layers.1.mlp.down_proj")
    assert diagnosis.linears[0]["kl"] > 3 * before
    assert diagnosis.kl_total > 0 and diagnosis.blocks[0]["share"] > 0.5
    assert {o["name"] for o in diagnosis.outliers} == set(diagnosis.in_features)
    json.loads(json.dumps(diagnosis.to_dict(), allow_nan=False))


def test_calibration_distance_pure_functions():
    a = measures.token_distribution([1, 1, 2, 3])
    assert measures.js_distance(a, a) == 0
    assert measures.js_distance(a, measures.token_distribution([7, 8])) == pytest.approx(1.0)
    assert 0 < measures.js_distance(a, measures.token_distribution([1, 2, 2, 9])) < 1
    assert measures.unseen_share(a, measures.token_distribution([1, 9, 9, 2])) == 0.5


def test_outlier_stats_find_a_sticking_out_channel():
    flat = measures.outlier_stats(torch.ones(100))
    spiky = measures.outlier_stats(torch.cat([torch.ones(98), torch.tensor([20.0, 8.0])]))
    assert flat == {"max_over_median": 1.0, "share_over_6x": 0.0}
    assert spiky["max_over_median"] == 20.0 and spiky["share_over_6x"] == pytest.approx(0.02)


@pytest.mark.parametrize("arch", ARCHS)
def test_fold_scales_take_every_linear_back_to_the_float_frame(quantized, arch):
    """Folding preserves the function: the float block with every linear taken back into the float
    frame computes what the candidate block computes, up to the least-squares part of the scales.
    Wrong scales would leave it as far from the candidate as the float block is, or farther."""
    from awqguard.quantizer.mappings import resolve_architecture
    model, candidate, windows = quantized[arch]
    _, spec = resolve_architecture(model)
    tape = swap.record(model, _blocks(model), "model.layers", windows)
    for i in range(len(_blocks(model))):
        fb, cb = _blocks(model)[i], _blocks(candidate)[i]
        scales = swap.fold_scales(fb, cb, spec)
        block = fb
        for name in swap.linear_names(cb):
            block = swap.with_one_linear(block, cb, name, scales)
        run = lambda b: swap.swap_logprobs(model, "model.layers", i, b, tape, windows)
        cand = run(cb)
        assert measures.mean_kl(cand, run(block)) < 0.1 * measures.mean_kl(cand, tape.logprobs), (arch, i)


def test_calibration_distance_tells_unrelated_text_from_the_corpus(tmp_path):
    from awqguard.diagnose.run import calibration_distance
    tok = tiny_models.char_tokenizer()
    corpus = [f"the service rotates api keys every {n} hours and logs each rotation" for n in range(40)]
    same = tmp_path / "same.txt"
    same.write_text("\n\n".join(corpus))
    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(f"0x{n:08X} := {{{n * 7919 % 1000}}} | [{n}] ## %% ~~ $$" for n in range(400)))
    near = calibration_distance(tok, corpus, {"calibration": {"sources": [str(same)]}})
    far = calibration_distance(tok, corpus, {"calibration": {"sources": [str(other)]}})
    assert near["measured"] and far["measured"]
    assert near["matched"] <= 1.5 * near["floor"] < far["matched"]
    assert far["unseen_share"] > near["unseen_share"] == 0
    assert not calibration_distance(tok, corpus, None)["measured"]
    gone = calibration_distance(tok, corpus, {"calibration": {"sources": [str(tmp_path / "moved.txt")]}})
    assert not gone["measured"] and "moved.txt" in gone["reason"]
