"""Fixes computed from the candidate's config and its diagnosis (awqguard/diagnose/fixes.py)."""

import pytest

from awqguard.cli import build_parser
from awqguard.diagnose.fixes import CALIB_RATIO, computed_fixes, next_group_size
from awqguard.quantizer.config import QuantConfig


@pytest.mark.parametrize("group,widths,expected", [
    (64, [576, 1536], 32), (128, [4096, 11008], 64), (32, [576], 16), (16, [576], None),
    (-1, [576, 1536], 64), (-1, [4096], 2048), (64, [200], None), (None, [96], 32),
])
def test_next_group_size_divides_every_layer(group, widths, expected):
    assert next_group_size(group, widths) == expected


def _diagnosis(group=64, js=0.1, linears=None, config_extra=None):
    return {"candidate_config": {"w_bit": 4, "group_size": group, "rounding": "nearest", **(config_extra or {})},
            "linears": linears if linears is not None else [
                {"name": "model.layers.3.mlp.down_proj", "kl": 0.02, "share": 0.3},
                {"name": "model.layers.3.self_attn.o_proj", "kl": 0.01, "share": 0.1},
                {"name": "model.layers.1.mlp.up_proj", "kl": 0.005, "share": 0.05},
                {"name": "model.layers.1.mlp.gate_proj", "kl": 0.001, "share": 0.01}],
            "in_features": {"a": 576, "b": 1536},
            "calibration": {"measured": True, "js_divergence": js, "matched": js, "floor": 0.3, "unseen_share": 0.2,
                            "sources": ["x"]}}


def test_fixes_follow_the_candidate_not_a_table():
    fixes = {f.id: f for f in computed_fixes(_diagnosis(), "fixtures/default")}
    assert set(fixes) == {"not-convert", "group-size"}            # calibration close: no --calib
    assert fixes["group-size"].changes == {"group_size": 32}
    assert fixes["not-convert"].changes["modules_to_not_convert"] == [
        "model.layers.3.mlp.down_proj", "model.layers.3.self_attn.o_proj", "model.layers.1.mlp.up_proj"]
    assert "--group-size 32" in fixes["group-size"].command({"w_bit": 4, "group_size": 64})
    assert "--group-size 64" not in fixes["group-size"].command({"w_bit": 4, "group_size": 64})
    g32 = {f.id for f in computed_fixes(_diagnosis(group=16), "s")}
    assert "group-size" not in g32                                # nothing smaller worth offering
    far = {f.id: f for f in computed_fixes(_diagnosis(js=CALIB_RATIO * 0.3 + 0.05), "fixtures/default")}
    assert far["calib"].changes == {"calib": "fixtures/default"} and "--calib fixtures/default" in far["calib"].command({})


def test_a_calibration_fix_asks_only_for_samples_the_suite_fills():
    far = CALIB_RATIO * 0.3 + 0.05
    config = {"n_samples": 128, "seqlen": 512}

    def calib_fix(tokens):
        diagnosis = {**_diagnosis(js=far, config_extra=config), "suite_calibration_tokens": tokens}
        return next((f for f in computed_fixes(diagnosis, "s") if f.id == "calib"), None)
    assert calib_fix(128 * 512).changes == {"calib": "s"}                    # enough for the candidate's set
    small = calib_fix(6807)                                                 # the default suite's corpus
    assert small.changes == {"calib": "s", "n_samples": 13} and "--n-samples 13" in small.command(config)
    assert "6,807 tokens fill 13 samples" in small.why
    assert calib_fix(7 * 512) is None                                       # under MIN_CALIB_SAMPLES: none


def test_every_fix_change_is_a_quantize_option():
    """Each change names a QuantConfig field (or the calibration), and each flag a quantize option."""
    fields = set(QuantConfig().to_dict()) | {"calib"}
    quantize = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "quantize")[1]
    options = {s for action in quantize._actions for s in action.option_strings}
    diagnosis = {**_diagnosis(js=1.0, config_extra={"w_bit": 3}), "suite_calibration_tokens": 6807}
    fixes = computed_fixes(diagnosis, "fixtures/default")
    assert {f.id for f in fixes} == {"not-convert", "group-size", "calib", "w-bit"}
    for fix in fixes:
        assert set(fix.changes) <= fields, fix
        for token in fix.command({"w_bit": 4, "group_size": 64, "rounding": "dh"}).split():
            assert not token.startswith("--") or token in options, (fix.id, token)
