"""One variant (reference or candidate) through the RAG pipeline over a suite: retrieval, prompts, answers.

Every item is asked as its question and each paraphrase, under every seed; the same prompts and
seeds go to both variants (only retrieval differs when the candidate's embedder is quantized).
Probes re-ask a subset of items with deeper retrieval and a shuffled header order. The
reference also writes the long continuation that both models are later teacher-forced on.
The result is plain JSON so it can be cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from awqguard import progress
from awqguard.backends.base import Backend, Decoding
from awqguard.gates.fixtures import Item
from awqguard.gates.metrics import repetition_loop
from awqguard.gates.pipeline import Retriever
from awqguard.gates.prompt import build_messages, render_prompts, template_messages


@dataclass(frozen=True)
class RunSettings:
    """Everything about a run that can change an answer (part of the cache key). Built from the check
    configuration (gates/config.py DEFAULTS holds the defaults)."""

    seeds: tuple[int, ...]
    top_k: int
    prompt_chunks: int
    header_order: str
    decoding: Decoding
    max_new_tokens: dict            # per item kind
    probe_items: int
    probe_k: tuple[int, ...]
    probe_shuffle: bool
    entropy_tokens: int
    batch_size: int = 64             # prompts decoded together (x seeds rows): decode steps are weight-bound
    prompt_template: str | None = None        # the user's template's source (pipeline.prompt_template)
    prompt_template_name: str = ""

    def describe(self) -> dict:
        import dataclasses
        return dataclasses.asdict(self)


def settings_from(config: dict) -> RunSettings:
    """The run settings of a merged check configuration (a per-kind token budget, or one for all)."""
    from awqguard.gates.config import DEFAULTS
    dec, pipe, probes = config["decoding"], config["pipeline"], config["probes"]
    budget = dec["max_new_tokens"]
    budget = {k: budget for k in ("qa", "json", "long")} if isinstance(budget, int) \
        else {**DEFAULTS["decoding"]["max_new_tokens"], **budget}
    return RunSettings(seeds=tuple(config["seeds"]), top_k=pipe["top_k"], prompt_chunks=pipe["prompt_chunks"],
                       header_order=pipe["header_order"],
                       decoding=Decoding(dec["greedy"], dec["temperature"], dec["top_p"], max(budget.values())),
                       max_new_tokens=budget, probe_items=probes["items"], probe_k=tuple(probes["k"]),
                       probe_shuffle=probes["header_shuffle"], entropy_tokens=config["entropy"]["tokens"],
                       prompt_template=_template_source(pipe["prompt_template"]),
                       prompt_template_name=pipe["prompt_template"] or "")


def _template_source(path: str | None) -> str | None:
    from awqguard.errors import ConfigError
    from awqguard.files import read_text
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"pipeline.prompt_template: {path} does not exist (give a Jinja2 template file)")
    return read_text(path, ConfigError)


@dataclass(frozen=True)
class Request:
    """One prompt to generate for (all seeds share it)."""

    key: dict                 # item, prompt index or probe name
    kind: str
    question: str
    chunk_ids: list[int]
    shown: int                # chunks shown in the prompt
    order: str


def probe_items(items: Sequence[Item], n: int) -> list[Item]:
    """`n` items spread evenly over the suite (deterministic)."""
    if n <= 0 or not items:
        return []
    n = min(n, len(items))
    return [items[round(i * (len(items) - 1) / max(1, n - 1))] for i in range(n)] if n > 1 else [items[0]]


def plan(items: Sequence[Item], retriever: Retriever, s: RunSettings) -> tuple[list[Request], list[Request]]:
    """(main requests, probe requests) for one variant."""
    texts = [(it, i, q) for it in items for i, q in enumerate(it.prompts)]
    depth = max([s.top_k, s.prompt_chunks, *s.probe_k])
    retrieved = retriever.retrieve([q for _, _, q in texts], depth)
    main, by_question = [], {}
    for (it, i, q), ids in zip(texts, retrieved):
        main.append(Request({"item": it.id, "prompt": i}, it.kind, q, ids[: s.top_k], s.prompt_chunks, s.header_order))
        if i == 0:
            by_question[it.id] = ids
    probes = []
    for it in probe_items(items, s.probe_items):
        ids = by_question[it.id]
        for k in s.probe_k:
            probes.append(Request({"item": it.id, "probe": f"k={k}"}, it.kind, it.question, ids[:k], k, s.header_order))
        if s.probe_shuffle:
            order = "fixed" if s.header_order == "shuffled" else "shuffled"
            probes.append(Request({"item": it.id, "probe": f"headers {order}"}, it.kind, it.question,
                                  ids[: s.prompt_chunks], s.prompt_chunks, order))
    return main, probes


def _prompt(tokenizer, retriever: Retriever, r: Request, s: RunSettings) -> str:
    chunks = [retriever.chunks[i] for i in r.chunk_ids[: r.shown]]
    seed = sum(map(ord, r.key["item"]))               # a shuffled order is fixed per item
    if s.prompt_template is not None:
        messages = template_messages(s.prompt_template, s.prompt_template_name, r.question, chunks, r.kind, r.order, seed)
    else:
        messages = build_messages(r.question, chunks, r.kind, r.order, seed)
    return render_prompts(tokenizer, [messages])[0]


def _generate(backend: Backend, retriever: Retriever, requests: list[Request], s: RunSettings,
              seeds: Sequence[int], label: str) -> list[dict]:
    """Answers for every request and seed. Each kind has its own length budget; requests are sorted
    by budget, then prompt length, so batches mix kinds only at the boundaries and pad little."""
    prompts = [_prompt(backend.tokenizer, retriever, r, s) for r in requests]
    budget = [int(s.max_new_tokens.get(r.kind, s.decoding.max_new_tokens)) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: (budget[i], len(prompts[i])))
    with progress.task(label, total=len(requests)) as bar:
        gens = backend.generate([prompts[i] for i in order], s.decoding, seeds, on_batch=bar.advance,
                                budgets=[budget[i] for i in order])
    out: list[dict | None] = [None] * len(requests)
    for i, per_seed in zip(order, gens):
        r = requests[i]
        out[i] = {**r.key, "question": r.question, "chunk_ids": r.chunk_ids,
                  "retrieved": [retriever.chunks[c].section_id for c in r.chunk_ids],
                  "prompt_tokens": per_seed[0].prompt_tokens,
                  "answers": [{"seed": seed, "text": g.text, "tokens": len(g.token_ids),
                               "loop": repetition_loop(g.token_ids)} for seed, g in zip(seeds, per_seed)]}
    return out


def _continuations(backend: Backend, retriever: Retriever, main: list[Request], s: RunSettings) -> dict:
    """The greedy long continuation of each long item's question, of fixed length (end tokens
    forbidden): the text both models are teacher-forced on for entropy against length."""
    long_requests = [r for r in main if r.kind == "long" and r.key["prompt"] == 0]
    prompts = [_prompt(backend.tokenizer, retriever, r, s) for r in long_requests]
    greedy = Decoding(greedy=True, max_new_tokens=s.entropy_tokens)
    return {r.key["item"]: {"prompt": p, "tokens": list(per_seed[0].token_ids)}
            for r, p, per_seed in zip(long_requests, prompts, backend.generate(prompts, greedy, (0,), stop_at_eos=False))}


def run_variant(backend: Backend, retriever: Retriever, items: Sequence[Item], s: RunSettings, name: str,
                continuation: bool = False) -> dict:
    """The whole run of one variant as JSON-ready data (runs, probes, continuations, timing)."""
    start = time.perf_counter()
    main, probes = plan(items, retriever, s)
    runs = _generate(backend, retriever, main, s, s.seeds, f"{name}: answers")
    t_main = time.perf_counter() - start
    probe_runs = _generate(backend, retriever, probes, s, s.seeds[:1], f"{name}: probes") if probes else []
    t_probes = time.perf_counter() - start - t_main
    continuations = _continuations(backend, retriever, main, s) if continuation else {}
    generated = sum(a["tokens"] for r in runs + probe_runs for a in r["answers"])
    elapsed = time.perf_counter() - start
    return {"variant": name, "retriever": retriever.label, "runs": runs, "probes": probe_runs,
            "continuations": continuations,
            "timing": {"answers_s": round(t_main, 2), "probes_s": round(t_probes, 2),
                       "continuations_s": round(elapsed - t_main - t_probes, 2), "total_s": round(elapsed, 2),
                       "generated_tokens": generated, "tokens_per_s": round(generated / max(elapsed, 1e-9), 2)}}
