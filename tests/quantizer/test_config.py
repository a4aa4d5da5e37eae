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


@pytest.mark.parametrize("bad", [{"w_bit": 5}, {"group_size": 96}, {"group_size": 0}, {"version": "marlin"},
                                 {"n_samples": 0}, {"rounding": "stochastic"}, {"max_flip_percent": -0.1},
                                 {"max_flip_percent": 2}, {"knee_tolerance": 1.5}])
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
