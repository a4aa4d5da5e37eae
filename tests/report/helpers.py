"""A real (tiny-model) check for the report and plugin tests: a suite, a reference and a far candidate."""

from __future__ import annotations

from pathlib import Path

import yaml

import tiny_models
from engine_helpers import reduced_suite, save_sharp_model

FAST = {"pipeline": {"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 2, "quantize_embedder": False},
        "decoding": {"max_new_tokens": {"qa": 12, "json": 12, "long": 12}}, "probes": {"items": 2, "k": [3]},
        "entropy": {"tokens": 48}, "perplexity": {"window": 64, "max_windows": 4}}


def tiny_check(root: Path) -> dict:
    """Folders for a tiny check: suite (2 qa, 1 json, 1 long items), reference, and a far candidate."""
    suite = reduced_suite(root / "suite", {"qa": 2, "json": 1, "long": 1})
    tiny_models.save_hf_folder("llama-gqa", root / "ref", seed=0)
    save_sharp_model(root / "far")
    return {"suite": suite, "reference": root / "ref", "far": root / "far"}


def write_config(path: Path, folders: dict, candidate: str, out: Path) -> Path:
    body = {"reference": str(folders["reference"]), "candidate": str(folders[candidate]),
            "suite": str(folders["suite"]), "out": str(out), **FAST}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path
