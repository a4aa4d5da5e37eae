pytest_plugins = ["pytester"]

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))   # tiny_models


@pytest.fixture(scope="session")
def smollm():
    """The real default model (float32) and its tokenizer, loaded once per session."""
    from awqguard.models import load_reference
    model, tokenizer, _ = load_reference()
    return model, tokenizer


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
