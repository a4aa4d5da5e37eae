import pytest

from awqguard import QuantConfig
from awqguard.errors import ConfigError
from awqguard.quantizer.config import workable_group_sizes


def test_autoawq_dict_keys():
    cfg = QuantConfig.from_dict({"zero_point": False, "q_group_size": 64, "w_bit": 4, "version": "GEMM"})
    assert (cfg.zero_point, cfg.group_size, cfg.w_bit, cfg.version) == (False, 64, 4, "gemm")


def test_autoawq_quantize_kwargs_replace():
    cfg = QuantConfig().replace(max_calib_samples=16, max_calib_seq_len=128, duo_scaling=False, apply_clip=False)
    assert (cfg.n_samples, cfg.seqlen, cfg.duo_scaling, cfg.apply_clip) == (16, 128, False, False)


@pytest.mark.parametrize("bad", [{"w_bit": 5}, {"group_size": 96}, {"group_size": 0}, {"version": "marlin"}, {"version": "gemv"},
                                 {"n_samples": 0}, {"rounding": "stochastic"}, {"max_flip_percent": -0.1},
                                 {"max_flip_percent": 2}, {"knee_tolerance": 1.5}, {"loss_sample": "tokens"},
                                 {"loss_sequences": 0}, {"gram_tokens": -1}, {"scale_search": "golden"}])
def test_invalid_values_name_what_is_allowed(bad):
    with pytest.raises(ConfigError) as err:
        QuantConfig(**bad)
    assert str(list(bad)[0]) in str(err.value)


def test_unknown_key():
    with pytest.raises(ConfigError, match="unknown quantization option 'groupsize'"):
        QuantConfig.from_dict({"groupsize": 64})


def test_workable_group_sizes():
    assert workable_group_sizes([576, 1536]) == [64, 32, 16, -1]


def test_rounding_options_round_trip_and_accept_any_case():
    cfg = QuantConfig.from_dict({"rounding": "DH", "max_flip_percent": 0.02, "knee_tolerance": -0.1})
    assert (cfg.rounding, cfg.max_flip_percent, cfg.knee_tolerance) == ("dh", 0.02, -0.1)
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    assert QuantConfig().rounding == "nearest"


def test_autoawq_max_calib_samples_counts_texts_and_n_samples_counts_blocks():
    from awqguard.quantizer.config import coerce_config
    assert QuantConfig().n_samples_unit == "blocks"
    for cfg in (QuantConfig().replace(max_calib_samples=64), coerce_config({"max_calib_samples": 64})):
        assert (cfg.n_samples, cfg.n_samples_unit) == (64, "texts")
    for cfg in (QuantConfig().replace(n_samples=64), coerce_config({"n_samples": 64}),
                coerce_config({"max_calib_samples": 8}).replace(n_samples=64)):
        assert (cfg.n_samples, cfg.n_samples_unit) == (64, "blocks")


def test_max_calib_samples_conflicts_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        QuantConfig.from_dict({"max_calib_samples": 8, "n_samples": 8})
    with pytest.raises(ConfigError, match="max_calib_samples counts texts"):
        QuantConfig().replace(max_calib_samples=8, n_samples_unit="blocks")


def test_n_samples_unit_is_validated_and_part_of_the_identity():
    with pytest.raises(ConfigError, match=r"n_samples_unit must be one of \('blocks', 'texts'\).*'tokens'"):
        QuantConfig(n_samples_unit="tokens")
    texts = QuantConfig().replace(max_calib_samples=128)
    assert texts.to_dict()["n_samples_unit"] == "texts" and QuantConfig().to_dict()["n_samples_unit"] == "blocks"
    assert texts.to_dict() != QuantConfig().to_dict() and QuantConfig.from_dict(texts.to_dict()) == texts
