"""Your own retriever in the pipeline (`pipeline.retriever: "package.module:function"`, docs/architecture.md §7d).

The function is called as `function(question, k)` and returns a list of passages: strings, or
mappings / objects with `text` and an optional `section_id`. Both variants are given the same
passages (the retriever is the user's, not a model under test). To measure coverage and name
sections, each passage is aligned to the suite's corpus:
- found verbatim in a document (whitespace aside): its exact span, and the section it starts in;
- otherwise, the corpus chunk sharing the largest share of the passage's words, when that share is
  at least MIN_SHARE: the passage counts as that chunk (its span and section);
- otherwise it is unaligned: it covers nothing, and keeps the section id it came with.
The prompt always shows the passage's own text.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from awqguard.errors import ConfigError
from awqguard.gates.chunker import Chunk, header_path, innermost_section, token_span, word_offsets
from awqguard.gates.fixtures import Suite

MIN_SHARE = 0.5
UNALIGNED = "external"


def load_callable(spec: str) -> Callable:
    """The function `spec` names ("package.module:function"), importable from the working folder."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"pipeline.retriever: {spec!r} is not of the form package.module:function")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"pipeline.retriever: cannot load {spec!r} ({exc})") from None
    if not callable(function):
        raise ConfigError(f"pipeline.retriever: {spec!r} is not callable")
    return function


def passage_fields(passage: Any, spec: str, question: str) -> tuple[str, str | None]:
    """(text, section id or None) of one returned passage; anything else is the user's error, named."""
    if isinstance(passage, str):
        return passage, None
    text = passage.get("text") if isinstance(passage, dict) else getattr(passage, "text", None)
    section = passage.get("section_id") if isinstance(passage, dict) else getattr(passage, "section_id", None)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"pipeline.retriever {spec} returned a passage without text for the question "
                          f"{question!r}: return strings, or mappings with 'text' (and optionally 'section_id')")
    return text, None if section is None else str(section)


class Aligner:
    """Places passages in the suite's corpus (the rules are in the module docstring)."""

    def __init__(self, suite: Suite, chunks: Sequence[Chunk]):
        self.documents = sorted(suite.documents.values(), key=lambda d: d.stem)
        self.chunks = list(chunks)
        self.chunk_words = [_words(c.text) for c in self.chunks]

    def chunk(self, text: str, section_id: str | None) -> Chunk:
        words = text.split()
        pattern = re.compile(r"\s+".join(re.escape(w) for w in words)) if words else None
        for doc in self.documents:
            found = pattern.search(doc.text) if pattern else None
            if found:
                start, end = token_span(word_offsets(doc.text), found.start(), found.end())
                section = innermost_section(doc.sections, found.start())
                return Chunk(doc.stem, start, end, found.start(), found.end(),
                             section_id or (section.id if section else f"{doc.stem}#"),
                             header_path(doc.sections, section), text)
        best, share = self._best_overlap(_words(text))
        if best is not None and share >= MIN_SHARE:
            c = self.chunks[best]
            return Chunk(c.doc, c.start, c.end, c.char_start, c.char_end, section_id or c.section_id, c.header, text)
        return Chunk(UNALIGNED, 0, 0, 0, 0, section_id or UNALIGNED, "", text)

    def _best_overlap(self, words: set[str]) -> tuple[int | None, float]:
        if not words:
            return None, 0.0
        shares = [len(words & cw) / len(words) for cw in self.chunk_words]
        best = max(range(len(shares)), key=shares.__getitem__, default=None)
        return best, (shares[best] if best is not None else 0.0)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9_]+", text.lower()) if len(w) > 2}


class CallableRetriever:
    """The user's retriever behind the same face as the built-in one: `chunks` (the suite's chunks, then
    every passage it returned, each once) and `retrieve(queries, k)` → ids into `chunks`. Its answers
    for the suite's questions are fetched once, up front, so its fingerprint covers what it returned."""

    def __init__(self, spec: str, suite: Suite, chunks: Sequence[Chunk], queries: Sequence[str], depth: int):
        self.spec = spec
        self.label = f"custom retriever {spec}"
        function = load_callable(spec)
        aligner = Aligner(suite, chunks)
        self.chunks: list[Chunk] = list(chunks)
        self._ids_by_text: dict[str, int] = {}
        self._answers: dict[str, list[int]] = {}
        for query in dict.fromkeys(queries):
            self._answers[query] = [self._add(aligner, text, section)
                                    for text, section in self._call(function, query, depth)]
        self.fingerprint = "retriever:" + hashlib.sha256(json.dumps(
            [spec, [[self.chunks[i].text for i in ids] for ids in self._answers.values()]]).encode()).hexdigest()[:16]

    def _call(self, function: Callable, query: str, depth: int) -> list[tuple[str, str | None]]:
        try:
            passages = function(query, depth)
        except Exception as exc:          # the user's code: its failure is reported, never a traceback
            raise ConfigError(f"pipeline.retriever {self.spec} raised {type(exc).__name__}: {exc} "
                              f"(question {query!r})") from None
        if not isinstance(passages, (list, tuple)):
            raise ConfigError(f"pipeline.retriever {self.spec} returned {type(passages).__name__} for the question "
                              f"{query!r}; return a list of passages")
        return [passage_fields(p, self.spec, query) for p in passages[:depth]]

    def _add(self, aligner: Aligner, text: str, section: str | None) -> int:
        if text not in self._ids_by_text:
            self._ids_by_text[text] = len(self.chunks)
            self.chunks.append(aligner.chunk(text, section))
        return self._ids_by_text[text]

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[int]]:
        missing = [q for q in queries if q not in self._answers]
        if missing:
            raise ValueError(f"the custom retriever was not asked {missing[0]!r} up front")
        return [self._answers[q][:k] for q in queries]
