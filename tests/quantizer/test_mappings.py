import pytest
import torch
from torch import nn

import tiny_models
from awqguard.errors import ConfigError
from awqguard.quantizer.apply import fold_scale
from awqguard.quantizer.awq import convert_conv1d
from awqguard.quantizer.mappings import (Architecture, Mapping, find_blocks, resolve_architecture,
                                         resolve_block)


@pytest.mark.parametrize("name", sorted(tiny_models.CONFIGS))
def test_folding_random_scales_preserves_the_function(name):
    model = tiny_models.build(name)
    _, arch = resolve_architecture(model)
    if arch.conv1d_to_linear:
        convert_conv1d(model)
    ids = torch.randint(3, tiny_models.VOCAB, (2, 16), generator=torch.Generator().manual_seed(0))
    before = tiny_models.outputs(model, ids)
    blocks_name, blocks = find_blocks(model, arch)
    gen = torch.Generator().manual_seed(1)
    folded = 0
    for i, block in enumerate(blocks):
        for rm in resolve_block(block, arch, f"{blocks_name}.{i}"):
            s = torch.exp(0.5 * torch.randn(rm.linears[0].in_features, generator=gen))
            fold_scale(rm, s, arch.norm_offset)
            folded += 1
    after = tiny_models.outputs(model, ids)
    assert folded >= len(blocks)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_folding_a_wrong_mapping_is_detectable():
    # sanity check of the test above: folding into a norm whose output also feeds the residual
    # (BERT's post-norm) changes the output, so a wrong registry entry could not pass it.
    model = tiny_models.build("bert")
    ids = torch.randint(3, tiny_models.VOCAB, (1, 8))
    before = tiny_models.outputs(model, ids)
    wrong = Architecture("encoder.layer", (Mapping("attention.output.LayerNorm", ("intermediate.dense",),
                                                   "intermediate.dense"),))
    _, blocks = find_blocks(model, wrong)
    rm = resolve_block(blocks[0], wrong, "encoder.layer.0")[0]
    fold_scale(rm, torch.full((64,), 2.0))
    assert not torch.allclose(tiny_models.outputs(model, ids), before, atol=1e-3)


def test_gqa_skips_v_to_o():
    gqa = resolve_block(find_blocks(m := tiny_models.build("llama-gqa"), resolve_architecture(m)[1])[1][0],
                        resolve_architecture(m)[1], "b")
    assert "self_attn.v_proj" not in [r.mapping.prev for r in gqa]
    mha = tiny_models.build("llama-mha")
    arch = resolve_architecture(mha)[1]
    assert "self_attn.v_proj" in [r.mapping.prev for r in resolve_block(find_blocks(mha, arch)[1][0], arch, "b")]


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleDict({"norm": nn.LayerNorm(8), "fc": nn.Linear(8, 8)})])


def test_resolution_on_a_toy_tree():
    arch = Architecture("layers", (Mapping("norm", ("fc",), "fc"),))
    name, blocks = find_blocks(_Toy(), arch)
    assert name == "layers"
    rm = resolve_block(blocks[0], arch, "layers.0")[0]
    assert rm.linear_names == [""] and rm.inspect is rm.linears[0]


def test_pattern_that_resolves_to_nothing_is_an_error():
    arch = Architecture("layers", (Mapping("norm", ("fc_missing",), "fc"),))
    _, blocks = find_blocks(_Toy(), arch)
    with pytest.raises(ConfigError, match="fc_missing"):
        resolve_block(blocks[0], arch, "layers.0")


def test_unknown_architecture_without_derivable_mapping():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "weird"})()
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))])

        def forward(self, input_ids):
            return self.blocks[0](torch.nn.functional.one_hot(input_ids, 8).float())

    with pytest.raises(ConfigError, match="unknown architecture 'weird'"):
        resolve_architecture(Weird())


def test_unknown_architecture_with_derivable_mapping():
    model = tiny_models.build("llama-gqa")
    model.config.model_type = "llama-like-custom"
    _, arch = resolve_architecture(model)
    prevs = {m.prev: m.linears for m in arch.mappings}
    assert prevs["input_layernorm"] == ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    assert prevs["post_attention_layernorm"] == ("mlp.gate_proj", "mlp.up_proj")
