"""The retrieval half of the RAG pipeline under test (docs/architecture.md §7): embedder → faiss index → top-k.

The reference pipeline embeds with the full-precision embedder; the candidate pipeline can embed
with the same embedder quantized by awqguard's own AWQ (so retrieval drift is measured, not zero
by construction). Quantized embedders and faiss indexes are cached, keyed by what they depend on.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from awqguard import cache, files
from awqguard.gates.chunker import Chunk
from awqguard.gates.embedder import default_embedder_path, embed, load_embedder
from awqguard.gates.index import build_index, search
from awqguard.models import ModelSource, fingerprint

EMBEDDER_WEIGHTS = "embedder.safetensors"


@dataclass
class Retriever:
    """One pipeline's retrieval: its embedder, the chunked corpus and their faiss index."""

    embedder: object
    label: str               # "full precision" or "AWQ w4 g128"
    fingerprint: str
    chunks: list[Chunk]
    index: object

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Chunk ids of the top-k chunks per query, best first."""
        _, ids = search(self.index, embed(self.embedder, list(queries)), k)
        return [[int(i) for i in row if i >= 0] for row in ids]


@dataclass(frozen=True)
class Retrieval:
    """The retrieve stage's result: the measuring stick and each variant's retriever."""

    stick_embedder: object             # the full-precision embedder ΔS is measured with
    embedder_fingerprint: str
    reference: Retriever
    candidate: Retriever
    notices: list[str]


def retrieval_stage(pipe: dict, chunks: list[Chunk], use_cache: bool = True, custom=None) -> Retrieval:
    """Both pipelines' retrieval: the full-precision embedder for the reference and, unless the
    config says otherwise, the same embedder quantized by awqguard for the candidate. `custom`
    builds the user's own retriever (pipeline.retriever), which then feeds both."""
    from awqguard.quantizer.config import QuantConfig
    folder = embedder_folder(pipe["embedder"])
    fp = fingerprint(ModelSource(str(folder), folder))
    stick_embedder = load_embedder(folder)
    if custom is not None:
        retriever = custom()
        return Retrieval(stick_embedder, fp, retriever, retriever, [
            f"Both variants retrieve through {retriever.label}: retrieval cannot differ between them, so the "
            "retrieval gates are uninformative; each passage is aligned to the suite's corpus for coverage."])
    reference = build_retriever(stick_embedder, "full precision", fp, chunks, use_cache)
    if not pipe["quantize_embedder"]:
        return Retrieval(stick_embedder, fp, reference, reference, [
            "Retrieval cannot differ between the variants: the candidate pipeline uses the reference's "
            "full-precision embedder (pipeline.quantize_embedder: false), so the retrieval gates are "
            "uninformative."])
    ecfg = QuantConfig(w_bit=pipe["embedder_w_bit"], group_size=pipe["embedder_group_size"], n_samples=64, seqlen=256)
    q_emb, q_fp = load_quantized_embedder(pipe["embedder"], ecfg, use_cache)
    candidate = build_retriever(q_emb, f"AWQ w{ecfg.w_bit} g{ecfg.group_size}", q_fp, chunks, use_cache)
    return Retrieval(stick_embedder, fp, reference, candidate, [])


def embedder_folder(spec: str | None) -> Path:
    return default_embedder_path() if spec in (None, "default", "all-MiniLM-L6-v2") else Path(spec)


def chunks_key(chunks: Sequence[Chunk]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(f"{c.doc}\0{c.start}\0{c.end}\0{c.text}\0".encode())
    return h.hexdigest()[:16]


def build_retriever(embedder, label: str, embedder_fp: str, chunks: list[Chunk], use_cache: bool = True) -> Retriever:
    """A Retriever whose index is read from the cache when this embedder has indexed these chunks before."""
    import faiss
    path = cache.entry("index", cache.cache_key({"embedder": embedder_fp, "chunks": chunks_key(chunks)}), ".faiss")
    index = None
    if use_cache and path.exists():
        try:
            index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except RuntimeError:
            index = None                                 # a damaged entry is a miss
        if index is not None and index.ntotal != len(chunks):
            index = None
    if index is None:
        index = build_index(embed(embedder, [c.text for c in chunks]))
        if use_cache:
            files.write_bytes(path, faiss.serialize_index(index).tobytes())
    return Retriever(embedder, label, embedder_fp, chunks, index)


def load_quantized_embedder(spec: str | None, cfg, use_cache: bool = True):
    """(embedder, fingerprint): the sentence-transformers embedder with its transformer quantized by AWQ.

    Calibrated on awqguard's built-in text; cached under `.awqguard/embedders/<key>/`.
    """
    from safetensors.torch import load_file, save_file

    from awqguard.kernels.paths import default_path
    from awqguard.kernels.wqlinear import set_kernel_path
    from awqguard.quantizer.checkpoint import checkpoint_tensors, install_awq_linears
    folder = embedder_folder(spec)
    base_fp = fingerprint(ModelSource(str(folder), folder))
    key = cache.cache_key({"embedder": base_fp, "quant": cfg.to_dict()})
    target = cache.entry("embedders", key)
    embedder = load_embedder(folder)
    transformer = embedder[0].auto_model
    with cache.lock(target) if use_cache else contextlib.nullcontext():   # parallel checks quantize it once
        if use_cache and (target / EMBEDDER_WEIGHTS).exists():
            tensors = load_file(str(target / EMBEDDER_WEIGHTS))
            if any(name.endswith(".qweight") for name in tensors):     # packed 4-bit; 2/3/8 bits are saved as floats
                install_awq_linears(transformer, tensors, cfg.group_size, target)
            transformer.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()},
                                        strict=False)
        else:
            from awqguard.quantizer.api import quantize
            quantize(transformer, tokenizer=embedder.tokenizer, config=cfg)
            if use_cache:
                with files.staging_dir(target) as staging:
                    save_file(checkpoint_tensors(transformer), str(staging / EMBEDDER_WEIGHTS))
                    files.publish_dir(staging, target)
    set_kernel_path(transformer, default_path("cpu"))
    transformer.eval()
    return embedder, f"{base_fp}-awq-{key[:8]}"
