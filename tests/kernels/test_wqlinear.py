import pytest
import torch

from awqguard.kernels.paths import available_paths
from awqguard.kernels.wqlinear import AWQLinear, set_kernel_path
from awqguard.quantizer.rounding import quantize


def _layer(out_f=96, in_f=128, g=32, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=gen)
    b = torch.randn(out_f, generator=gen) if bias else None
    return AWQLinear.from_quantized(quantize(w, 4, g), b), w, b


def test_reference_path_equals_dequantized_matmul():
    layer, _, b = _layer()
    x = torch.randn(5, 7, 128)
    w_hat = layer.dequantized_weight()
    expected = x @ w_hat.t() + b.half().float()
    layer.set_path("reference")
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_dequantized_weight_follows_the_gemm_formula():
    # W^T[k, n] = (q[k, n] - z[k//g, n]) * s[k//g, n], written out element by element
    layer, _, _ = _layer(out_f=16, in_f=64, g=32)
    q, z = layer.unpacked()
    s = layer.scales.float()
    wt = torch.empty(64, 16)
    for k in range(64):
        for n in range(16):
            wt[k, n] = (q[k, n] - z[k // 32, n]) * s[k // 32, n]
    assert torch.equal(layer.dequantized_weight(), wt.t())


def test_pack_keeps_the_quantized_integers():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(24, 64, generator=gen)
    qw = quantize(w, 4, 32)
    layer = AWQLinear.from_quantized(qw, None)
    q, z = layer.unpacked()
    assert torch.equal(q, qw.q.t()) and torch.equal(z, qw.zeros.t())


@pytest.mark.parametrize("path,rtol", [("dequant", 1e-6), ("int4pack", 2e-2)])
def test_fast_paths_match_reference(path, rtol):
    if not available_paths()[path]:
        pytest.skip(f"{path} is not available on this machine")
    layer, _, _ = _layer(out_f=256, in_f=256, g=64)
    x = torch.randn(3, 9, 256)
    layer.set_path("reference")
    ref = layer(x)
    assert layer.set_path(path) == path
    got = layer(x)
    assert got.shape == ref.shape
    assert ((got - ref).norm() / ref.norm()) < rtol


def test_unsupported_fast_path_falls_back_to_a_correct_one():
    layer, _, _ = _layer(out_f=8, in_f=48, g=16)   # shapes the int4 kernel does not take
    got = layer.set_path("int4pack")
    x = torch.randn(2, 48)
    layer2, _, _ = _layer(out_f=8, in_f=48, g=16)
    layer2.set_path("reference")
    assert got in ("int4pack", "dequant")
    torch.testing.assert_close(layer(x), layer2(x), rtol=2e-2, atol=2e-2)


def test_set_kernel_path_counts():
    model = torch.nn.Sequential(_layer()[0], torch.nn.ReLU(), _layer(out_f=128, in_f=96, seed=1)[0])
    assert set_kernel_path(model, "dequant") == {"dequant": 2}
    with pytest.raises(ValueError, match="unknown kernel path"):
        model[0].set_path("marlin")


@pytest.mark.gpu
def test_cuda_path_matches_reference():
    layer, _, _ = _layer(out_f=256, in_f=256, g=64)
    x = torch.randn(4, 256)
    layer.set_path("reference")
    ref = layer(x)
    layer = layer.cuda()
    assert layer.set_path("cuda-int4") == "cuda-int4"
    got = layer(x.cuda()).float().cpu()
    assert ((got - ref).norm() / ref.norm()) < 2e-2
