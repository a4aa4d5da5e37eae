"""AutoAWQ GEMM bit layout: eight 4-bit values per int32 word, interleaved.

Nibble i (bits 4i..4i+3) of word j holds column 8j + ORDER[i]; unpacking reads column c from
nibble REVERSE_ORDER[c]. Words whose top nibble is >= 8 are negative int32 values.
"""

from __future__ import annotations

import torch

ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
_SHIFTS = torch.arange(0, 32, 4, dtype=torch.int64)   # nibble i lives at bit 4i


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """int [rows, cols] in [0, 15] -> int32 [rows, cols/8] in AWQ order."""
    rows, cols = values.shape
    if cols % 8:
        raise ValueError(f"cannot pack {cols} columns: the count must be a multiple of 8")
    if values.numel() and (int(values.min()) < 0 or int(values.max()) > 15):
        raise ValueError("4-bit packing needs values in [0, 15]")
    v = values.to(torch.int64).reshape(rows, cols // 8, 8)[..., list(ORDER)]   # [rows, words, nibble]
    words = (v << _SHIFTS.to(v.device)).sum(dim=-1)                            # in [0, 2^32)
    words = torch.where(words >= 2**31, words - 2**32, words)                  # two's complement
    return words.to(torch.int32)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """int32 [rows, words] -> int32 [rows, words*8] with values in [0, 15]."""
    rows, words = packed.shape
    shifts = _SHIFTS.to(device=packed.device, dtype=torch.int32)
    nibbles = (packed.unsqueeze(-1) >> shifts) & 0xF                            # [rows, words, nibble]
    return nibbles[..., list(REVERSE_ORDER)].reshape(rows, words * 8)
