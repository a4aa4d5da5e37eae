"""QuantConfig: every knob of the AWQ quantizer, validated once, with AutoAWQ's names as aliases."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from awqguard.errors import ConfigError

SUPPORTED_BITS = (2, 3, 4, 8)   # 4 is packed; 2, 3 and 8 are fake-quantized (dequantized floats saved)
PACKED_BITS = (4,)
VERSIONS = ("gemm",)            # the layout written: AutoAWQ GEMM, which vLLM, transformers and AutoAWQ load
ROUNDINGS = ("nearest", "dh")
LOSS_SAMPLES = ("spread", "sequences")
MATMUL_DTYPES = ("bfloat16", "float32")   # the calibration pass's and scale-search losses' products (awq.py)
SCALE_SEARCHES = ("coarse", "full")     # coarse-to-fine (10 of the 20 ratios), or every ratio of the grid
# What n_samples counts: "blocks" of seqlen tokens (awqguard's meaning), or "texts" taken in order and
# then cut into as many blocks as they make (AutoAWQ's max_calib_samples).
N_SAMPLES_UNITS = ("blocks", "texts")

# AutoAWQ's quant_config / quantize() keyword names -> ours.
ALIASES = {
    "q_group_size": "group_size",
    "calib_data": "calib",
    "max_calib_samples": "n_samples",
    "max_calib_seq_len": "seqlen",
}


@dataclass
class QuantConfig:
    """How to quantize. Field defaults are AutoAWQ's (docs/architecture.md §4)."""

    w_bit: int = 4
    group_size: int = 128            # -1 = one group per whole row
    zero_point: bool = True          # False = symmetric grid with a fixed zero of 2^(b-1)
    version: str = "gemm"            # checkpoint layout / kernel family
    modules_to_not_convert: tuple[str, ...] = ()
    n_samples: int = 128             # calibration blocks, or texts (see n_samples_unit)
    n_samples_unit: str = "blocks"   # "texts": AutoAWQ's max_calib_samples, set by that keyword
    seqlen: int = 512                # tokens per calibration sequence
    duo_scaling: bool = True         # s = x^r / w^(1-r) instead of x^r
    apply_clip: bool = True
    n_grid: int = 20                 # ratios r = i / n_grid
    scale_search: str = "coarse"     # 10 of the 20 ratios, refined around the best; "full": all 20 (search.py)
    matmul_dtype: str = "bfloat16"   # products of the calibration pass and the scale-search losses, when
                                     # blocks compute in float32; weights, folding and rounding stay float32
    seed: int = 0                    # which blocks ("blocks" unit only) and the loss-token subsample
    loss_sample: str = "sequences"   # which tokens the losses see: a few seeded whole "sequences", or
                                     # "spread" over the whole set (AutoAWQ's choices, see awq.py)
    loss_tokens: int = 4096          # spread: tokens drawn from every sequence for token-wise modules;
                                     # sequences: tokens of whole sequences for every loss
    loss_sequences: int = 16         # spread: whole sequences, evenly spaced, for attention losses
    gram_tokens: int = 16384         # spread: tokens behind the second moment of linear-checked losses
    clip_tokens: int = 512           # sequences: tokens the clip search sees (spread: every token)
    rounding: str = "nearest"        # "dh": greedy flips towards zero expected row error, in search and final
    max_flip_percent: float = 0.01   # dh: at most this share of in_features flipped per output row
    knee_tolerance: float = 0.0      # dh: moves the Kneedle outlier cut by this share of the searched half

    def __post_init__(self) -> None:
        if isinstance(self.version, str):
            self.version = self.version.lower()
        if isinstance(self.rounding, str):
            self.rounding = self.rounding.lower()
        if isinstance(self.matmul_dtype, str):
            self.matmul_dtype = self.matmul_dtype.lower()
        if isinstance(self.n_samples_unit, str):
            self.n_samples_unit = self.n_samples_unit.lower()
        if self.modules_to_not_convert is None:
            self.modules_to_not_convert = ()
        self.modules_to_not_convert = tuple(self.modules_to_not_convert)
        if self.w_bit not in SUPPORTED_BITS:
            raise ConfigError(f"w_bit must be one of {SUPPORTED_BITS}; got {self.w_bit}")
        g = self.group_size
        if not (g == -1 or (isinstance(g, int) and g >= 8 and g & (g - 1) == 0)):
            raise ConfigError(
                f"group_size must be -1 (whole row) or a power of two >= 8 such as 32, 64 or 128; got {g}")
        if self.version not in VERSIONS:
            raise ConfigError(f"version: only 'gemm' is written (AutoAWQ's GEMM layout, which vLLM, "
                              f"transformers and AutoAWQ load); got {self.version!r}; remove the key or set version: gemm")
        if self.rounding not in ROUNDINGS:
            raise ConfigError(f"rounding must be one of {ROUNDINGS}; got {self.rounding!r}")
        if self.scale_search not in SCALE_SEARCHES:
            raise ConfigError(f"scale_search must be one of {SCALE_SEARCHES}; got {self.scale_search!r}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ConfigError(f"matmul_dtype must be one of {MATMUL_DTYPES} (float32: exact products, slower); "
                              f"got {self.matmul_dtype!r}")
        if self.loss_sample not in LOSS_SAMPLES:
            raise ConfigError(f"loss_sample must be one of {LOSS_SAMPLES}; got {self.loss_sample!r}")
        if self.n_samples_unit not in N_SAMPLES_UNITS:
            raise ConfigError(f"n_samples_unit must be one of {N_SAMPLES_UNITS} (blocks of seqlen tokens, or "
                              f"texts as AutoAWQ's max_calib_samples counts); got {self.n_samples_unit!r}")
        if not 0.0 <= float(self.max_flip_percent) <= 1.0:
            raise ConfigError(f"max_flip_percent is a share of in_features in [0, 1] (0.01 = 1%); "
                              f"got {self.max_flip_percent}")
        if not -1.0 <= float(self.knee_tolerance) <= 1.0:
            raise ConfigError(f"knee_tolerance is a share of the searched channels in [-1, 1] "
                              f"(positive protects more outlier channels); got {self.knee_tolerance}")
        for name in ("n_samples", "seqlen", "n_grid", "loss_tokens", "clip_tokens", "gram_tokens", "loss_sequences"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer; got {getattr(self, name)}")

    @property
    def packed(self) -> bool:
        """True when the checkpoint holds packed integers (AutoAWQ GEMM format)."""
        return self.w_bit in PACKED_BITS

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modules_to_not_convert"] = list(self.modules_to_not_convert)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QuantConfig":
        """Build from our names or AutoAWQ's (`q_group_size`, `version: "GEMM"`, ...)."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if ALIASES.get(key, key) not in known:
                raise ConfigError(f"unknown quantization option {key!r}; known: {sorted(known | set(ALIASES))}")
        return cls(**_our_names(data))

    def replace(self, **changes: Any) -> "QuantConfig":
        return dataclasses.replace(self, **_our_names(changes))


def _our_names(options: Mapping[str, Any]) -> dict[str, Any]:
    """Rename AutoAWQ's keys to ours. The keyword decides what n_samples counts: AutoAWQ's
    max_calib_samples counts texts, awqguard's n_samples counts blocks unless n_samples_unit says otherwise."""
    renamed = {ALIASES.get(k, k): v for k, v in options.items()}
    if "max_calib_samples" in options:
        if "n_samples" in options:
            raise ConfigError("give max_calib_samples (AutoAWQ's count of texts) or n_samples "
                              "(awqguard's count of blocks), not both")
        if str(renamed.setdefault("n_samples_unit", "texts")).lower() != "texts":
            raise ConfigError(f"max_calib_samples counts texts, but n_samples_unit="
                              f"{renamed['n_samples_unit']!r} was given; use n_samples for blocks")
    elif "n_samples" in options:
        renamed.setdefault("n_samples_unit", "blocks")
    return renamed


# Options added after checkpoints were first recorded, and what a record without them was made with.
BEFORE_RECORDED = {"matmul_dtype": "float32"}


def recorded_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """An awqguard.json's config with every later-added option set to what made that checkpoint, so
    rebuilding it with one change changes nothing else."""
    return {**BEFORE_RECORDED, **config}


def coerce_config(config: QuantConfig | Mapping[str, Any] | None) -> QuantConfig:
    if config is None:
        return QuantConfig()
    if isinstance(config, QuantConfig):
        return config
    return QuantConfig.from_dict(config)


def group_size_for(in_features: int, group_size: int) -> int:
    return in_features if group_size == -1 else group_size


def workable_group_sizes(in_features_list: list[int]) -> list[int]:
    """Group sizes (powers of two 16..256, plus -1) that divide every given in_features."""
    sizes = [g for g in (256, 128, 64, 32, 16) if all(n % g == 0 for n in in_features_list)]
    return sizes + [-1]
