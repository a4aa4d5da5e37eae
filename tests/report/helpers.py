"""A real (tiny-model) check for the report and plugin tests: a suite, a reference and a far candidate."""

from __future__ import annotations

from pathlib import Path

import yaml

import tiny_models
from engine_helpers import reduced_suite, save_sharp_model

FAST = {"pipeline": {"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 2, "quantize_embedder": False},
        "decoding": {"max_new_tokens": {"qa": 12, "json": 12, "long": 12}}, "probes": {"items": 2, "k": [3]},
        "entropy": {"tokens": 48}, "perplexity": {"window": 64, "max_windows": 4},
        "decision": {"min_items": 2}}       # the tiny suite's 4 items are too few for the default; gates decide


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


def _gate(gate_id: str, status: str, value, message: str, severity: str = "fail") -> dict:
    return {"id": gate_id, "metric": f"{gate_id}.mean", "description": f"{gate_id} over the suite", "value": value,
            "reference": None, "threshold": 0.1, "op": "<=", "tolerance": None, "severity": severity,
            "status": status, "passed": status in ("pass", "skip"),
            "basis": "none" if value is None else "absolute", "message": message, "ci": None,
            "symptoms": [{"id": "ppl-drift", "title": "Perplexity rises and answers drift"}],
            "fixes": ["decode deterministically: awqguard check --greedy"] if status in ("fail", "warn") else [],
            "worst_items": [] if value is None else [{"item": "q001", "value": 0.4}]}


def minimal_results() -> dict:
    """A small results.json body shaped as run_gates writes it, built by hand: one item; a passed,
    a failed, a warned and a skipped gate. Counts and verdict agree with the gates."""
    side = {"lambda": "→", "ds_qr": 0.3, "coverage": 0.8, "retrieved": ["auth#keys"], "answer": "Rotate it."}
    gates = [_gate("drift-mean", "pass", 0.05, "drift-mean.mean = 0.05 passes <= 0.1"),
             _gate("perplexity-ratio", "fail", 0.5, "perplexity-ratio.mean = 0.5 fails <= 0.1"),
             _gate("kl-mean", "warn", 0.3, "kl-mean.mean = 0.3 fails <= 0.1", severity="warn"),
             _gate("probe-flips", "skip", None, "probe-flips.mean not measured: probes are off")]
    return {
        "schema_version": 1, "awqguard_version": "0.0.0", "created": "2025-01-01T00:00:00+00:00",
        "passed": False, "warn_only": False,
        "summary": {"gates": 4, "failed": 1, "warned": 1, "skipped": 1, "symptoms": ["ppl-drift"], "items": 1,
                    "runs": 2},
        "gates": gates,
        "symptoms": [{"id": "ppl-drift", "title": "Perplexity rises and answers drift", "description": "d",
                      "causes": ["c"], "fixes": ["f"], "gates": ["perplexity-ratio", "kl-mean"]}],
        "notices": ["Only 1 items."], "metrics": {}, "probes": {},
        "items": {"q001": {"kind": "qa", "question": "How do I rotate a key?", "reference": dict(side),
                           "candidate": dict(side), "drift": {"answer_ds": 0.1, "answer_ds_ci": [0.05, 0.15],
                                                              "seed_noise": 0.02, "answer_ds_excess": 0.08}}},
        "entropy": {}, "perplexity": None,
        "environment": {"awqguard": "0.0.0", "python": "3.11.7", "torch": "2.13.0", "transformers": "4.57.1",
                        "platform": "Linux-x86_64", "device": "cpu", "dtype": "float32", "threads": 2,
                        "kernel_paths": ["float"],
                        "reference": {"source": "ref", "fingerprint": "r1"},
                        "candidate": {"source": "cand", "fingerprint": "c1"},
                        "suite": {"name": "default", "fingerprint": "s1", "items": 1},
                        "embedder": {"fingerprint": "e1", "candidate_pipeline": "full precision"},
                        "seeds": [0, 1], "config": {}},
        "timing": {"wall_s": 1.5, "stages": {"measure": 0.5}},
    }


INCONCLUSIVE_MESSAGE = "hit-rate.mean = 0.09: its 95% interval [0.060, 0.130] straddles <= 0.1"
UNINFORMATIVE_MESSAGE = "the reference scores 1.000, the ceiling of json-valid.rate: the gate could not fail"


def undecided_results(strict: bool = False) -> dict:
    """minimal_results with its failed gate passing and two gates added: one inconclusive (its interval
    straddles the threshold), one uninformative (the reference sits at the metric's ceiling), and the keys
    results.json carries since: `n`, the two counts, `strict` and `verdict` (inconclusive; fail under strict)."""
    r = minimal_results()
    r["gates"][1].update(status="pass", passed=True, value=0.05, fixes=[],
                         message="perplexity-ratio.mean = 0.05 passes <= 0.1")
    undecided = {**_gate("hit-rate", "inconclusive", 0.09, INCONCLUSIVE_MESSAGE), "passed": True, "ci": [0.06, 0.13],
                 "n": 12, "fixes": ["add items to the suite for a narrower interval"]}
    ceiling = {**_gate("json-valid", "uninformative", 1.0, UNINFORMATIVE_MESSAGE), "passed": True, "op": ">=",
               "threshold": 0.9, "reference": 1.0, "basis": "reference", "tolerance": 0.05, "ci": [1.0, 1.0],
               "n": 4, "symptoms": [], "worst_items": []}
    r["gates"] += [undecided, ceiling]
    for g in r["gates"]:
        g.setdefault("n", None)
    r["summary"].update(gates=6, failed=0, inconclusive=1, uninformative=1)
    r.update(strict=strict, verdict="fail" if strict else "inconclusive", passed=not strict)
    return r
