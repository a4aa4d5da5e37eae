"""The gates on the real SmolLM2-135M-Instruct over a reduced default suite: no false alarm for an
identical candidate (with a quantized embedder moving retrieval), and deliberately damaged
candidates fail with the right symptom. The full-suite version is bench/damaged.py."""

import pytest

from awqguard.gates.engine import LoadedModel, run_gates
from awqguard.quantizer.damage import corrupt_scales, rtn_candidate, rtn_packed
from engine_helpers import config, reduced_suite

pytestmark = pytest.mark.slow

REDUCED = dict(probes={"items": 2, "k": [5]}, entropy={"tokens": 96}, perplexity={"window": 256, "max_windows": 6},
               decision={"min_items": 1})


@pytest.fixture(scope="module")
def env(smollm, tmp_path_factory):
    root = tmp_path_factory.mktemp("gates-real")
    suite = reduced_suite(root / "suite", {"qa": 3, "json": 1, "long": 1})
    model, tokenizer = smollm
    reference = LoadedModel(model, tokenizer, "SmolLM2-135M-Instruct", "smollm2-reference")
    return root, suite, reference


def _run(env, candidate, monkeypatch, **overrides):
    root, suite, reference = env
    monkeypatch.setenv("AWQGUARD_CACHE", str(root / "cache"))     # the reference run is reused across tests
    return run_gates(config(suite=str(suite), **{**REDUCED, **overrides}), reference=reference, candidate=candidate)


def test_identical_candidate_passes_every_gate_with_a_quantized_embedder(env, monkeypatch):
    _, _, ref = env
    results = _run(env, LoadedModel(ref.model, ref.tokenizer, "the reference itself", ref.fingerprint), monkeypatch)
    assert results["passed"], [g["message"] for g in results["gates"] if not g["passed"]]
    assert not [g["id"] for g in results["gates"] if g["status"] == "warn"]
    assert results["environment"]["embedder"]["candidate_pipeline"].startswith("AWQ")
    # the quantized embedder really moves retrieval (so answers move too), yet no gate fires
    assert results["metrics"]["retrieval.top1_agreement"]["value"] < 1
    assert results["metrics"]["kl.mean"]["value"] == 0
    # the drift is the retrieval's: items whose prompts matched have identical answers (coupled
    # samples of one generator), and the changed ones are measured as retrieval drift
    changed = results["metrics"]["retrieval.changed_share"]
    assert changed["value"] > 0 and changed["items_with_changed_runs"] >= 1, changed
    assert results["metrics"]["drift.answer_ds_mean"]["value"] == pytest.approx(0, abs=1e-6)
    assert results["metrics"]["drift.retrieval_answer_ds_excess"]["value"] is not None
    blamed = {s["id"] for g in results["gates"] if g["status"] in ("fail", "warn") for s in g["symptoms"]}
    assert blamed <= {"retrieval-drift"}, blamed


def test_two_bit_round_to_nearest_fails_with_perplexity_drift(env, monkeypatch):
    _, _, ref = env
    damaged = LoadedModel(rtn_candidate(ref.model, 2, 64), ref.tokenizer, "RTN w2 g64", "rtn-w2")
    results = _run(env, damaged, monkeypatch, pipeline={"quantize_embedder": False})
    failed = {g["id"] for g in results["gates"] if g["status"] == "fail"}
    assert not results["passed"] and {"perplexity-ratio", "drift-mean"} <= failed, failed
    assert "ppl-drift" in results["summary"]["symptoms"]


def test_corrupted_scales_in_some_blocks_fail_with_perplexity_drift(env, monkeypatch):
    _, _, ref = env
    packed = rtn_packed(ref.model, 64)
    damaged = LoadedModel(corrupt_scales(packed, range(8, 22), 0.5), ref.tokenizer, "scales corrupted", "corrupt",
                          quantized=True)
    results = _run(env, damaged, monkeypatch, pipeline={"quantize_embedder": False})
    failed = {g["id"] for g in results["gates"] if g["status"] == "fail"}
    assert not results["passed"] and "perplexity-ratio" in failed, failed
    assert "ppl-drift" in results["summary"]["symptoms"]
    assert results["metrics"]["cost.weight_bytes_ratio"]["value"] < 0.4        # the packed format is intact
