"""The gate engine end to end on a tiny random model: wiring, outputs, caching, no false alarms."""

import json

import pytest

import tiny_models
from awqguard.gates.engine import run_gates
from awqguard.report.outputs import write_outputs
from engine_helpers import config, reduced_suite, save_sharp_model

FAST = dict(pipeline={"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 2, "quantize_embedder": False},
            decoding={"max_new_tokens": 12}, probes={"items": 2, "k": [3]}, entropy={"tokens": 48},
            perplexity={"window": 64, "max_windows": 4}, decision={"min_items": 1})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    suite = reduced_suite(root / "suite", {"qa": 2, "json": 1, "long": 1})
    tiny_models.save_hf_folder("llama-gqa", root / "ref", seed=0)
    save_sharp_model(root / "other")
    return root, suite



@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path / "cache"))


def test_identical_candidate_passes_every_gate(setup):
    root, suite = setup
    results = run_gates(config(reference=str(root / "ref"), candidate=str(root / "ref"), suite=str(suite), **FAST))
    assert results["passed"], [g["message"] for g in results["gates"] if not g["passed"]]
    statuses = {g["id"]: g["status"] for g in results["gates"]}
    assert set(statuses.values()) <= {"pass", "skip", "uninformative"}, statuses
    # one retriever serves both variants: the retrieval gates could not fail, and say so
    for gate in ("retrieval-ds-mean", "retrieval-ds-item", "coverage"):
        assert statuses[gate] == "uninformative", gate
    assert results["verdict"] == "pass" and results["summary"]["uninformative"] >= 3
    assert results["metrics"]["drift.answer_ds_mean"]["value"] == 0
    assert results["metrics"]["kl.mean"]["value"] == pytest.approx(0, abs=1e-6)
    assert any("reference model itself" in n for n in results["notices"])
    assert any("Retrieval cannot differ" in n for n in results["notices"])
    from awqguard.gates.registry import METRICS
    undeclared = set(results["metrics"]) - set(METRICS)
    assert not undeclared, f"metrics produced but not declared in gates/registry.py: {sorted(undeclared)}"
    assert len(results["metrics"]) >= 40


def test_different_model_fails_the_drift_gates_with_symptoms_and_fixes(setup, tmp_path):
    root, suite = setup
    results = run_gates(config(reference=str(root / "ref"), candidate=str(root / "other"), suite=str(suite), **FAST))
    by_id = {g["id"]: g for g in results["gates"]}
    assert not results["passed"]
    for gate in ("perplexity-ratio", "kl-mean"):
        assert by_id[gate]["status"] in ("fail", "warn"), by_id[gate]["message"]
        low, high = by_id[gate]["ci"]
        assert low <= by_id[gate]["value"] <= high and by_id[gate]["n"] == 4      # four perplexity windows
        assert by_id[gate]["fixes"] and by_id[gate]["symptoms"][0]["id"] == "ppl-drift"
    assert "ppl-drift" in results["summary"]["symptoms"]
    paths = write_outputs(results, tmp_path / "out")
    body = json.loads(paths["results"].read_text())
    assert body["schema_version"] == 1 and "records" not in body
    for g in body["gates"]:
        assert {"id", "metric", "value", "threshold", "op", "severity", "passed", "symptoms", "fixes",
                "worst_items"} <= set(g)
    lines = paths["items"].read_text().splitlines()
    assert len(lines) == 4 * 4 * 2                   # items x (question + 3 paraphrases) x seeds
    rec = json.loads(lines[0])
    assert {"question", "reference", "candidate", "drift"} <= set(rec)
    assert {"retrieved", "answer", "ds_qr", "coverage", "ds_aa"} <= set(rec["candidate"])
    assert set(results["timing"]["stages"]) >= {"reference run", "candidate run", "measure", "perplexity"}


def test_runs_are_cached_and_reused(setup):
    root, suite = setup
    cfg = config(reference=str(root / "ref"), candidate=str(root / "other"), suite=str(suite), **FAST)
    first = run_gates(cfg)
    second = run_gates(cfg)
    assert first["cache"]["hits"] == {"reference": False, "candidate": False}
    assert second["cache"]["hits"] == {"reference": True, "candidate": True}
    assert first["metrics"] == second["metrics"]
    third = run_gates(config(**{**cfg, "seeds": [5, 6]}))     # a changed input is a miss
    assert third["cache"]["hits"] == {"reference": False, "candidate": False}


def test_greedy_run_says_seeds_cannot_differ(setup):
    root, suite = setup
    fast = {**FAST, "decoding": {"max_new_tokens": 12, "greedy": True}}
    results = run_gates(config(reference=str(root / "ref"), candidate=str(root / "ref"), suite=str(suite), **fast))
    assert any("Greedy decoding" in n for n in results["notices"])
    assert results["metrics"]["drift.seed_noise"]["value"] is None
