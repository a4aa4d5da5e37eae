"""A checkpoint laid out the way AutoAWQ lays it out (its from_linear packing loop, written out here
independently of awqguard's packer) loads into the model it describes."""

import json

import pytest
import torch
from safetensors.torch import save_file

import tiny_models
from awqguard import load_quantized
from awqguard.kernels.wqlinear import AWQLinear

G = 32


def autoawq_pseudo_quantize(w):
    """AutoAWQ's pseudo_quantize_tensor (zero point, 4 bits): scales/zeros per [out, in/g]."""
    out_f, in_f = w.shape
    wg = w.reshape(-1, G)
    max_val, min_val = wg.amax(dim=1, keepdim=True), wg.amin(dim=1, keepdim=True)
    scales = (max_val - min_val).clamp(min=1e-5) / 15
    zeros = (-torch.round(min_val / scales)).clamp(0, 15)
    return scales.view(out_f, -1), zeros.view(out_f, -1)


def autoawq_pack(w):
    """WQLinear_GEMM.from_linear: returns qweight, qzeros, scales as AutoAWQ stores them."""
    scales, zeros = autoawq_pseudo_quantize(w)
    out_f, in_f = w.shape
    scale_zeros = zeros * scales
    intweight = torch.stack([torch.round((w[:, i] + scale_zeros[:, i // G]) / scales[:, i // G]).to(torch.int32)
                             for i in range(in_f)], dim=1).t().contiguous()          # [in, out]
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    qweight = torch.zeros(in_f, out_f // 8, dtype=torch.int32)
    for col in range(out_f // 8):
        for i in range(8):
            qweight[:, col] |= intweight[:, col * 8 + order_map[i]] << (i * 4)
    zeros_t = zeros.t().contiguous().to(torch.int32)                                  # [in/g, out]
    qzeros = torch.zeros(in_f // G, out_f // 8, dtype=torch.int32)
    for col in range(out_f // 8):
        for i in range(8):
            qzeros[:, col] |= zeros_t[:, col * 8 + order_map[i]] << (i * 4)
    dequant = ((intweight.float() - zeros_t.repeat_interleave(G, 0).float())
               * scales.t().half().float().repeat_interleave(G, 0)).t()             # [out, in]
    return qweight, qzeros, scales.t().contiguous().half(), dequant


def save_sharded_like_transformers(tensors, folder, max_shard_size):
    """Shards and index written by huggingface_hub's splitter (what save_pretrained uses), not awqguard's writer."""
    from huggingface_hub import split_torch_state_dict_into_shards
    split = split_torch_state_dict_into_shards(tensors, max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        save_file({n: tensors[n].contiguous() for n in names}, str(folder / filename), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}))
    return len(split.filename_to_tensors)


@pytest.mark.parametrize("sharded", [False, True])
def test_autoawq_layout_checkpoint_loads(tmp_path, sharded):
    model = tiny_models.build("llama-gqa")
    folder = tmp_path / "autoawq-model"
    folder.mkdir()
    tensors, expected = {}, tiny_models.build("llama-gqa")
    for name, t in model.state_dict().items():
        module_name = name.rsplit(".", 1)[0]
        if ".layers." in name and name.endswith("proj.weight"):
            qweight, qzeros, scales, dequant = autoawq_pack(t)
            tensors[f"{module_name}.qweight"] = qweight
            tensors[f"{module_name}.qzeros"] = qzeros
            tensors[f"{module_name}.scales"] = scales
            expected.get_submodule(module_name).weight.data.copy_(dequant)
        else:
            tensors[name] = t.half()
            expected.get_parameter(name).data.copy_(t.half().float())
    assert any((v < 0).any() for k, v in tensors.items() if k.endswith("qweight"))
    if sharded:
        assert save_sharded_like_transformers(tensors, folder, 20_000) >= 3
    else:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config["quantization_config"] = {"quant_method": "awq", "zero_point": True, "group_size": G, "bits": 4,
                                     "version": "gemm", "modules_to_not_convert": None}
    config["torch_dtype"] = "float16"
    (folder / "config.json").write_text(json.dumps(config))

    loaded = load_quantized(folder)
    assert sum(isinstance(m, AWQLinear) for m in loaded.modules()) == 14
    ids = torch.randint(3, 97, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)


def test_old_quant_config_json_and_shape_errors(tmp_path):
    from awqguard.errors import ModelLoadError
    model = tiny_models.build("llama-gqa")
    folder = tmp_path / "m"
    folder.mkdir()
    tensors = {k: v.half() for k, v in model.state_dict().items()}
    w = tensors.pop("model.layers.0.mlp.down_proj.weight").float()
    qweight, qzeros, scales, _ = autoawq_pack(w)
    tensors["model.layers.0.mlp.down_proj.qweight"] = qweight[:, :4].contiguous()      # wrong width
    tensors["model.layers.0.mlp.down_proj.qzeros"] = qzeros
    tensors["model.layers.0.mlp.down_proj.scales"] = scales
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    (folder / "quant_config.json").write_text(json.dumps({"zero_point": True, "q_group_size": G, "w_bit": 4,
                                                          "version": "GEMM"}))
    with pytest.raises(ModelLoadError, match=r"down_proj.qweight has shape \(128, 4\), expected \(128, 8\)"):
        load_quantized(folder)
