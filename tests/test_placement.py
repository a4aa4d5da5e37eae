"""Where `awqguard check` puts in-process models (awqguard/placement.py)."""

import pytest
import torch

from awqguard.errors import ConfigError
from awqguard.gates.config import load_config
from awqguard.placement import devices_of, place, plan
from tiny_models import build, outputs


@pytest.mark.parametrize("setting,gpus,expected", [
    ("auto", 0, "cpu"), ("auto", 1, "cuda"), ("auto", 2, "spread"), ("auto", 8, "spread"),
    ("cpu", 0, "cpu"), ("cpu", 4, "cpu"),
])
def test_plan_follows_the_setting_and_the_visible_gpus(setting, gpus, expected):
    assert plan(setting, gpus) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's behaviour")
def test_without_cuda_a_model_stays_on_the_cpu_unchanged():
    model = build("llama-gqa")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    placed = place(model, "auto")
    assert devices_of(placed) == {"cpu"} and next(placed.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in placed.state_dict().items())


def test_device_setting_is_validated(tmp_path):
    path = tmp_path / "awqguard.yaml"
    path.write_text("device: gpu\n")
    with pytest.raises(ConfigError, match=r"device: 'gpu' is not one of \['auto', 'cpu'\]"):
        load_config(path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_model_runs_on_the_gpus_in_float16():
    model = build("llama-gqa")
    ids = torch.randint(3, 128, (2, 16))
    expected = outputs(model, ids)
    placed = place(build("llama-gqa"), "auto")
    assert all(d.startswith("cuda") for d in devices_of(placed))
    got = outputs(placed, ids.to(next(placed.parameters()).device)).float().cpu()
    assert torch.allclose(got, expected, atol=0.05, rtol=0.05)
