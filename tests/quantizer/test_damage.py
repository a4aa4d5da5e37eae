"""The packed-model faults of quantizer/damage.py on a tiny model: each damages exactly the layers
it names, leaves the input model alone, and keeps the properties its bug implies."""

import copy

import pytest
import torch
import torch.nn.functional as F

import tiny_models
from awqguard.kernels.packing import unpack_int4
from awqguard.kernels.wqlinear import AWQLinear
from awqguard.quantizer.damage import (corrupt_tensor, misorder_packing, pack_in_order, rtn_packed, scale_all,
                                       scales_through_bf16, shift_zero_points)

G = 32
BF16_REL = 2.0 ** -8


@pytest.fixture(scope="module")
def packed():
    return rtn_packed(tiny_models.build("llama-gqa"), G)


def layers(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, AWQLinear)}


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def changed_layers(before, after):
    """Names of the AWQLinear layers whose dequantized weight differs at all."""
    a, b = layers(before), layers(after)
    assert a.keys() == b.keys()
    return {n for n in a if not torch.equal(a[n].dequantized_weight(), b[n].dequantized_weight())}


def block_of(name):
    return int(name.split(".layers.")[1].split(".")[0])


def test_fixture_is_packed(packed):
    names = layers(packed)
    assert len(names) == 14 and {block_of(n) for n in names} == {0, 1}


def test_faults_leave_the_input_untouched(packed):
    before = state(packed)
    shift_zero_points(packed, [1])
    misorder_packing(packed)
    corrupt_tensor(packed, "model.layers.0.self_attn.o_proj.qweight")
    scale_all(packed, 1.08)
    scales_through_bf16(packed)
    after = packed.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_shift_zero_points_changes_only_the_named_blocks(packed):
    damaged = shift_zero_points(packed, [1])
    assert changed_layers(packed, damaged) == {n for n in layers(packed) if block_of(n) == 1}
    for name, m in layers(packed).items():
        z, z_new = unpack_int4(m.qzeros), unpack_int4(layers(damaged)[name].qzeros)
        expected = (z + 1).clamp(max=15) if block_of(name) == 1 else z
        assert torch.equal(z_new, expected)
        assert torch.equal(m.qweight, layers(damaged)[name].qweight)


@pytest.mark.parametrize("shift, bound", [(16, 15), (-16, 0)])
def test_shift_zero_points_clamps_to_4_bits(packed, shift, bound):
    damaged = shift_zero_points(packed, [0, 1], shift)
    for m in layers(damaged).values():
        assert (unpack_int4(m.qzeros) == bound).all()


def test_misorder_packing_changes_only_that_layer_type(packed):
    damaged = misorder_packing(packed, "down_proj")
    assert changed_layers(packed, damaged) == {n for n in layers(packed) if n.endswith("mlp.down_proj")}


@pytest.mark.parametrize("order", ["sequential", "reverse"])
def test_misorder_packing_keeps_each_words_nibbles(packed, order):
    damaged = misorder_packing(packed, "down_proj", order)
    for name, m in layers(packed).items():
        if not name.endswith("down_proj"):
            continue
        for attr in ("qweight", "qzeros"):
            old, new = getattr(m, attr), getattr(layers(damaged)[name], attr)
            assert not torch.equal(old, new)
            rows, words = old.shape
            per_word = lambda t: unpack_int4(t).reshape(rows, words, 8).sort(dim=-1).values   # noqa: E731
            assert torch.equal(per_word(old), per_word(new))


def test_pack_in_order_sequential_puts_column_i_in_nibble_i():
    values = torch.arange(8).repeat(2, 1)
    word = int(pack_in_order(values, range(8))[0, 0]) & 0xFFFFFFFF
    assert [(word >> (4 * i)) & 0xF for i in range(8)] == list(range(8))


def test_corrupt_tensor_changes_only_that_layer(packed):
    name = "model.layers.1.self_attn.o_proj"
    for attr in ("scales", "qweight", "qzeros"):
        damaged = corrupt_tensor(packed, f"{name}.{attr}")
        assert changed_layers(packed, damaged) == {name}
        old, new = getattr(layers(packed)[name], attr), getattr(layers(damaged)[name], attr)
        assert new.dtype == old.dtype and new.shape == old.shape
        if attr == "scales":
            assert float(new.min()) >= float(old.min()) and float(new.max()) <= float(old.max())
        else:
            assert int(unpack_int4(new).min()) >= 0 and int(unpack_int4(new).max()) <= 15


def test_corrupt_tensor_is_seeded(packed):
    name = "model.layers.1.mlp.up_proj.scales"
    a, b, c = (corrupt_tensor(packed, name, seed=s).get_buffer(name) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("factor", [1.02, 1.08])
def test_scale_all_scales_every_layer(packed, factor):
    damaged = scale_all(packed, factor)
    assert changed_layers(packed, damaged) == set(layers(packed))
    for name, m in layers(packed).items():
        ratio = layers(damaged)[name].scales.float() / m.scales.float()
        assert torch.allclose(ratio, torch.full_like(ratio, factor), rtol=2 ** -10)


def test_scales_through_bf16_moves_scales_within_bf16_precision(packed):
    damaged = scales_through_bf16(packed)
    moved = 0
    for name, m in layers(packed).items():
        old, new = m.scales.float(), layers(damaged)[name].scales.float()
        assert ((new - old).abs() <= BF16_REL * old.abs()).all()
        assert torch.equal(new, new.to(torch.bfloat16).float())
        moved += int((new != old).sum())
    assert moved > 0


@pytest.mark.parametrize("fault", [
    lambda m: shift_zero_points(m, [0, 1]),
    lambda m: misorder_packing(m),
    lambda m: corrupt_tensor(m, "model.layers.0.mlp.down_proj.scales"),
    lambda m: scale_all(m, 1.04),
    lambda m: scales_through_bf16(m),
])
def test_cached_weights_do_not_survive(packed, fault):
    """On the caching 'dequant' path every layer computes with its damaged buffers, not a stale weight."""
    model = copy.deepcopy(packed)
    g = torch.Generator().manual_seed(0)
    for m in layers(model).values():
        m.set_path("dequant")
        m(torch.randn(2, m.in_features, generator=g))          # fills the layer's weight cache
    damaged = fault(model)
    for name, m in layers(damaged).items():
        x = torch.randn(2, m.in_features, generator=g)
        assert m.path == "dequant"
        assert torch.equal(m(x), F.linear(x, m.dequantized_weight())), name


@pytest.mark.parametrize("fault", [
    lambda m: shift_zero_points(m, [0]),
    lambda m: misorder_packing(m),
    lambda m: scale_all(m, 1.04),
    lambda m: scales_through_bf16(m),
])
def test_faults_refuse_an_unpacked_model(fault):
    with pytest.raises(ValueError, match="packed AWQ model"):
        fault(tiny_models.build("llama-gqa"))


def test_faults_refuse_what_they_cannot_find(packed):
    with pytest.raises(ValueError, match="no AWQLinear named"):
        misorder_packing(packed, "no_such_proj")
    with pytest.raises(ValueError, match="no tensor named"):
        corrupt_tensor(packed, "model.layers.1.self_attn.o_proj.scale")
    with pytest.raises(ValueError, match="no AWQLinear layers in blocks"):
        shift_zero_points(packed, [])
