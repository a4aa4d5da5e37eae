"""Shared set-up for engine tests: a reduced copy of the default suite and a tiny model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from awqguard.gates.config import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SUITE = ROOT / "fixtures" / "default"


def reduced_suite(folder: Path, per_kind: dict[str, int]) -> Path:
    """The default suite's corpus with the first N items of each kind."""
    spec = yaml.safe_load((DEFAULT_SUITE / "suite.yaml").read_text())
    items = []
    for kind, n in per_kind.items():
        items += [it for it in spec["items"] if it.get("kind", "qa") == kind][:n]
    spec["items"] = items
    shutil.copytree(DEFAULT_SUITE / spec.get("corpus", "corpus"), folder / "corpus")
    (folder / "suite.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def config(**overrides) -> dict:
    """DEFAULTS with nested overrides, e.g. config(pipeline={"top_k": 3})."""
    import copy
    c = copy.deepcopy(DEFAULTS)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(c.get(key), dict):
            c[key].update(value)
        else:
            c[key] = value
    return c


def save_sharp_model(folder):
    """A different tiny model with confident (sharp) next-token distributions: far from the reference."""
    import torch

    import tiny_models
    model = tiny_models.save_hf_folder("llama-gqa", folder, seed=1)
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
    model.save_pretrained(str(folder))
