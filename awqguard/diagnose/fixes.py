"""Fixes computed for the candidate at hand, from its own config and its diagnosis.

A fix is a change to the candidate's QuantConfig (what `awqguard tune` applies) plus the evidence
for it; its command line repeats the candidate's settings with the change, so it can be pasted.
No fix is offered without a reason measured on this candidate: no smaller group size when none
divides every layer, no `--calib` unless the calibration text is measurably far from the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from awqguard.quantizer.config import QuantConfig

# The calibration text "differs" from the corpus when slices of it sit this many times farther from
# half the corpus than the corpus's other half does (run.calibration_distance). Measured with the
# default model's tokenizer on the default suite: halves 0.29; the built-in Python documentation
# 0.53-0.57 (1.9x); the suite's own corpus as calibration 0.20-0.28 (below the floor).
CALIB_RATIO = 1.5
MIN_GROUP = 16               # smaller groups cost more in scales than they return
NOT_CONVERT = 3              # at most this many linears kept in full precision by one fix
MIN_CALIB_SAMPLES = 8        # a suite too small for this many samples is no calibration set alone


@dataclass(frozen=True)
class Fix:
    id: str                                  # "not-convert", "group-size", "calib", "w-bit"
    changes: dict[str, Any]                  # QuantConfig field -> new value
    why: str                                 # the evidence, in one sentence
    flags: tuple[str, ...] = field(default=())   # the command-line options that make the change

    def command(self, config: dict | None) -> str:
        """`awqguard quantize` with the candidate's settings and this change."""
        return " ".join(["awqguard quantize", *base_flags(config, self.changes), *self.flags, "--out DIR"])


def base_flags(config: dict | None, changes: dict[str, Any]) -> list[str]:
    """The candidate's bit width, group size (unless changed) and other non-default settings, so
    the command rebuilds it."""
    config = config or {}
    flags = []
    if "w_bit" in config and "w_bit" not in changes:
        flags.append(f"--w-bit {config['w_bit']}")
    if "group_size" in config and "group_size" not in changes:
        flags.append(f"--group-size {config['group_size']}")
    if config.get("rounding", "nearest") != "nearest":
        flags.append(f"--rounding {config['rounding']}")
    if config.get("matmul_dtype", QuantConfig.matmul_dtype) != QuantConfig.matmul_dtype:
        flags.append(f"--matmul-dtype {config['matmul_dtype']}")
    return flags


def next_group_size(group_size: int | None, widths: list[int]) -> int | None:
    """The largest power-of-two group smaller than `group_size` (-1: whole rows) that divides every
    layer's input width, or None."""
    if not widths:
        return None
    start = min(widths) if group_size in (None, -1) else group_size
    g = 1 << (max(start - 1, 1).bit_length() - 1)          # the power of two below start
    while g >= MIN_GROUP:
        if g < start and all(w % g == 0 for w in widths):
            return g
        g //= 2
    return None


def computed_fixes(diagnosis: dict, suite: str) -> list[Fix]:
    """The fixes `diagnosis` supports, most targeted first; `suite` is the suite folder to calibrate on."""
    config = diagnosis.get("candidate_config") or {}
    fixes = []
    keep = [row for row in diagnosis["linears"][:NOT_CONVERT] if row["kl"] > 0]
    if keep:
        names = [row["name"] for row in keep]
        share = sum(row["share"] for row in keep)
        already = list(config.get("modules_to_not_convert", []))
        fixes.append(Fix("not-convert", {"modules_to_not_convert": already + names},
                         f"{', '.join(names)} alone add {share:.0%} of the candidate's KL when swapped into the "
                         "float model", tuple(f"--not-convert {n}" for n in already + names)))
    smaller = next_group_size(config.get("group_size"), list(diagnosis.get("in_features", {}).values()))
    if smaller is not None:
        fixes.append(Fix("group-size", {"group_size": smaller},
                         f"the candidate uses group size {config.get('group_size')}; {smaller} is the next "
                         "smaller one that divides every layer", (f"--group-size {smaller}",)))
    calib = _calib_fix(diagnosis, config, suite)
    if calib is not None:
        fixes.append(calib)
    if config.get("w_bit", 4) < 4:
        fixes.append(Fix("w-bit", {"w_bit": 4}, f"the candidate stores {config['w_bit']} bits per weight; 4 is the "
                         "narrowest packed width and the most common served one", ("--w-bit 4",)))
    return fixes


def _calib_fix(diagnosis: dict, config: dict, suite: str) -> Fix | None:
    """`--calib <suite>` when the calibration text differs from the suite's corpus, with as many
    samples as the suite's own tokens fill (a corpus smaller than the candidate's calibration set
    would make the quantizer refuse the trial); None when no difference was measured or the suite
    cannot fill MIN_CALIB_SAMPLES samples."""
    calib = diagnosis.get("calibration", {})
    if not (calib.get("measured") and calib["matched"] > CALIB_RATIO * calib["floor"]):
        return None
    changes, flags = {"calib": suite}, [f"--calib {suite}"]
    why = (f"the calibration text is far from the suite's corpus (token JS divergence {calib['matched']:.2f} "
           f"against {calib['floor']:.2f} between the corpus's own halves; {calib['unseen_share']:.0%} of the "
           "corpus's tokens never occur in it)")
    tokens = diagnosis.get("suite_calibration_tokens")
    n_samples, seqlen = config.get("n_samples", 128), config.get("seqlen", 512)
    if tokens is not None and config.get("n_samples_unit", "blocks") == "blocks" and tokens < n_samples * seqlen:
        fit = tokens // seqlen
        if fit < MIN_CALIB_SAMPLES:
            return None
        changes["n_samples"] = fit
        flags.append(f"--n-samples {fit}")
        why += f"; the suite's {tokens:,} tokens fill {fit} samples of {seqlen}, not {n_samples}"
    return Fix("calib", changes, why, tuple(flags))
