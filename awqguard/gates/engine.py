"""The gate engine behind `awqguard check` (docs/architecture.md §7-10): reference and candidate side by side.

`run_gates` is a pipeline of named stages, each a function from typed objects to typed objects:
load → retrieve → run variants → measure → teacher-forced → decide → results. Every stage's wall
time goes into the results. The engine reaches models only through the Backend protocol.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from awqguard import cache, files
from awqguard.backends import Backend
from awqguard.gates import aggregate, prompt
from awqguard.gates.config import CheckConfig, check_config_of
from awqguard.gates.decide import decide, non_finite_notice, run_notices, served_notice, symptom_entries
from awqguard.gates.document import Measurement, ResultsDocument, Summary
from awqguard.gates.load import (Contender, LoadedModel, SuiteInput, check_tokenizer, from_memory, load_candidate,
                                 load_reference, load_suite_input)
from awqguard.gates.pipeline import Retrieval, retrieval_stage
from awqguard.gates.provenance import cost_section, environment, evidence_section, peak_rss_mib
from awqguard.gates.policy import Decision
from awqguard.gates.records import ItemSummary, Record
from awqguard.gates.resample import Resampler
from awqguard.gates.runner import RunSettings, run_variant, settings_from
from awqguard.gates.scoring import Stick
from awqguard.gates.teacher import EntropyResult, PerplexityResult, entropy_stage, perplexity_stage
from awqguard.version import __version__

__all__ = ["LoadedModel", "run_gates"]


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


@dataclass(frozen=True)
class Models:
    reference: Contender
    candidate: Contender


@dataclass(frozen=True)
class Runs:
    """Both variants' raw runs (plain JSON, cacheable) and whether each came from the cache."""

    runs: dict[str, dict]
    cache_hits: dict[str, bool]


@dataclass(frozen=True)
class Measured:
    records: list[Record]
    summaries: dict[str, ItemSummary]        # every run of each item
    generator: dict[str, ItemSummary]        # the runs whose prompts showed both variants the same chunks
    flips: dict[str, dict]
    metrics: dict[str, Measurement]


def run_gates(check: CheckConfig | dict, use_cache: bool = True, warn_only: bool = False,
              reference: LoadedModel | Backend | None = None,
              candidate: LoadedModel | Backend | None = None) -> dict:
    """Run the whole check and return results.json's content (plus the per-run records).

    `check` is the front ends' CheckConfig, or a merged configuration dict (validated here).
    `reference` / `candidate` replace loading the config's reference / candidate."""
    torch.set_grad_enabled(False)
    check = check if isinstance(check, CheckConfig) else check_config_of(check)
    config, gates = check.data, check.gates
    stages = Stages()
    settings = settings_from(config)
    with stages("load suite"):
        suite_input = load_suite_input(config)
    models = load_models(check, settings, stages, reference, candidate, use_cache)
    settings = matched_sampling(settings, models)
    with stages("retrieval"):
        retrieval = retrieval_stage(config["pipeline"], suite_input.chunks, use_cache,
                                    custom_retriever(config["pipeline"]["retriever"], suite_input, settings))
    runs = run_variants(suite_input, models, retrieval, settings, stages, use_cache)
    resampler = Resampler.for_suite(suite_input.suite.fingerprint)
    with stages("measure"):
        measured = measure(suite_input, runs, retrieval, settings, resampler)
    with stages("entropy"):
        entropy = entropy_stage(models.reference.backend, models.candidate.backend,
                                runs.runs["reference"]["continuations"], resampler)
    with stages("perplexity"):
        ppl_cfg = config["perplexity"]
        perplexity = perplexity_stage(models.reference.backend, models.candidate.backend, suite_input.suite,
                                      ppl_cfg["window"], ppl_cfg["max_windows"], resampler)
    document = results_document(config, warn_only, gates, suite_input, models, retrieval, runs, measured, entropy,
                                perplexity, settings, stages, use_cache)
    return document.to_json()


def load_models(config: CheckConfig, settings: RunSettings, stages: Stages, reference, candidate,
                use_cache: bool = True) -> Models:
    """Both contenders, each with a tokenizer that fits its model and encodes as the reference's does."""
    with stages("load models"):
        ref = from_memory(reference, settings.batch_size) if reference is not None else \
            load_reference(config.data, settings.batch_size, use_cache)
        check_tokenizer(ref.backend, f"reference {ref.source}")
    with stages("candidate"):
        cand = from_memory(candidate, settings.batch_size) if candidate is not None else \
            load_candidate(config, ref, settings.batch_size, use_cache)
        check_tokenizer(cand.backend, f"candidate {cand.source}", ref.backend.tokenizer)
    return Models(ref, cand)


def matched_sampling(settings: RunSettings, models: Models) -> RunSettings:
    """With one variant served and one in process, the in-process decoder samples in the server's
    order (top-p before or after temperature), so both variants draw from the same distribution."""
    served = [c for c in (models.reference, models.candidate) if c.endpoint]
    if settings.decoding.greedy or len(served) != 1:
        return settings
    order = getattr(served[0].backend, "sampler_order", settings.decoding.order)
    if order == settings.decoding.order:
        return settings
    return dataclasses.replace(settings, decoding=dataclasses.replace(settings.decoding, order=order))


def custom_retriever(spec: str | None, suite_input: SuiteInput, settings: RunSettings):
    """A builder of the user's retriever (asked every prompt of the suite up front), or None."""
    if spec is None:
        return None
    from awqguard.gates.passages import CallableRetriever
    queries = [q for it in suite_input.items for q in it.prompts]
    depth = max([settings.top_k, settings.prompt_chunks, *settings.probe_k])
    return lambda: CallableRetriever(spec, suite_input.suite, suite_input.chunks, queries, depth)


def run_variants(suite_input: SuiteInput, models: Models, retrieval: Retrieval, settings: RunSettings,
                 stages: Stages, use_cache: bool) -> Runs:
    """Both variants through the RAG pipeline, each run read from the cache when it was made before."""
    pipe_key = {"suite": suite_input.suite.fingerprint, "items": [it.id for it in suite_input.items],
                "settings": settings.describe(), "chunks": list(suite_input.chunking),
                "prompt": [prompt.SYSTEM, prompt.JSON_INSTRUCTION],
                "tokenizer": models.reference.backend.tokenizer.chat_template}
    runs, hits = {}, {}
    for name, contender, retriever, continuation in (
            ("reference", models.reference, retrieval.reference, True),
            ("candidate", models.candidate, retrieval.candidate, False)):
        key = {**pipe_key, "model": contender.fingerprint, "embedder": retriever.fingerprint,
               **({"continuations": True} if continuation else {}), **_placement(contender.backend.info)}
        with stages(f"{name} run"):
            runs[name], hits[name] = _cached_run(key, use_cache, lambda: run_variant(
                contender.backend, retriever, suite_input.items, settings, name, continuation=continuation))
    return Runs(runs, hits)


def _placement(info) -> dict:
    """An in-process model on a GPU computes in another dtype: its runs are not the CPU's (the CPU's
    keys stay as they were)."""
    if info.device in ("cpu", "unknown") or info.device.startswith("served"):
        return {}
    return {"placement": [info.device, info.dtype]}


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


def measure(suite_input: SuiteInput, runs: Runs, retrieval: Retrieval, settings: RunSettings,
            resampler: Resampler) -> Measured:
    """Records, item summaries and suite metrics, all measured with the full-precision stick."""
    suite, items, chunks = suite_input.suite, suite_input.items, retrieval.reference.chunks
    stick = Stick(retrieval.stick_embedder)
    evidence = aggregate.embed_texts(stick, suite, items, chunks, runs.runs)
    records = aggregate.build_records(suite, items, chunks, runs.runs, stick, evidence, settings.prompt_chunks)
    seeds_vary = not settings.decoding.greedy and len(settings.seeds) > 1
    summaries = aggregate.item_summaries(records, stick, resampler, seeds_vary)
    generator = aggregate.item_summaries(aggregate.matched_records(records), stick, resampler, seeds_vary)
    flips = aggregate.probe_flips(runs.runs, stick)
    metrics = {**aggregate.suite_metrics(summaries, records, resampler, generator,
                                         retrieval_shared=retrieval.candidate is retrieval.reference),
               **aggregate.probe_metrics(flips, resampler)}
    return Measured(records, summaries, generator, flips, metrics)


def request_counts(models: Models) -> dict[str, dict]:
    """Per served variant: requests the server answered in this run, answers read from the cache, retries."""
    out = {}
    for name, contender in (("reference", models.reference), ("candidate", models.candidate)):
        client = getattr(contender.backend, "client", None)
        if contender.endpoint and client is not None:
            out[name] = {"endpoint": contender.endpoint, **client.counts.to_dict()}
    return out


def results_document(config, warn_only, gates, suite_input: SuiteInput, models: Models, retrieval: Retrieval,
                     runs: Runs, measured: Measured, entropy: EntropyResult, perplexity: PerplexityResult,
                     settings: RunSettings, stages: Stages, use_cache: bool) -> ResultsDocument:
    """Decide the gates and gather everything results.json holds."""
    ref, cand = models.reference, models.candidate
    cost = cost_section(ref, cand, runs.runs, any(runs.cache_hits.values()), peak_rss_mib())
    metrics = {**measured.metrics, **entropy.metrics, **perplexity.metrics, **cost.metrics}
    decision = Decision.of(config.get("decision"))
    notices = retrieval.notices + run_notices(settings, suite_input.items, ref.fingerprint, cand.fingerprint,
                                              measured.summaries, decision.min_items) + non_finite_notice(metrics) \
        + served_notice(bool(ref.endpoint), bool(cand.endpoint), settings.decoding.greedy, settings.decoding.order)
    verdicts = decide(gates, metrics, measured.summaries, measured.flips, decision, measured.generator)
    return ResultsDocument(
        awqguard_version=__version__, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        warn_only=warn_only, gates=verdicts, summary=Summary.of(verdicts, len(suite_input.items), len(measured.records)),
        symptoms=symptom_entries(verdicts), notices=notices, metrics=metrics, items=measured.summaries,
        probes=measured.flips, entropy=entropy.curves,
        perplexity=perplexity.drift.to_dict() if perplexity.drift is not None else None, cost=cost.section,
        environment=environment(config, models.reference, models.candidate, suite_input, retrieval),
        evidence=evidence_section(config, ref, cand, suite_input.suite),
        cache={"root": str(cache.cache_root()), "used": use_cache, "hits": runs.cache_hits},
        timing={"wall_s": stages.total(), "stages": stages.seconds,
                "generation": {v: runs.runs[v]["timing"] for v in aggregate.VARIANTS},
                **({"requests": requests} if (requests := request_counts(models)) else {})},
        records=measured.records, strict=decision.strict)
