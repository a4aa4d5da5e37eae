"""dh rounding wired into the quantizer: every bit width and group size, the scale search and the
final rounding, and the means each layer's rounding is balanced against."""

import pytest
import torch

import tiny_models
from awqguard.kernels.wqlinear import AWQLinear
from awqguard.quantizer import rounders
from awqguard.quantizer.awq import quantize_model
from awqguard.quantizer.config import QuantConfig
from awqguard.quantizer.mappings import find_blocks, resolve_architecture, resolve_block

# in_features are 64 and 128 here, so the default 1% would allow no flip at all
SMALL = dict(n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64, max_flip_percent=0.1)


def _samples():
    return torch.randint(3, tiny_models.VOCAB, (8, 32), generator=torch.Generator().manual_seed(1))


def _quantize(cfg: QuantConfig, name: str = "llama-gqa"):
    model = tiny_models.build(name)
    report = quantize_model(model, _samples(), cfg)
    return model, report


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("w_bit,group", [(4, 32), (3, -1)])
def test_dh_with_no_flips_allowed_is_nearest_bit_for_bit(w_bit, group):
    nearest, _ = _quantize(QuantConfig(w_bit=w_bit, group_size=group, **SMALL))
    dh, report = _quantize(QuantConfig(w_bit=w_bit, group_size=group, rounding="dh", **{**SMALL, "max_flip_percent": 0.0}))
    a, b = _state(nearest), _state(dh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert report.to_dict()["dh"]["flipped_share"] == 0.0


@pytest.mark.parametrize("w_bit,group,zero_point", [(4, 32, True), (4, 64, False), (3, -1, True),
                                                    (2, 16, True), (8, 32, True)])
def test_dh_runs_for_every_width_and_group_and_flips_within_the_cap(w_bit, group, zero_point):
    cfg = QuantConfig(w_bit=w_bit, group_size=group, zero_point=zero_point, rounding="dh", **SMALL)
    model, report = _quantize(cfg)
    nearest, _ = _quantize(cfg.replace(rounding="nearest"))
    dh = report.to_dict()["dh"]
    assert 0.0 < dh["flipped_share"] <= cfg.max_flip_percent
    assert 0.0 < dh["outlier_share"] < 0.5
    ids = _samples()[:2]
    logits = tiny_models.outputs(model, ids)
    assert torch.isfinite(logits).all()
    assert not torch.equal(logits, tiny_models.outputs(nearest, ids))
    if cfg.packed:
        assert sum(isinstance(m, AWQLinear) for m in model.modules()) == 14


def test_the_scale_search_rounds_with_dh_too(monkeypatch):
    calls = []
    real = rounders.dh_quantize
    monkeypatch.setattr(rounders, "dh_quantize", lambda w, means, *a, **k: calls.append(w.shape) or real(w, means, *a, **k))
    cfg = QuantConfig(group_size=32, rounding="dh", n_grid=5, **SMALL)
    model = tiny_models.build("llama-mha")
    _, arch = resolve_architecture(model)
    blocks_name, blocks = find_blocks(model, arch)
    searched = sum(len(rm.linears) for i, b in enumerate(blocks) for rm in resolve_block(b, arch, f"{blocks_name}.{i}"))
    quantize_model(model, _samples(), cfg)
    assert len(calls) == cfg.n_grid * searched + 2 * 7     # every candidate scale, then the final rounding


def test_dh_without_means_is_refused():
    with pytest.raises(ValueError, match="needs the calibration means"):
        rounders.round_weight(torch.randn(8, 32), QuantConfig(group_size=32, rounding="dh"))


def _first_mapping_row_errors(float_model, quantized, samples):
    """Per output row of block 0's q/k/v: |W·E[x] − Ŵ'·E[x']|, the mean output error over the
    calibration tokens. x' = x / s is what the quantized layer sees once the AWQ scale is folded."""
    def inputs(model):
        attn = model.model.layers[0].self_attn
        seen = {}
        hooks = [getattr(attn, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0].reshape(-1, i[0].shape[-1])))
                 for n in ("q_proj", "k_proj", "v_proj")]
        with torch.no_grad():
            model(input_ids=samples)
        for h in hooks:
            h.remove()
        return seen
    x, x_q = inputs(float_model), inputs(quantized)
    attn, attn_q = float_model.model.layers[0].self_attn, quantized.model.layers[0].self_attn
    return torch.cat([(getattr(attn, n).weight @ x[n].mean(0) - getattr(attn_q, n).weight @ x_q[n].mean(0)).abs()
                      for n in ("q_proj", "k_proj", "v_proj")])


def test_final_rounding_balances_against_the_means_the_folded_layer_sees():
    # one ratio (r = 0: s comes from the weights alone, so both modes fold the same s) and no clip,
    # so the only difference between the two models is the final rounding of the same scaled weights
    cfg = QuantConfig(w_bit=3, group_size=32, n_grid=1, apply_clip=False, rounding="dh", **SMALL)
    samples = _samples()
    float_model = tiny_models.build("llama-gqa")
    dh, _ = _quantize(cfg)
    nearest, _ = _quantize(cfg.replace(rounding="nearest"))
    err_dh = _first_mapping_row_errors(float_model, dh, samples)
    err_near = _first_mapping_row_errors(float_model, nearest, samples)
    assert (err_dh <= err_near + 1e-5).all()
    assert err_dh.mean() < 0.5 * err_near.mean()
