"""AWQLinear: a linear layer holding AutoAWQ GEMM-format packed weights, with several compute paths."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from awqguard.kernels.packing import pack_int4, unpack_int4
from awqguard.kernels.paths import PATHS
from awqguard.kernels.quantized import QuantizedWeight

log = logging.getLogger(__name__)

_SELF_CHECK_RTOL = 3e-2   # bf16 activations on the int4 kernels; a layout error is far larger


class AWQLinear(nn.Module):
    """y = x·Ŵᵀ + b with Ŵᵀ[k, n] = (q[k, n] − z[k//g, n])·s[k//g, n].

    qweight: int32 [in, out/8]     4-bit q, AWQ nibble order
    qzeros:  int32 [in/g, out/8]   4-bit z, AWQ nibble order
    scales:  fp16  [in/g, out]
    bias:    fp16  [out] or None
    """

    def __init__(self, in_features: int, out_features: int, group_size: int, bias: bool,
                 w_bit: int = 4, device: torch.device | str | None = None):
        super().__init__()
        if w_bit != 4:
            raise ValueError("AWQLinear packs 4-bit weights only; other widths are fake-quantized")
        if out_features % 8:
            raise ValueError(f"out_features must be a multiple of 8 to pack; got {out_features}")
        g = in_features if group_size == -1 else group_size
        self.in_features, self.out_features, self.w_bit = in_features, out_features, w_bit
        self.group_size = g
        self.register_buffer("qweight", torch.zeros(in_features, out_features // 8, dtype=torch.int32, device=device))
        self.register_buffer("qzeros", torch.zeros(in_features // g, out_features // 8, dtype=torch.int32, device=device))
        self.register_buffer("scales", torch.zeros(in_features // g, out_features, dtype=torch.float16, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float16, device=device))
        else:
            self.bias = None
        self.path = "reference"
        self._cache: dict[str, torch.Tensor] = {}   # path-specific derived tensors, never saved

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_quantized(cls, qw: QuantizedWeight, bias: torch.Tensor | None) -> "AWQLinear":
        """Pack a QuantizedWeight (q/scales/zeros in [out, ...] orientation) into GEMM layout."""
        out_f, in_f = qw.q.shape
        layer = cls(in_f, out_f, qw.group_size, bias is not None)
        layer.qweight.copy_(pack_int4(qw.q.t().contiguous()))
        layer.qzeros.copy_(pack_int4(qw.zeros.t().contiguous()))
        layer.scales.copy_(qw.scales.t().to(torch.float16))
        if bias is not None:
            layer.bias.copy_(bias.detach().to(torch.float16))
        return layer

    # ---- decoding -----------------------------------------------------------------------------
    def unpacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(q int32 [in, out], z int32 [in/g, out])."""
        return unpack_int4(self.qweight), unpack_int4(self.qzeros)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Ŵ as a float [out, in] matrix (the nn.Linear orientation)."""
        q, z = self.unpacked()
        g = self.group_size
        zk = z.repeat_interleave(g, dim=0)                                   # [in, out]
        sk = self.scales.float().repeat_interleave(g, dim=0)                 # [in, out]
        return ((q - zk).float() * sk).t().to(dtype)

    # ---- paths --------------------------------------------------------------------------------
    def set_path(self, name: str) -> str:
        """Select a compute path; falls back to 'dequant' (and says why) if it fails its self-check."""
        if name not in PATHS:
            raise ValueError(f"unknown kernel path {name!r}; choose from {sorted(PATHS)}")
        self._cache.clear()
        self.path = name
        if name in ("int4pack", "cuda-int4"):
            try:
                self._prepare_int4(cuda=(name == "cuda-int4"))
                self._self_check()
            except Exception as exc:   # shape or kernel unsupported here: stay correct, say so
                log.warning("kernel path %s unusable for a %dx%d layer (%s); using dequant",
                            name, self.out_features, self.in_features, exc)
                self._cache.clear()
                self.path = "dequant"
        return self.path

    def _prepare_int4(self, cuda: bool) -> None:
        q, z = self.unpacked()                                   # [in, out], [in/g, out]
        w_nk = q.t().contiguous()                                # [out, in] int32 in [0, 15]
        s = self.scales.float()                                  # [in/g, out]
        zero_float = (8 - z.float()) * s                         # tinygemm: ŵ = (q − 8)·s + zero
        scales_and_zeros = torch.stack([s, zero_float], dim=-1).to(torch.bfloat16).contiguous()
        if cuda:
            w_u8 = ((w_nk[:, ::2] << 4) | w_nk[:, 1::2]).to(torch.uint8).cuda()
            # tinygemm tiles K by inner_k_tiles * 16: take the largest tiling this layer's K allows
            tiles = next((t for t in (8, 4, 2) if self.in_features % (t * 16) == 0), None)
            if tiles is None:
                raise ValueError(f"in_features {self.in_features} is not a multiple of 32")
            packed = torch.ops.aten._convert_weight_to_int4pack(w_u8, tiles)
            scales_and_zeros = scales_and_zeros.cuda()
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(w_nk, 1)
        self._cache = {"packed": packed, "scales_and_zeros": scales_and_zeros}

    def _self_check(self) -> None:
        """Compare the packed kernel with the reference on a probe input; raise if they disagree."""
        device = self._cache["packed"].device
        x = torch.randn(3, self.in_features, generator=torch.Generator().manual_seed(0)).to(device)
        ref = x.float() @ self.dequantized_weight().to(device).t()
        got = self._int4_matmul(x).float()
        err = (got - ref).norm() / ref.norm().clamp(min=1e-12)
        if not torch.isfinite(err) or err > _SELF_CHECK_RTOL:
            raise RuntimeError(f"self-check relative error {float(err):.3g}")

    def _int4_matmul(self, x2d: torch.Tensor) -> torch.Tensor:
        op = (torch.ops.aten._weight_int4pack_mm if self.path == "cuda-int4"
              else torch.ops.aten._weight_int4pack_mm_for_cpu)
        return op(x2d.to(torch.bfloat16).contiguous(), self._cache["packed"], self.group_size,
                  self._cache["scales_and_zeros"])

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.path == "reference":
            return F.linear(x, self.dequantized_weight(x.dtype), bias)
        if self.path == "dequant":
            w = self._cache.get("weight")
            if w is None or w.dtype != x.dtype or w.device != x.device:
                w = self._cache["weight"] = self.dequantized_weight(x.dtype).to(x.device)
            return F.linear(x, w, bias)
        shape = x.shape
        y = self._int4_matmul(x.reshape(-1, self.in_features)).to(x.dtype)
        y = y.reshape(*shape[:-1], self.out_features)
        return y if bias is None else y + bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"w_bit={self.w_bit}, group_size={self.group_size}, path={self.path}")


def set_kernel_path(model: nn.Module, name: str) -> dict[str, int]:
    """Select `name` on every AWQLinear; returns how many layers ended on each path."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, AWQLinear):
            got = module.set_path(name)
            counts[got] = counts.get(got, 0) + 1
    return counts
