"""Markdown documents cut into sections (docs/architecture.md §7-8). Pure functions on strings.

Section id = "<file stem>#<slug>"; slug = heading lowercased, each run of characters other than
a-z/0-9 replaced by one "-", "-" trimmed; a repeated slug in one file gets "-2", "-3", ...
A section runs from its heading to the next heading of the same or higher level, so it includes
its subsections. Headings inside fenced code blocks are text, not headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


@dataclass(frozen=True)
class Section:
    """One heading's span of a document: text[start:end] (character offsets), heading included."""

    id: str
    title: str
    level: int
    start: int
    end: int


def slugify(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def split_sections(stem: str, text: str) -> list[Section]:
    """All sections of one markdown document, in order of appearance."""
    headings: list[tuple[int, str, int]] = []     # (level, title, offset)
    offset, in_fence = 0, False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := _HEADING.match(line.rstrip("\n"))):
            headings.append((len(m.group(1)), m.group(2).strip(), offset))
        offset += len(line)
    seen: dict[str, int] = {}
    sections = []
    for i, (level, title, start) in enumerate(headings):
        end = next((h[2] for h in headings[i + 1:] if h[0] <= level), len(text))
        slug = slugify(title)
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        sections.append(Section(f"{stem}#{slug}", title, level, start, end))
    return sections
