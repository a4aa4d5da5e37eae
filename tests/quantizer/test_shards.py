"""Sharded checkpoints: the writer's layout, reading shards back, and a sharded quantize round trip."""

import json

import pytest
import torch

import tiny_models
from awqguard import QuantConfig, load_quantized, quantize
from awqguard.errors import ConfigError, ModelLoadError
from awqguard.shards import INDEX_FILE, LazyTensors, ShardWriter, load_all, parse_size, weight_files

CFG = QuantConfig(group_size=32, n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64)


def test_sizes_parse_like_transformers_and_bad_ones_are_named():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("500MB") == 5 * 10**8
    assert parse_size("2GiB") == 2 * 2**30 and parse_size(1234) == 1234 and parse_size("64kb") == 64_000
    for bad in ("five", "5XB", "0", -3):
        with pytest.raises(ConfigError, match="max shard size"):
            parse_size(bad)


def test_writer_splits_by_size_names_shards_and_indexes_every_tensor(tmp_path):
    tensors = {f"t{i}": torch.full((250,), float(i)) for i in range(10)}         # 1000 bytes each
    tensors["big"] = torch.zeros(2000)                                           # larger than a shard
    writer = ShardWriter(tmp_path, max_bytes=2500)
    writer.add(tensors)
    names = writer.close()
    assert len(names) == 6 and names[0] == "model-00001-of-00006.safetensors"
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == 10 * 1000 + 8000
    assert set(index["weight_map"]) == set(tensors) and set(index["weight_map"].values()) == set(names)
    assert not list(tmp_path.glob(".part-*"))
    back = load_all(tmp_path)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_one_shard_is_model_safetensors_without_an_index(tmp_path):
    writer = ShardWriter(tmp_path, max_bytes=10**9)
    writer.add({"a": torch.ones(3)})
    assert writer.close() == ["model.safetensors"] and not (tmp_path / INDEX_FILE).exists()


def test_an_index_naming_a_missing_shard_is_an_error_naming_it(tmp_path):
    writer = ShardWriter(tmp_path, max_bytes=1000)
    writer.add({f"t{i}": torch.zeros(250) for i in range(3)})
    names = writer.close()
    (tmp_path / names[1]).unlink()
    with pytest.raises(ModelLoadError, match=rf"names shards that are not in .*{names[1]}"):
        weight_files(tmp_path)
    (tmp_path / INDEX_FILE).write_text('{"weight_map": {}}')
    with pytest.raises(ModelLoadError, match="no weight_map"):
        LazyTensors(tmp_path)


def test_sharded_source_quantizes_to_sharded_checkpoint_with_identical_logits(tmp_path):
    source = tmp_path / "src"
    model = tiny_models.build("llama-gqa")
    model.save_pretrained(str(source), max_shard_size="40KB")               # a source in several shards
    tiny_models.char_tokenizer().save_pretrained(str(source))
    assert len(list(source.glob("model-*.safetensors"))) >= 3
    calib = tmp_path / "calib.txt"
    calib.write_text(tiny_models.CALIB_TEXT)
    whole = quantize(str(source), out=tmp_path / "whole", config=CFG, calib=[calib])
    quantize(str(source), out=tmp_path / "sharded", config=CFG, calib=[calib], max_shard_size="20KB")
    shards = sorted((tmp_path / "sharded").glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3 and (tmp_path / "sharded" / INDEX_FILE).exists()
    assert (tmp_path / "whole" / "model.safetensors").exists()
    ids = torch.randint(3, 97, (2, 24))
    with torch.no_grad():
        expected = load_quantized(tmp_path / "whole")(input_ids=ids).logits
        got = load_quantized(tmp_path / "sharded")(input_ids=ids).logits
    assert torch.equal(got, expected) and torch.equal(whole.model(input_ids=ids).logits, expected)
