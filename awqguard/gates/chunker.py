"""Chunker: word-token windows with overlap over each document (docs/architecture.md §7).

Every chunk keeps its source span, in word-token positions (for coverage) and in characters (for
display), and the heading path of the section it starts in (for the prompt's section header).
Pure functions over Document objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from awqguard.gates.corpus import Section
from awqguard.gates.fixtures import Document

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    doc: str
    start: int            # first word-token position (inclusive)
    end: int              # last word-token position (exclusive)
    char_start: int
    char_end: int
    section_id: str       # innermost section containing the chunk's first token
    header: str           # "Title > Section > Subsection"
    text: str

    @property
    def span(self) -> tuple[str, int, int]:
        return (self.doc, self.start, self.end)


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Character span of every whitespace-separated token."""
    return [m.span() for m in _WORD.finditer(text)]


def token_span(offsets: Sequence[tuple[int, int]], char_start: int, char_end: int) -> tuple[int, int]:
    """Word-token positions [start, end) of the tokens that begin inside [char_start, char_end)."""
    starts = [s for s, _ in offsets]
    import bisect
    return bisect.bisect_left(starts, char_start), bisect.bisect_left(starts, char_end)


def innermost_section(sections: Sequence[Section], char_pos: int) -> Section | None:
    inside = [s for s in sections if s.start <= char_pos < s.end]
    return max(inside, key=lambda s: (s.level, s.start)) if inside else None


def header_path(sections: Sequence[Section], section: Section | None) -> str:
    if section is None:
        return ""
    chain = [s for s in sections if s.start <= section.start < s.end and s.level <= section.level]
    chain.sort(key=lambda s: s.level)
    return " > ".join(s.title for s in chain)


def chunk_document(doc: Document, size: int = 96, overlap: int = 24) -> list[Chunk]:
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be in [0, size); got size={size}, overlap={overlap}")
    offsets = word_offsets(doc.text)
    chunks, step = [], size - overlap
    for start in range(0, max(1, len(offsets)), step):
        end = min(start + size, len(offsets))
        if start >= end:
            break
        c0, c1 = offsets[start][0], offsets[end - 1][1]
        section = innermost_section(doc.sections, c0)
        chunks.append(Chunk(doc.stem, start, end, c0, c1, section.id if section else f"{doc.stem}#",
                            header_path(doc.sections, section), doc.text[c0:c1]))
        if end == len(offsets):
            break
    return chunks


def chunk_corpus(documents: Iterable[Document], size: int = 96, overlap: int = 24) -> list[Chunk]:
    return [c for doc in sorted(documents, key=lambda d: d.stem) for c in chunk_document(doc, size, overlap)]


def section_token_span(doc: Document, section: Section) -> tuple[str, int, int]:
    """A section's span in word-token positions, comparable with Chunk.span for coverage."""
    start, end = token_span(word_offsets(doc.text), section.start, section.end)
    return (doc.stem, start, end)
