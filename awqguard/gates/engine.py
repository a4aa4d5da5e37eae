"""The gate engine behind `awqguard check` (docs/architecture.md §7-10): reference and candidate side by side.

Stages: load models → build both pipelines' retrieval → run both variants (cached) → measure with
the full-precision stick → entropy, perplexity and KL on both models → decide the gates → write
results.json and items.jsonl. Every stage's wall time goes into the results.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from awqguard.version import __version__
from awqguard import evidence, files
from awqguard.errors import ConfigError
from awqguard import cache
from awqguard.gates import aggregate, prompt
from awqguard.gates.chunker import chunk_corpus
from awqguard.gates.config import DEFAULTS, gates_from_config
from awqguard.gates.embedder import load_embedder
from awqguard.gates.entropy import entropy_verdict, position_curves
from awqguard.gates.fixtures import load_suite
from awqguard.gates.generation import Decoding
from awqguard.gates.perplexity import compare_models, heldout_windows
from awqguard.gates.pipeline import build_retriever, embedder_folder, load_quantized_embedder
from awqguard.gates.problem_map import SYMPTOMS
from awqguard.gates.runner import RunSettings, run_variant
from awqguard.gates.scoring import Stick
from awqguard.models import ModelSource, fingerprint, load_model, load_tokenizer, resolve_model
from awqguard.report.schema import SCHEMA_VERSION     # one number for the writer and the reader

MIN_PROBES = 10               # fewer probe answers than this cannot tell a flip rate from noise
TOKENIZER_PROBE = "Rotate key tk_live_42 via `tarn keys rotate` within 24 hours; see [auth#rotating-keys]."


class Stages:
    """Wall time per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t, 2)

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def resolve_suite(spec: str) -> Path:
    """The suite folder; the shipped default is also found from outside the repository root."""
    path = Path(spec)
    shipped = Path(awqguard.__file__).resolve().parents[1] / DEFAULTS["suite"]
    if not path.exists() and spec == DEFAULTS["suite"] and shipped.exists():
        return shipped
    return path


def settings_from(config: dict) -> RunSettings:
    dec, pipe, probes = config["decoding"], config["pipeline"], config["probes"]
    budget = dec["max_new_tokens"]
    budget = {k: budget for k in ("qa", "json", "long")} if isinstance(budget, int) else {**DEFAULTS["decoding"]["max_new_tokens"], **budget}
    return RunSettings(seeds=tuple(config["seeds"]), top_k=pipe["top_k"], prompt_chunks=pipe["prompt_chunks"],
                       header_order=pipe["header_order"],
                       decoding=Decoding(dec["greedy"], dec["temperature"], dec["top_p"], max(budget.values())),
                       max_new_tokens=budget, probe_items=probes["items"], probe_k=tuple(probes["k"]),
                       probe_shuffle=probes["header_shuffle"], entropy_tokens=config["entropy"]["tokens"])


# ---- models ---------------------------------------------------------------------------------------

def _quant_config(config: dict):
    from awqguard.quantizer.config import QuantConfig
    try:
        return QuantConfig(**config["quantize"])
    except TypeError as exc:
        raise ConfigError(f"quantize: {exc}") from None


def load_candidate(config: dict, ref_source: ModelSource, ref_fp: str, ref_tokenizer) -> tuple[Any, Any, dict]:
    """(model, tokenizer, info) for the candidate: a checkpoint or model given by the user, or the
    reference quantized with awqguard's AWQ (cached under .awqguard/candidates/)."""
    from awqguard.quantizer.checkpoint import RECORD_FILE, load_quantized, read_quantization_config
    spec = config["candidate"]
    if spec is None:
        from awqguard.quantizer.api import quantize
        qcfg = _quant_config(config)
        out = cache.entry("candidates", cache.cache_key({"model": ref_fp, "quant": qcfg.to_dict()}))
        with cache.lock(out):            # a parallel check of the same reference waits, then reuses it
            result = quantize(config["reference"], out=out, config=qcfg)
        rounding = "" if qcfg.rounding == "nearest" else f", {qcfg.rounding} rounding"
        return result.model, result.tokenizer, {"source": f"{ref_source.label} quantized by awqguard (AWQ "
                                                          f"w{qcfg.w_bit} g{qcfg.group_size}{rounding})", "path": str(out),
                                                "fingerprint": cache.cache_key(result.record["identity"]),
                                                "quantized": True, "reused": result.reused}
    source = resolve_model(spec)
    folder = source.folder
    quantized = source.gguf_file is None and (read_quantization_config(folder) is not None
                                               or (folder / RECORD_FILE).exists())
    model = load_quantized(folder, "cpu") if quantized else load_model(source)
    has_tokenizer = any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
    tokenizer = load_tokenizer(source) if (has_tokenizer or source.gguf_file) else ref_tokenizer
    return model, tokenizer, {"source": source.label, "path": str(source.path), "fingerprint": fingerprint(source),
                              "quantized": quantized, "reused": False}


def check_tokenizer(model, tokenizer, label: str, reference_tokenizer=None) -> None:
    """The tokenizer must fit the model's vocabulary and, for a candidate, encode text as the reference's does."""
    vocab = model.get_input_embeddings().num_embeddings
    ids = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    if len(tokenizer) > vocab or max(ids, default=0) >= vocab:
        raise ConfigError(f"{label}: its tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab}; "
                          "the tokenizer does not belong to this model (put the model's own tokenizer files in its folder)")
    if reference_tokenizer is not None and reference_tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"] != ids:
        raise ConfigError(f"{label}: its tokenizer encodes text differently from the reference's, so the two "
                          "cannot be compared on the same prompts; use a candidate made from the reference model")


def weight_bytes(model) -> int:
    """Bytes of the linear layers' weights as stored (fp16 for float layers), embeddings and head excluded."""
    from awqguard.kernels.wqlinear import AWQLinear
    total = 0
    for name, module in model.named_modules():
        if name.endswith("lm_head"):
            continue
        if isinstance(module, AWQLinear):
            total += sum(module.get_buffer(b).numel() * module.get_buffer(b).element_size()
                         for b in ("qweight", "qzeros", "scales"))
        elif isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * 2
    return total


def _peak_rss_mib() -> float | None:
    try:
        import resource
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


# ---- the run ----------------------------------------------------------------------------------------

def _cached_run(key_parts: dict, use_cache: bool, compute) -> tuple[dict, bool]:
    path = cache.entry("runs", cache.cache_key(key_parts), ".json")
    if use_cache:
        hit = cache.read_json(path)
        if hit is not None:
            return hit, True
    value = compute()
    if use_cache:
        files.write_json(path, value)
    return value, False


@dataclass
class LoadedModel:
    """A model already in memory, passed to run_gates instead of a path (the Python API and tests)."""

    model: Any
    tokenizer: Any
    label: str
    fingerprint: str
    quantized: bool = False


def run_gates(config: dict, use_cache: bool = True, warn_only: bool = False,
              reference: LoadedModel | None = None, candidate: LoadedModel | None = None) -> dict:
    """Run the whole check for a merged configuration and return results.json's content.

    `reference` / `candidate` replace loading config["reference"] / config["candidate"] from disk.
    """
    torch.set_grad_enabled(False)
    stages = Stages()
    notices: list[str] = []
    gates = gates_from_config(config)
    settings = settings_from(config)

    with stages("load suite"):
        suite = load_suite(resolve_suite(config["suite"]))
        items = suite.items[: config["limit"]] if config["limit"] else list(suite.items)
        pipe = config["pipeline"]
        if pipe["chunk_overlap"] >= pipe["chunk_tokens"]:
            raise ConfigError("pipeline.chunk_overlap must be smaller than pipeline.chunk_tokens")
        chunks = chunk_corpus(suite.documents.values(), pipe["chunk_tokens"], pipe["chunk_overlap"])

    with stages("load models"):
        if reference is None:
            ref_source = resolve_model(config["reference"])
            ref_label, ref_fp = ref_source.label, fingerprint(ref_source)
            ref_model = load_model(ref_source)            # first: a GGUF's conversion also saves its tokenizer
            ref_tokenizer = load_tokenizer(ref_source)
        else:
            ref_source = None
            ref_model, ref_tokenizer, ref_label, ref_fp = (reference.model, reference.tokenizer, reference.label,
                                                           reference.fingerprint)
        check_tokenizer(ref_model, ref_tokenizer, f"reference {ref_label}")
    with stages("candidate"):
        if candidate is None:
            if ref_source is None:
                ref_source = resolve_model(config["reference"])
            cand_model, cand_tokenizer, cand_info = load_candidate(config, ref_source, ref_fp, ref_tokenizer)
        else:
            cand_model, cand_tokenizer = candidate.model, candidate.tokenizer
            cand_info = {"source": candidate.label, "path": "", "fingerprint": candidate.fingerprint,
                         "quantized": candidate.quantized, "reused": False}
        check_tokenizer(cand_model, cand_tokenizer, f"candidate {cand_info['source']}", ref_tokenizer)

    with stages("retrieval"):
        emb_folder = embedder_folder(pipe["embedder"])
        emb_fp = fingerprint(ModelSource(str(emb_folder), emb_folder))
        stick_embedder = load_embedder(emb_folder)
        ref_retriever = build_retriever(stick_embedder, "full precision", emb_fp, chunks, use_cache)
        if pipe["quantize_embedder"]:
            from awqguard.quantizer.config import QuantConfig
            ecfg = QuantConfig(w_bit=pipe["embedder_w_bit"], group_size=pipe["embedder_group_size"],
                               n_samples=64, seqlen=256)
            q_emb, q_fp = load_quantized_embedder(pipe["embedder"], ecfg, use_cache)
            cand_retriever = build_retriever(q_emb, f"AWQ w{ecfg.w_bit} g{ecfg.group_size}", q_fp, chunks, use_cache)
        else:
            cand_retriever = ref_retriever
            notices.append("Retrieval cannot differ between the variants: the candidate pipeline uses the reference's "
                           "full-precision embedder (pipeline.quantize_embedder: false). The retrieval gates check the "
                           "pipeline itself, not the quantization.")

    base_key = {"suite": suite.fingerprint, "items": [it.id for it in items], "settings": settings.describe(),
                "chunks": [pipe["chunk_tokens"], pipe["chunk_overlap"]], "prompt": [prompt.SYSTEM, prompt.JSON_INSTRUCTION],
                "tokenizer": ref_tokenizer.chat_template}
    runs, cache_hits = {}, {}
    with stages("reference run"):
        runs["reference"], cache_hits["reference"] = _cached_run(
            {**base_key, "model": ref_fp, "embedder": ref_retriever.fingerprint, "continuations": True}, use_cache,
            lambda: run_variant(ref_model, ref_tokenizer, ref_retriever, items, settings, "reference", continuation=True))
    with stages("candidate run"):
        runs["candidate"], cache_hits["candidate"] = _cached_run(
            {**base_key, "model": cand_info["fingerprint"], "embedder": cand_retriever.fingerprint}, use_cache,
            lambda: run_variant(cand_model, cand_tokenizer, cand_retriever, items, settings, "candidate"))

    with stages("measure"):
        stick = Stick(stick_embedder)
        evidence = aggregate.prepare_stick(stick, suite, items, chunks, runs)
        records = aggregate.build_records(suite, items, chunks, runs, stick, evidence)
        summaries = aggregate.item_summaries(records, stick,
                                               seeds_vary=not settings.decoding.greedy and len(settings.seeds) > 1)
        metrics = aggregate.suite_metrics(summaries, records)
        flips = aggregate.probe_flips(runs, stick)
        metrics["probes.flip_rate"] = {v: flips[v]["rate"] for v in aggregate.VARIANTS}
        n_probes = len(flips["candidate"]["probes"])
        if flips["candidate"]["rate"] is None:
            metrics["probes.flip_excess"] = {"value": None, "reason": "probes are off (probes.items: 0)"}
        elif n_probes < MIN_PROBES:
            metrics["probes.flip_excess"] = {"value": None, "reason": f"only {n_probes} probes, too few to decide "
                                                                    f"(need {MIN_PROBES}; raise probes.items)"}
        else:
            metrics["probes.flip_excess"] = {"value": flips["candidate"]["rate"] - flips["reference"]["rate"]}

    with stages("entropy"):
        curves = position_curves(ref_model, cand_model, ref_tokenizer, runs["reference"]["continuations"])
        entropy: dict[str, Any] = {}
        if curves is None:
            reason = "the suite has no long items"
            metrics["entropy.onset_shift"] = {"value": None, "reason": reason}
            metrics["entropy.slope_excess"] = {"value": None, "reason": reason}
        else:
            verdict = entropy_verdict(curves["entropy_reference"], curves["entropy_candidate"])
            metrics["entropy.onset_shift"] = {"value": verdict["onset_shift"]}
            metrics["entropy.slope_excess"] = {"value": verdict["slope_excess"]}
            metrics["continuation.kl_mean"] = {"value": float(curves["kl"].mean())}
            metrics["continuation.top1_agreement"] = {"value": float(curves["top1_agreement"].mean())}
            entropy = {**{k: _listify(v) for k, v in verdict.items()},
                       **{k: _listify(v) for k, v in curves.items()}}

    with stages("perplexity"):
        texts = [d.text for d in sorted(suite.documents.values(), key=lambda d: d.stem)]
        ppl_cfg = config["perplexity"]
        try:
            windows = heldout_windows(ref_tokenizer, texts, ppl_cfg["window"], ppl_cfg["max_windows"])
        except ValueError as exc:
            windows = None
            for name in ("perplexity.ratio", "kl.mean"):
                metrics[name] = {"value": None, "reason": f"the suite's corpus is too short ({exc})"}
        drift = None
        if windows is not None:
            drift = compare_models(ref_model, cand_model, windows)
            metrics["perplexity.ratio"] = {"value": drift.ppl_candidate / drift.ppl_reference,
                                           "ppl_reference": drift.ppl_reference, "ppl_candidate": drift.ppl_candidate}
            metrics["kl.mean"] = {"value": drift.mean_kl}
            metrics["kl.p99"] = {"value": drift.p99_kl}
            metrics["same_top.rate"] = {"value": drift.same_top_rate}

    ref_bytes, cand_bytes = weight_bytes(ref_model), weight_bytes(cand_model)
    if cand_info["quantized"]:
        metrics["cost.weight_bytes_ratio"] = {"value": cand_bytes / ref_bytes}
    else:
        metrics["cost.weight_bytes_ratio"] = {"value": None, "reason": "the candidate is a float model (it claims no quantization)"}

    notices += _notices(config, settings, items, ref_fp, cand_info, summaries) + _non_finite_notice(metrics)
    verdicts = [_gate_entry(g, metrics, summaries, flips) for g in gates]
    passed = all(v["status"] != "fail" for v in verdicts)
    failing = [v for v in verdicts if v["status"] in ("fail", "warn")]
    symptom_ids = sorted({s["id"] for v in failing for s in v["symptoms"]})
    return files.finite({                   # strict JSON: a NaN metric is recorded as null (its gate failed)
        "schema_version": SCHEMA_VERSION,
        "awqguard_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "passed": passed,
        "warn_only": warn_only,
        "summary": {"gates": len(verdicts), "failed": sum(v["status"] == "fail" for v in verdicts),
                    "warned": sum(v["status"] == "warn" for v in verdicts),
                    "skipped": sum(v["status"] == "skip" for v in verdicts), "symptoms": symptom_ids,
                    "items": len(items), "runs": len(records)},
        "gates": verdicts,
        "symptoms": [_symptom_entry(s, failing) for s in symptom_ids],
        "notices": notices,
        "metrics": _round(metrics),
        "items": _round(summaries),
        "probes": _round(flips),
        "entropy": _round(entropy),
        "perplexity": drift.to_dict() if drift is not None else None,
        "cost": {"reference_weight_bytes": ref_bytes, "candidate_weight_bytes": cand_bytes,
                 "candidate_checkpoint_bytes": _folder_bytes(cand_info["path"]),
                 "reference_tokens_per_s": runs["reference"]["timing"]["tokens_per_s"],
                 "candidate_tokens_per_s": runs["candidate"]["timing"]["tokens_per_s"],
                 "peak_rss_mib": _peak_rss_mib(),
                 "tokens_per_s_note": "measured when the run was generated" + (
                     " (a cached run: the figures come from the run that filled the cache)"
                     if any(cache_hits.values()) else "")},
        "environment": _environment(config, ref_label, ref_fp, cand_info, cand_model, suite, emb_fp,
                                    cand_retriever.label, items),
        "evidence": _evidence(config, ref_source, cand_info, suite),
        "cache": {"root": str(cache.cache_root()), "used": use_cache, "hits": cache_hits},
        "timing": {"wall_s": stages.total(), "stages": stages.seconds,
                   "generation": {v: runs[v]["timing"] for v in aggregate.VARIANTS}},
        "records": records,
    })


# ---- pieces of the results ------------------------------------------------------------------------

_WORST = {   # metric prefix -> (key on an item summary, largest first?)
    "ds_qr": (lambda s: s["candidate"]["ds_qr"], True),
    "coverage": (lambda s: s["candidate"]["coverage"], False),
    "lambda": (lambda s: s["candidate"]["hit_rate"], False),
    "drift": (lambda s: s["drift"]["answer_ds_excess"], True),
    "anchor_gap": (lambda s: s["candidate"]["gap_answer"], False),
}


def _gate_entry(gate, metrics: dict, summaries: dict, flips: dict) -> dict:
    entry = metrics.get(gate.metric, {})
    value = entry.get("candidate", entry.get("value"))
    verdict = gate.check(value, entry.get("reference"), entry.get("reason"))
    prefix = gate.metric.split(".")[0]
    worst: list[dict] = []
    if prefix in _WORST and verdict.status != "skip":
        key, largest = _WORST[prefix]
        worst = aggregate.worst(summaries, key, 3, largest)
    elif prefix == "json":
        json_items = {i: s for i, s in summaries.items() if s["kind"] == "json"}
        worst = aggregate.worst(json_items, lambda s: s["candidate"]["json_valid"], 3, False)
    elif prefix == "probes":
        worst = [{"item": p["item"], "value": p["ds"], "probe": p["probe"]}
                 for p in flips["candidate"]["probes"] if p["flipped"]][:3]
    fixes = [f for s in gate.symptoms for f in SYMPTOMS[s].fixes]
    return {"id": gate.id, "metric": gate.metric, "description": gate.description,
            "value": _r(verdict.value), "reference": _r(verdict.reference), "threshold": gate.threshold,
            "op": gate.op, "tolerance": gate.tolerance, "severity": gate.severity, "status": verdict.status,
            "passed": verdict.passed, "basis": verdict.basis, "message": verdict.message,
            "ci": entry.get("ci"),
            "symptoms": [{"id": s, "title": SYMPTOMS[s].title} for s in gate.symptoms],
            "fixes": list(dict.fromkeys(fixes)) if verdict.status in ("fail", "warn") else [],
            "worst_items": worst}


def _symptom_entry(symptom_id: str, failing: list[dict]) -> dict:
    s = SYMPTOMS[symptom_id]
    return {"id": s.id, "title": s.title, "description": s.description, "causes": list(s.causes),
            "fixes": list(s.fixes), "gates": [v["id"] for v in failing if any(x["id"] == s.id for x in v["symptoms"])]}


def _notices(config, settings: RunSettings, items, ref_fp: str, cand_info: dict, summaries: dict) -> list[str]:
    out = []
    if settings.decoding.greedy:
        out.append("Greedy decoding: every seed gives the same answer, so λ across runs varies with the "
                   "paraphrases only and drift.seed_noise is not measured.")
    if cand_info["fingerprint"] == ref_fp:
        out.append("The candidate is the reference model itself: answers, entropy, perplexity and KL cannot differ; "
                   "only a quantized embedder can move retrieval. This run shows the gates' false-alarm floor.")
    if len(items) < 10:
        out.append(f"Only {len(items)} items: too few to decide drift with confidence (bootstrap intervals and "
                   "McNemar need at least 10).")
    for kind in ("json", "long"):
        if not any(s["kind"] == kind for s in summaries.values()):
            out.append(f"The suite has no {kind} items: the gates that need them are skipped.")
    return out


def _non_finite_notice(metrics: dict) -> list[str]:
    names = sorted(name for name, entry in metrics.items()
                   if any(isinstance(v, float) and not math.isfinite(v) for v in entry.values()))
    if not names:
        return []
    return [f"Not a finite number (NaN or infinite): {', '.join(names)}. The candidate's outputs overflowed or hold "
            "NaN (look for NaN or zero scales in its checkpoint); these values are written as null and every "
            "gate on them fails as not measurable."]


def _environment(config, ref_label, ref_fp, cand_info, candidate, suite, emb_fp, cand_embedder, items) -> dict:
    import transformers

    from awqguard.kernels.wqlinear import AWQLinear
    paths = sorted({m.path for m in candidate.modules() if isinstance(m, AWQLinear)})
    return {"awqguard": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "device": "cpu", "dtype": str(next(candidate.parameters()).dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "kernel_paths": paths or ["float"],
            "reference": {"source": ref_label, "fingerprint": ref_fp},
            "candidate": cand_info, "suite": {"name": suite.name, "path": str(suite.root),
                                              "fingerprint": suite.fingerprint, "items": len(items)},
            "embedder": {"fingerprint": emb_fp, "candidate_pipeline": cand_embedder},
            "seeds": list(config["seeds"]), "config": config}


def _evidence(config: dict, ref_source: ModelSource | None, cand_info: dict, suite) -> dict:
    """sha256 digests binding these results to the files they judged (see awqguard.evidence)."""
    return {"version": evidence.EVIDENCE_VERSION, "candidate": evidence.describe(cand_info["path"] or None),
            "reference": evidence.describe(ref_source.path if ref_source is not None else None),
            "suite": evidence.describe(suite.root), "config_sha256": evidence.config_sha256(config)}


def _folder_bytes(path: str) -> int | None:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.glob("*.safetensors"))
    return None


def _listify(v):
    return v.tolist() if isinstance(v, np.ndarray) else v


def _r(v):
    return None if v is None else round(float(v), 6)


def _round(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (np.floating, np.integer)):
        return _round(value.item())
    if isinstance(value, np.ndarray):
        return _round(value.tolist())
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value
