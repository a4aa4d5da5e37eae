"""The real embedder (packaged all-MiniLM-L6-v2) and a faiss index over the default suite."""

from pathlib import Path

import numpy as np
import pytest

from awqguard.gates.chunker import chunk_corpus, section_token_span
from awqguard.gates.embedder import embed, load_embedder
from awqguard.gates.fixtures import load_suite
from awqguard.gates.index import build_index, search
from awqguard.gates.metrics import coverage, delta_s

SUITE = Path(__file__).resolve().parents[2] / "fixtures" / "default"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_embeddings_are_unit_vectors_and_delta_s_behaves(embedder):
    v = embed(embedder, ["Rotate API keys every 90 days.", "Rotate API keys every 90 days.",
                         "API keys should be rotated each quarter.", "The canteen serves soup on Fridays."])
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert delta_s(v[0], v[1]) == pytest.approx(0.0, abs=1e-5)
    assert delta_s(v[0], v[2]) < 0.4 < delta_s(v[0], v[3])


def test_questions_retrieve_their_anchor_sections(embedder):
    """Coverage of each item's anchor by the top-5 chunks: measured 0.99 mean (98% of items >= 0.70)."""
    suite = load_suite(SUITE)
    chunks = chunk_corpus(suite.documents.values())
    index = build_index(embed(embedder, [f"{c.header}\n{c.text}" for c in chunks]))
    _, ids = search(index, embed(embedder, [i.question for i in suite.items]), k=5)
    covs = np.array([coverage([section_token_span(*suite.sections[a]) for a in item.anchors],
                              [chunks[j].span for j in row]) for item, row in zip(suite.items, ids)])
    assert covs.mean() >= 0.9 and (covs >= 0.7).mean() >= 0.9, covs.round(2)
    # a deliberately wrong index (chunks shuffled against their vectors) must fail the same bar
    rng = np.random.default_rng(0)
    wrong = [chunks[j] for j in rng.permutation(len(chunks))]
    bad = np.array([coverage([section_token_span(*suite.sections[a]) for a in item.anchors],
                             [wrong[j].span for j in row]) for item, row in zip(suite.items, ids)])
    assert bad.mean() < 0.5


def test_a_two_bit_embedder_is_read_back_from_the_cache_as_it_was_made(tmp_path, monkeypatch):
    """2-bit weights are saved as dequantized floats (no packed tensors): the cached copy must load
    as those floats, not be taken for a packed AWQ checkpoint."""
    from awqguard.gates.pipeline import load_quantized_embedder
    from awqguard.quantizer.config import QuantConfig
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path))
    cfg = QuantConfig(w_bit=2, group_size=128, n_samples=8, seqlen=64)
    made, made_fp = load_quantized_embedder(None, cfg)
    cached, cached_fp = load_quantized_embedder(None, cfg)
    texts = ["How often should API keys be rotated?", "Revocation takes effect within 60 seconds."]
    assert made_fp == cached_fp
    np.testing.assert_allclose(embed(made, texts), embed(cached, texts), atol=1e-5)
    assert delta_s(embed(made, texts)[0], embed(load_embedder(), texts)[0]) > 1e-4    # really quantized
