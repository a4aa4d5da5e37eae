"""`ServedBackend`: a model behind an OpenAI-compatible endpoint (docs/architecture.md §7c).

awqguard renders every prompt with its own local tokenizer and sends it to `/v1/completions`, so
both variants see the same prompt tokens. Answers are sampled by the server, seeded per request
from (seed, prompt) as the in-process decoder seeds its rows. Teacher-forced scores come from the
server's prompt log-probabilities (its top K per position, gates/topk.py). Servers differ in how
they return those; each dialect below says how its answer lines up with the prompt's positions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import torch

from awqguard.backends.base import BackendInfo, Decoding, Generation, Scores
from awqguard.backends.decode import row_seed
from awqguard.backends.http import Client, Endpoint, EndpointError

@dataclass(frozen=True)
class Dialect:
    """How one kind of server is spoken to: what it is sent and how its answers line up."""

    name: str
    text_prompts: bool           # prompts go as text (the server rejects token ids)
    prompt_logprobs: bool        # vLLM's `prompt_logprobs` instead of `echo` + `logprobs`
    neutral: dict                # its own samplers switched off, so it samples with temperature and top-p only
    sampler_order: str = "temperature-first"    # Decoding.order of the server's sampler
    bos_aligned: bool = False    # its prompt rows line up only after a leading BOS (score_prefix)
    max_in_flight: int | None = None            # it answers one at a time: more only queue and time out


DIALECTS = {d.name: d for d in (
    Dialect("vllm", text_prompts=False, prompt_logprobs=True,
            neutral={"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}),
    Dialect("llama-cpp-python", text_prompts=True, prompt_logprobs=False,
            neutral={"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}, sampler_order="top-p-first",
            bos_aligned=True, max_in_flight=2),
    Dialect("openai", text_prompts=False, prompt_logprobs=False, neutral={}),
)}


@dataclass(frozen=True)
class Server:
    """What the start-up probe learned: the model name, its dialect, whether it scores prompts."""

    model: str
    dialect: str                 # "vllm" (prompt_logprobs), "llama-cpp-python" or "openai" (echo)
    scores_prompts: bool
    why_not: str = ""            # why prompt log-probabilities are not available


class ServedBackend:
    """One served model. `tokenizer` is the local tokenizer its prompts are rendered with."""

    def __init__(self, endpoint: Endpoint, tokenizer, label: str = "", use_cache: bool = True,
                 quantized: bool = False, client: Client | None = None):
        self.endpoint = endpoint
        self.tokenizer = tokenizer
        self.top_k = endpoint.top_logprobs
        self.client = client or Client(endpoint, use_cache)
        self.server = probe(self.client, endpoint, tokenizer)
        self.client.cache_identity["model"] = self.server.model
        self.dialect = DIALECTS[self.server.dialect]
        cap = self.dialect.max_in_flight
        if cap is not None and endpoint.max_concurrency > cap:
            self.client.endpoint = replace(endpoint, max_concurrency=cap)
        fingerprint = _fingerprint(endpoint, self.server.model)
        self.info = BackendInfo(label or f"{self.server.model} at {endpoint.base}", fingerprint, quantized,
                                dtype="as served", device=f"served ({self.server.dialect})", kernel_paths=("served",))
        self._eos = sorted({int(i) for i in (tokenizer.eos_token_id,) if i is not None} | _generation_eos(tokenizer))
        self._pieces: dict[str, int] | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def sampler_order(self) -> str:
        """Where the server applies top-p (Decoding.order): llama.cpp takes the nucleus before temperature."""
        return self.dialect.sampler_order

    def weight_bytes(self) -> int | None:
        return None

    @property
    def score_prefix(self) -> tuple[int, ...]:
        """Tokens every scored sequence must start with: llama-cpp-python lines its prompt
        log-probabilities up with the prompt only after a leading BOS token."""
        bos = self.tokenizer.bos_token_id
        return (int(bos),) if self.dialect.bos_aligned and bos is not None else ()

    @property
    def scoring_unavailable(self) -> str | None:
        return None if self.server.scores_prompts else f"{self.endpoint.base}: {self.server.why_not}"

    def generate(self, prompts: Sequence[str], decoding: Decoding, seeds: Sequence[int] = (0,), *,
                 budgets: Sequence[int] | None = None, stop_at_eos: bool = True,
                 on_batch: Callable[[int], None] | None = None) -> list[list[Generation]]:
        budgets = list(budgets) if budgets is not None else [decoding.max_new_tokens] * len(prompts)
        repeats = 1 if decoding.greedy else len(seeds)
        prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        bodies = [self._generation_body(p, ids, decoding, s, b, stop_at_eos)
                  for p, ids, b in zip(prompts, prompt_ids, budgets) for s in seeds[:repeats]]
        done = [0]

        def tick():
            done[0] += 1
            if on_batch is not None and done[0] % repeats == 0:
                on_batch(1)
        answers = self.client.complete_all(bodies, tick)
        results = []
        for i, ids in enumerate(prompt_ids):
            per_seed = [self._generation(answers[i * repeats + j], len(ids)) for j in range(repeats)]
            results.append(per_seed * (len(seeds) if repeats == 1 else 1))
        return results

    def _generation_body(self, prompt: str, prompt_ids: list[int], decoding: Decoding, seed: int, budget: int,
                         stop_at_eos: bool) -> dict:
        """One request; the prompt as token ids where the server takes them (it cannot tokenize differently)."""
        body = {"model": self.server.model, "prompt": prompt if self.dialect.text_prompts else prompt_ids,
                "max_tokens": int(budget), "seed": row_seed(seed, prompt) & 0x7FFFFFFF, **self.dialect.neutral}
        body.update({"temperature": 0.0} if decoding.greedy else
                    {"temperature": decoding.temperature, "top_p": decoding.top_p})
        if not stop_at_eos:
            body.update({"ignore_eos": True, "logit_bias": {str(t): -100.0 for t in self._eos}})
        return body

    def _generation(self, answer: dict, n_prompt: int) -> Generation:
        text = answer["choices"][0].get("text") or ""
        ids = [t for t in self.tokenizer(text, add_special_tokens=False)["input_ids"] if t not in self._eos]
        return Generation(text.strip(), tuple(ids), n_prompt)

    def score(self, sequences: Sequence[Sequence[int]], start: int) -> Iterator[Scores]:
        if self.scoring_unavailable:
            raise EndpointError(self.scoring_unavailable)
        sequences = [[int(t) for t in s] for s in sequences]
        bodies = [score_body(self.dialect, self.server.model, s, self.top_k, self.tokenizer) for s in sequences]
        for seq, answer in zip(sequences, self.client.complete_all(bodies)):
            yield self._scores(seq, start, answer)

    def _scores(self, sequence: list[int], start: int, answer: dict) -> Scores:
        """The answer's per-position distributions, as a top-K Scores of positions start.."""
        if self.dialect.text_prompts and not _round_trips(self.tokenizer, sequence):
            rows = {}                       # the server tokenized the text differently: nothing lines up
        else:
            rows = position_rows(self.server.dialect, sequence, answer, self.tokenizer.bos_token_id)
        pieces = None if self.dialect.prompt_logprobs else self.pieces()
        return rows_to_scores(rows, sequence, start, self.top_k, pieces)

    def pieces(self) -> dict[str, int]:
        """Token text → id for the tokens whose text names one token (servers that key by text)."""
        if self._pieces is None:
            seen: dict[str, int] = {}
            clashes = set()
            for i in range(len(self.tokenizer)):
                text = self.tokenizer.decode([i])
                if text in seen or "\ufffd" in text or not text:
                    clashes.add(text)
                seen.setdefault(text, i)
            self._pieces = {t: i for t, i in seen.items() if t not in clashes}
        return self._pieces


def probe(client: Client, endpoint: Endpoint, tokenizer) -> Server:
    """Check the endpoint once at start: its models, its dialect, a completion, a scored prompt."""
    status, listing = client.get("/models")
    if status in (401, 403):
        hint = f"the key in {endpoint.api_key_env}" if endpoint.api_key_env else "set api_key_env to the variable holding the key"
        raise EndpointError(f"{endpoint.base}/models answered {status} (not authorised): {hint}")
    if status != 200 or not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        raise EndpointError(f"{endpoint.base}/models answered {status}: this is not an OpenAI-compatible API root "
                            "(give the URL that ends in /v1)")
    model = _pick_model(endpoint, [str(m.get("id")) for m in listing["data"] if isinstance(m, dict)])
    dialect = _dialect(client, endpoint)
    body = {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0.0}
    status, answer = client.post("/completions", body)
    if status == 404:
        raise EndpointError(f"{endpoint.base}/completions answered 404: the server has no completions endpoint "
                            "(awqguard renders prompts itself and needs /v1/completions, not only chat)")
    if status != 200 or not isinstance(answer, dict) or not answer.get("choices"):
        raise EndpointError(f"{endpoint.base}/completions answered {status} to a one-token request")
    return _score_probe(client, Server(model, dialect, True), tokenizer)


def _pick_model(endpoint: Endpoint, names: list[str]) -> str:
    if endpoint.model is not None:
        if endpoint.model not in names:
            raise EndpointError(f"{endpoint.base} serves no model {endpoint.model!r}; it serves: "
                                f"{', '.join(names) or 'nothing'}")
        return endpoint.model
    if len(names) != 1:
        raise EndpointError(f"{endpoint.base} serves {len(names)} models ({', '.join(names) or 'none'}); "
                            "name one with model: (or --candidate-model / --reference-model)")
    return names[0]


def _dialect(client: Client, endpoint: Endpoint) -> str:
    """Which server this is, from a page only that server has: llama-cpp-python's API title,
    vLLM's /version. Anything else is read as the OpenAI API documents echo + logprobs."""
    root = Client(Endpoint(endpoint.base.rsplit("/v1", 1)[0] or endpoint.base, timeout_s=10, retries=0))
    root.session.headers.update(client.session.headers)
    try:
        status, spec = root.get("/openapi.json", retry=False)
        title = str(spec.get("info", {}).get("title", "")) if isinstance(spec, dict) else ""
        if status == 200 and "llama.cpp Python" in title:
            return "llama-cpp-python"
        status, version = root.get("/version", retry=False)
        if status == 200 and isinstance(version, dict) and "version" in version:
            return "vllm"
    except EndpointError:
        pass
    return "openai"


def score_body(dialect: Dialect, model: str, sequence: list[int], k: int, tokenizer) -> dict:
    """The request that returns the top-k prompt log-probabilities of `sequence`."""
    body = {"model": model, "max_tokens": 1, "temperature": 0.0}
    if dialect.prompt_logprobs:
        return {**body, "prompt": sequence, "prompt_logprobs": k}
    prompt = tokenizer.decode(sequence) if dialect.text_prompts else sequence
    return {**body, "prompt": prompt, "echo": True, "logprobs": k}


def _score_probe(client: Client, server: Server, tokenizer) -> Server:
    """Whether the server returns prompt log-probabilities, from one scored prompt."""
    dialect = DIALECTS[server.dialect]
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]
    status, answer = client.post("/completions", score_body(dialect, server.model, ids, 1, tokenizer))
    choice = (answer.get("choices") or [{}])[0] if isinstance(answer, dict) else {}
    found = choice.get("prompt_logprobs") if dialect.prompt_logprobs else \
        ((choice.get("logprobs") or {}).get("top_logprobs") or [None])
    if status != 200 or not any(found or []):
        why = ("the server returns no prompt log-probabilities (llama-cpp-python needs --logits_all true; "
               "vLLM gives them to prompt_logprobs up to --max-logprobs)")
        return Server(server.model, server.dialect, False, why)
    return server


def position_rows(dialect: str, sequence: list[int], answer: dict, bos: int | None) -> dict[int, dict]:
    """Position p → {token (id or text): logprob} of the distribution that predicts sequence[p]."""
    choice = answer["choices"][0]
    if dialect == "vllm":
        rows = choice.get("prompt_logprobs") or []
        return {p: {int(t): float(v["logprob"] if isinstance(v, dict) else v) for t, v in row.items()}
                for p, row in enumerate(rows) if row and 0 < p < len(sequence)}
    logprobs = choice.get("logprobs") or {}
    top = logprobs.get("top_logprobs") or []
    if dialect == "openai":             # entry p predicts token p; token_logprobs[p] is the target's
        own = list(zip(logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []))
        return {p: {**row, **({own[p][0]: own[p][1]} if p < len(own) and own[p][1] is not None else {})}
                for p, row in enumerate(top) if row and 0 < p < len(sequence)}
    return _llama_cpp_rows(sequence, top, bos)


def _llama_cpp_rows(sequence: list[int], top: list, bos: int | None) -> dict[int, dict]:
    """llama-cpp-python pairs its k-th entry with evaluated row k, where row r predicts prompt token
    r+1. It leaves out entries whose token is BOS (after dropping a leading BOS, and appending the
    sampled token), and blanks the first entry."""
    tokens = (sequence[1:] if sequence and sequence[0] == bos else sequence) + [-1]
    kept_rows = [r for r, t in zip(range(len(sequence)), tokens) if t != bos]
    if len(kept_rows) != len(top):
        return {}                           # not the layout this dialect promises: score nothing
    return {r + 1: dict(row) for r, row in zip(kept_rows, top) if row and r + 1 < len(sequence)}


def rows_to_scores(rows: dict[int, dict], sequence: list[int], start: int, k: int,
                   pieces: dict[str, int] | None) -> Scores:
    """Top-K Scores of positions start..: ids [n, K'] (-1 padded), their log-probabilities, the
    targets' own log-probabilities, and which positions the server scored with the target known."""
    n = len(sequence) - start
    ids = torch.full((n, k), -1, dtype=torch.long)
    lps = torch.full((n, k), -torch.inf)
    target_lp = torch.zeros(n)
    valid = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        row = rows.get(start + i)
        if not row:
            continue
        entries = [(tok if pieces is None else pieces.get(tok), lp) for tok, lp in row.items()]
        entries = sorted(((int(t), float(lp)) for t, lp in entries if t is not None), key=lambda e: -e[1])
        target = sequence[start + i]
        found = [lp for t, lp in entries if t == target]
        if not found:
            continue                        # the target's probability is not known here
        for j, (t, lp) in enumerate(entries[:k]):
            ids[i, j], lps[i, j] = t, lp
        target_lp[i], valid[i] = found[0], True
    return Scores(torch.tensor(sequence[start:]), lps, ids, target_lp, valid)


def _round_trips(tokenizer, sequence: list[int]) -> bool:
    return tokenizer(tokenizer.decode(sequence), add_special_tokens=False)["input_ids"] == sequence


def _generation_eos(tokenizer) -> set[int]:
    """The end-of-turn tokens of the common chat templates that this tokenizer has."""
    vocab = tokenizer.get_vocab()
    return {int(vocab[name]) for name in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>") if name in vocab}


def _fingerprint(endpoint: Endpoint, model: str) -> str:
    import hashlib
    blob = f"{endpoint.base}\0{model}\0{endpoint.revision}".encode()
    return "served:" + hashlib.sha256(blob).hexdigest()[:16]
