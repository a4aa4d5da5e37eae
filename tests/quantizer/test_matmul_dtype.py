"""bfloat16 products (matmul_dtype, the default) speed up the calibration pass and the scale-search
losses; everything that lasts (weights, folding, second moments, the fold check) stays float32."""

import functools

import pytest
import torch

import tiny_models
from awqguard import QuantConfig, quantize
from awqguard.errors import ConfigError
from awqguard.quantizer.blocks import CallRecorder, InputGrams, run_block
from awqguard.quantizer.mappings import resolve_block
from awqguard.quantizer.search import InspectCall

BF16 = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)


def test_loss_of_the_unquantized_weights_is_zero_only_with_the_reference_in_the_same_precision():
    block, arch, hidden, call = tiny_models.first_block_inputs("llama-mha", seed=2)
    rm = next(rm for rm in resolve_block(block, arch, "b") if rm.mapping.prev == "post_attention_layernorm")
    rec = CallRecorder({}, {id(rm.inspect): rm.inspect})
    run_block(block, hidden, call, 4, torch.device("cpu"))
    rec.remove()
    recorded = InspectCall(*rec.calls[id(rm.inspect)])
    unchanged = [lin.weight for lin in rm.linears]
    assert recorded.loss(rm, unchanged) == 0.0
    mixed = InspectCall(recorded.args, recorded.kwargs, recorded.output, BF16)   # float32 reference
    assert mixed.loss(rm, unchanged) > 0.0
    assert recorded.in_precision(rm, BF16).loss(rm, unchanged) == 0.0


def test_second_moments_stay_float32_under_bfloat16_products():
    block, _, hidden, call = tiny_models.first_block_inputs("llama-mha", seed=2)
    q = block.self_attn.q_proj        # its input is the norm's float32 output under autocast too
    grams = []
    for precision in (None, BF16):
        g = InputGrams({"q": q}, [["q"]], 32, {"q"}, {"q"}, torch.arange(4 * 32))
        if precision is None:
            run_block(block, hidden, call, 2, torch.device("cpu"))
        else:
            with precision():
                run_block(block, hidden, call, 2, torch.device("cpu"))
        g.remove()
        grams.append((g.full("q")[0], g.per_group("q")[0]))
    for exact, under_autocast in zip(*grams):
        assert under_autocast.dtype == torch.float32
        assert torch.equal(exact, under_autocast)


def test_bfloat16_products_leave_weights_and_fold_check_in_float32(tmp_path):
    folder = tmp_path / "tiny"
    tiny_models.save_hf_folder("llama-gqa", folder)
    calib = tmp_path / "calib.txt"
    calib.write_text(" ".join(f"word{i % 53} value {i}" for i in range(3000)))
    cfg = QuantConfig(group_size=32, w_bit=3, n_samples=8, seqlen=32, scale_search="full")
    results = {dtype: quantize(str(folder), config=cfg.replace(matmul_dtype=dtype), calib=[calib])
               for dtype in ("float32", "bfloat16")}
    for result in results.values():
        assert all(p.dtype == torch.float32 for p in result.model.parameters())
        assert result.record["quantization"]["max_fold_error"] < 1e-4      # the fold check runs in float32
    assert results["bfloat16"].record["config"]["matmul_dtype"] == "bfloat16"      # recorded: part of the identity


def test_unknown_matmul_dtype_is_refused():
    with pytest.raises(ConfigError, match="matmul_dtype"):
        QuantConfig(matmul_dtype="float16")


def test_a_record_from_before_matmul_dtype_rebuilds_with_float32_products():
    from awqguard.quantizer.config import recorded_config
    old = QuantConfig(matmul_dtype="float32").to_dict()
    del old["matmul_dtype"]                                  # an awqguard.json written before the option
    assert QuantConfig(**recorded_config(old)).matmul_dtype == "float32"
    assert recorded_config({**old, "matmul_dtype": "bfloat16"})["matmul_dtype"] == "bfloat16"
    from awqguard.diagnose.fixes import base_flags
    assert "--matmul-dtype float32" in base_flags(recorded_config(old), {})
    assert not any("matmul" in f for f in base_flags(QuantConfig().to_dict(), {}))
