"""Exact nearest-neighbour retrieval over chunk embeddings with faiss (inner product on unit vectors)."""

from __future__ import annotations

import numpy as np


def build_index(vectors: np.ndarray):
    """A faiss IndexFlatIP over L2-normalised [n, d] vectors: exact cosine search."""
    import faiss
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [q, k], chunk ids [q, k]) best first."""
    k = min(k, index.ntotal)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
