"""The load stage: the suite, and the two models as backends (docs/architecture.md §7a).

The reference comes from config["reference"] (default SmolLM2); the candidate from
config["candidate"] or, by default, the reference quantized by awqguard's AWQ (cached under
.awqguard/candidates/). Either may instead be given in memory (`LoadedModel`, or any Backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awqguard import cache
from awqguard.backends import Backend, LocalBackend
from awqguard.backends.http import Endpoint
from awqguard.errors import ConfigError
from awqguard.gates.chunker import Chunk, chunk_corpus
from awqguard.gates.config import DEFAULTS, CheckConfig, served_spec
from awqguard.gates.fixtures import Item, Suite, load_suite
from awqguard.models import ModelSource, fingerprint, load_model, load_tokenizer, resolve_model
from awqguard.placement import place

TOKENIZER_PROBE = "Rotate key tk_live_42 via `tarn keys rotate` within 24 hours; see [auth#rotating-keys]."


@dataclass
class LoadedModel:
    """A model already in memory, passed to run_gates instead of a path (the Python API and tests)."""

    model: Any
    tokenizer: Any
    label: str
    fingerprint: str
    quantized: bool = False


@dataclass(frozen=True)
class Contender:
    """One side of the check: its backend and where it came from (for results and evidence)."""

    backend: Backend
    source: str                         # what results call it
    path: str                           # its folder or file, "" when it was given in memory
    fingerprint: str
    quantized: bool
    reused: bool = False                # a cached quantization was reused
    model_source: ModelSource | None = None
    endpoint: str = ""                  # the API root of a served model

    def describe(self) -> dict:
        out = {"source": self.source, "path": self.path, "fingerprint": self.fingerprint,
               "quantized": self.quantized, "reused": self.reused}
        return {**out, "endpoint": self.endpoint} if self.endpoint else out


@dataclass(frozen=True)
class SuiteInput:
    suite: Suite
    items: list[Item]                   # the items this check asks (the first `limit`)
    chunks: list[Chunk]
    chunking: tuple[int, int]           # (chunk tokens, overlap): part of every run's cache key


def resolve_suite(spec: str) -> Path:
    """The suite folder; the shipped default is also found from outside the repository root."""
    path = Path(spec)
    shipped = Path(__file__).resolve().parents[2] / DEFAULTS["suite"]     # the repository root
    if not path.exists() and spec == DEFAULTS["suite"] and shipped.exists():
        return shipped
    return path


def load_suite_input(config: dict) -> SuiteInput:
    suite = load_suite(resolve_suite(config["suite"]))
    items = suite.items[: config["limit"]] if config["limit"] else list(suite.items)
    pipe = config["pipeline"]
    if pipe["chunk_overlap"] >= pipe["chunk_tokens"]:
        raise ConfigError("pipeline.chunk_overlap must be smaller than pipeline.chunk_tokens")
    chunking = (pipe["chunk_tokens"], pipe["chunk_overlap"])
    return SuiteInput(suite, items, chunk_corpus(suite.documents.values(), *chunking), chunking)


def from_memory(given: LoadedModel | Backend, batch_size: int) -> Contender:
    if isinstance(given, LoadedModel):
        backend = LocalBackend(given.model, given.tokenizer, given.label, given.fingerprint, given.quantized, batch_size)
    else:
        backend = given
    return Contender(backend, backend.info.label, "", backend.info.fingerprint, backend.info.quantized)


def served(endpoint: Endpoint, role: str, tokenizer, use_cache: bool) -> Contender:
    """A model behind an OpenAI-compatible endpoint, prompted through `tokenizer` (or its own `tokenizer:`)."""
    from awqguard.backends.served import ServedBackend
    if endpoint.tokenizer is not None:
        source = resolve_model(endpoint.tokenizer)
        if source.gguf_file:
            load_model(source)                # a GGUF's conversion writes the tokenizer it reads
        tokenizer = load_tokenizer(source)
    if tokenizer is None:
        raise ConfigError(f"{role}: a served {role} needs the tokenizer its prompts are rendered with: give "
                          f"{role}.tokenizer: PATH (the model's folder, its tokenizer files, or its .gguf)")
    backend = ServedBackend(endpoint, tokenizer, use_cache=use_cache, quantized=role == "candidate")
    label = f"{backend.server.model} served at {endpoint.base}"
    return Contender(backend, label, "", backend.info.fingerprint, role == "candidate", endpoint=endpoint.base)


def load_reference(config: dict, batch_size: int, use_cache: bool = True) -> Contender:
    if (spec := served_spec(config["reference"])) is not None:
        return served(Endpoint.of(spec), "reference", None, use_cache)
    source = resolve_model(config["reference"])
    fp = fingerprint(source)
    model = place(load_model(source), config["device"])   # first: a GGUF's conversion also saves its tokenizer
    backend = LocalBackend(model, load_tokenizer(source), source.label, fp, False, batch_size)
    return Contender(backend, source.label, str(source.path), fp, False, model_source=source)


def load_candidate(config: CheckConfig, reference: Contender, batch_size: int, use_cache: bool = True) -> Contender:
    """The candidate named in the config, or the reference quantized with awqguard's AWQ."""
    from awqguard.quantizer.checkpoint import RECORD_FILE, load_quantized, read_quantization_config
    if (spec := served_spec(config.data["candidate"])) is not None:
        return served(Endpoint.of(spec), "candidate", reference.backend.tokenizer, use_cache)
    if config.data["candidate"] is None:
        return _quantized_reference(config, reference, batch_size)
    source = resolve_model(config.data["candidate"])
    folder = source.folder
    quantized = source.gguf_file is None and (read_quantization_config(folder) is not None
                                               or (folder / RECORD_FILE).exists())
    model = place(load_quantized(folder, "cpu") if quantized else load_model(source), config.data["device"])
    has_tokenizer = any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
    tokenizer = load_tokenizer(source) if (has_tokenizer or source.gguf_file) else reference.backend.tokenizer
    fp = fingerprint(source)
    return Contender(LocalBackend(model, tokenizer, source.label, fp, quantized, batch_size), source.label,
                     str(source.path), fp, quantized, model_source=source)


def _quantized_reference(config: CheckConfig, reference: Contender, batch_size: int) -> Contender:
    from awqguard.quantizer.api import quantize
    qcfg = config.quantize
    if reference.endpoint:
        raise ConfigError(f"the reference is served at {reference.endpoint}, so awqguard cannot quantize it into a "
                          "candidate: name the candidate (a checkpoint folder, or candidate: {endpoint: URL})")
    ref_source = reference.model_source or resolve_model(config.data["reference"])
    out = cache.entry("candidates", cache.cache_key({"model": reference.fingerprint, "quant": qcfg.to_dict()}))
    with cache.lock(out):            # a parallel check of the same reference waits, then reuses it
        result = quantize(config.data["reference"], out=out, config=qcfg)
    rounding = "" if qcfg.rounding == "nearest" else f", {qcfg.rounding} rounding"
    label = f"{ref_source.label} quantized by awqguard (AWQ w{qcfg.w_bit} g{qcfg.group_size}{rounding})"
    fp = cache.cache_key(result.record["identity"])
    backend = LocalBackend(place(result.model, config.data["device"]), result.tokenizer, label, fp, True, batch_size)
    return Contender(backend, label, str(out), fp, True, result.reused)


def check_tokenizer(backend: Backend, label: str, reference_tokenizer=None) -> None:
    """The tokenizer must fit the model's vocabulary and, for a candidate, encode text as the reference's does."""
    tokenizer, vocab = backend.tokenizer, backend.vocab_size
    ids = tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    if len(tokenizer) > vocab or max(ids, default=0) >= vocab:
        raise ConfigError(f"{label}: its tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab}; "
                          "the tokenizer does not belong to this model (put the model's own tokenizer files in its folder)")
    if reference_tokenizer is not None and reference_tokenizer(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"] != ids:
        raise ConfigError(f"{label}: its tokenizer encodes text differently from the reference's, so the two "
                          "cannot be compared on the same prompts; use a candidate made from the reference model")
