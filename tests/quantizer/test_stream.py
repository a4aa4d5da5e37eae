"""Streaming quantization: the same checkpoint as in memory, bit for bit, and nothing left behind
when it is interrupted."""

import pytest

import tiny_models
from awqguard import QuantConfig, quantize
from awqguard.quantizer import stream

CFG = QuantConfig(group_size=32, n_samples=8, seqlen=32, loss_tokens=128, clip_tokens=64)


@pytest.fixture()
def source(tmp_path):
    folder = tmp_path / "src"
    tiny_models.build("llama-gqa").save_pretrained(str(folder), max_shard_size="40KB")
    tiny_models.char_tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture()
def calib(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(tiny_models.CALIB_TEXT)
    return path


def _weight_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("model")}


@pytest.mark.parametrize("budget", ["4GB", 1])        # 1 byte: every activation buffer spills to disk
def test_streaming_and_in_memory_write_bit_identical_checkpoints(source, calib, tmp_path, budget):
    streamed = quantize(str(source), out=tmp_path / "s", config=CFG, calib=[calib], stream=True,
                        max_shard_size="20KB", activation_budget=budget)
    in_memory = quantize(str(source), out=tmp_path / "m", config=CFG, calib=[calib], stream=False,
                         max_shard_size="20KB")
    assert streamed.record["streamed"] and not in_memory.record["streamed"]
    files_s, files_m = _weight_files(tmp_path / "s"), _weight_files(tmp_path / "m")
    assert len(files_s) >= 4 and files_s == files_m                       # shards and index, byte for byte
    assert streamed.record["quantization"] == in_memory.record["quantization"] | {
        "seconds": streamed.record["quantization"]["seconds"]}
    assert not list(tmp_path.glob(".awqguard-spill-*"))


def test_an_interrupted_streaming_run_leaves_nothing_half_written(source, calib, tmp_path, monkeypatch):
    real, calls = stream.quantize_block, []

    def fail_on_second_block(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "quantize_block", fail_on_second_block)
    with pytest.raises(KeyboardInterrupt):
        quantize(str(source), out=tmp_path / "q", config=CFG, calib=[calib], max_shard_size="20KB",
                 activation_budget=1)
    assert calls == ["model.layers.0", "model.layers.1"]
    assert not (tmp_path / "q").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "src"]    # no staging, no spill


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_blocks_quantized_in_half_precision_stay_close_and_are_recorded(source, calib, tmp_path, dtype):
    """The half-precision compute path CUDA takes by default, run on the CPU: every block computes in
    `dtype`, the checkpoint records it in its identity, and its logits stay near the float32 one's."""
    import torch

    from awqguard import load_quantized
    half = quantize(str(source), out=tmp_path / dtype, config=CFG, calib=[calib], compute_dtype=dtype)
    full = quantize(str(source), out=tmp_path / "f32", config=CFG, calib=[calib])
    assert half.record["identity"]["compute_dtype"] == dtype and "compute_dtype" not in full.record["identity"]
    assert half.record["environment"]["compute_dtype"] == dtype
    ids = torch.randint(3, 97, (2, 24))
    with torch.no_grad():
        a = load_quantized(tmp_path / dtype)(input_ids=ids).logits
        b = load_quantized(tmp_path / "f32")(input_ids=ids).logits
    assert torch.isfinite(a).all() and not torch.equal(a, b)
    assert (a - b).abs().max() < 0.25 * b.abs().max()


def test_devices_need_cuda_and_dtypes_are_named(source, calib, tmp_path):
    from awqguard.errors import ConfigError
    from awqguard.quantizer.api import resolve_compute
    with pytest.raises(ConfigError, match="--devices picks GPUs"):
        resolve_compute("cpu", ["0"], "auto")
    with pytest.raises(ConfigError, match="not one of auto, float32, float16, bfloat16"):
        resolve_compute("cpu", None, "int8")
    assert str(resolve_compute("cpu", None, "auto").dtype) == "torch.float32"
