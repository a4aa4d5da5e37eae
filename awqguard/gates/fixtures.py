"""Fixture suites: `suite.yaml` + a corpus of markdown files (a public format; docs/architecture.md §8).

`load_suite` returns a Suite or raises FixtureError listing every problem at once (file, item id,
field, what is wrong), so a user fixes a suite in one pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from awqguard.errors import AwqguardError
from awqguard.files import read_text
from awqguard.gates.corpus import Section, split_sections

KINDS = ("qa", "json", "long")
ITEM_KEYS = {"id", "kind", "question", "paraphrases", "anchor", "distractor", "answer", "schema"}
SUITE_KEYS = {"name", "description", "corpus", "items"}
MIN_PARAPHRASES = 3


@dataclass(frozen=True)
class Problem:
    file: str
    item: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" item {self.item}" if self.item else "") + (f" field {self.field}" if self.field else "")
        return f"{where}: {self.message}"


class FixtureError(AwqguardError):
    """A suite that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} fixture problem(s):\n{lines}")


@dataclass(frozen=True)
class Document:
    stem: str
    path: Path
    text: str
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    question: str
    paraphrases: tuple[str, ...]
    anchors: tuple[str, ...]
    distractor: str
    answer: str
    schema: dict | None = None

    @property
    def prompts(self) -> tuple[str, ...]:
        """The question and its paraphrases: the runs λ is measured across."""
        return (self.question, *self.paraphrases)


@dataclass
class Suite:
    name: str
    description: str
    root: Path
    documents: dict[str, Document]
    items: list[Item]
    fingerprint: str
    sections: dict[str, tuple[Document, Section]] = field(default_factory=dict)

    def section_text(self, section_id: str) -> str:
        doc, sec = self.sections[section_id]
        return doc.text[sec.start:sec.end]


def load_suite(folder: str | Path) -> Suite:
    suite, problems = _parse(Path(folder))
    if problems:
        raise FixtureError(problems)
    return suite


def validate_suite(folder: str | Path) -> list[Problem]:
    return _parse(Path(folder))[1]


# ---- parsing ------------------------------------------------------------------------------------

def _parse(folder: Path) -> tuple[Suite | None, list[Problem]]:
    spec_path = folder / "suite.yaml"
    label = str(spec_path)
    if not spec_path.is_file():
        return None, [Problem(label, "", "", "no suite.yaml here (a suite is a folder with suite.yaml and a corpus)")]
    try:
        spec = yaml.safe_load(read_text(spec_path))
    except AwqguardError as exc:
        return None, [Problem(label, "", "", str(exc))]
    except yaml.YAMLError as exc:
        return None, [Problem(label, "", "", f"not valid YAML: {exc}".replace("\n", " "))]
    if not isinstance(spec, dict):
        return None, [Problem(label, "", "", "must be a mapping with name, corpus and items")]
    problems: list[Problem] = []
    for key in sorted(set(spec) - SUITE_KEYS):
        problems.append(Problem(label, "", key, f"unknown key (allowed: {', '.join(sorted(SUITE_KEYS))})"))
    if not isinstance(spec.get("name"), str) or not spec["name"].strip():
        problems.append(Problem(label, "", "name", "missing or empty"))

    corpus_dir = folder / str(spec.get("corpus", "corpus"))
    documents = _read_corpus(corpus_dir, problems)
    sections = {s.id: (d, s) for d in documents.values() for s in d.sections}

    raw_items = spec.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        problems.append(Problem(label, "", "items", "missing or empty: a suite needs at least one item"))
        raw_items = []
    items, seen_ids = [], set()
    for index, raw in enumerate(raw_items):
        item = _parse_item(raw, index, label, sections, seen_ids, problems)
        if item is not None:
            items.append(item)

    digest = hashlib.sha256(spec_path.read_bytes())
    for doc in sorted(documents.values(), key=lambda d: d.stem):
        digest.update(doc.stem.encode())
        digest.update(doc.text.encode())
    suite = Suite(str(spec.get("name", "")), str(spec.get("description", "")), folder, documents, items,
                  digest.hexdigest()[:16], sections)
    return suite, problems


def _read_corpus(corpus_dir: Path, problems: list[Problem]) -> dict[str, Document]:
    if not corpus_dir.is_dir():
        problems.append(Problem(str(corpus_dir), "", "corpus", "corpus folder does not exist"))
        return {}
    documents: dict[str, Document] = {}
    for path in sorted(corpus_dir.glob("**/*.md")):
        try:
            text = read_text(path)
        except (AwqguardError, OSError) as exc:
            problems.append(Problem(str(path), "", "", str(exc)))
            continue
        stem = path.stem
        if stem in documents:
            problems.append(Problem(str(path), "", "", f"a second document named {stem!r}: section ids would collide"))
            continue
        sections = tuple(split_sections(stem, text))
        for sec in sections:
            if not sec.id.split("#", 1)[1]:
                problems.append(Problem(str(path), "", "", f"heading {sec.title!r} has no letters or digits for an id"))
        if not sections:
            problems.append(Problem(str(path), "", "", "document has no headings, so no section can be an anchor"))
        documents[stem] = Document(stem, path, text, sections)
    if not documents:
        problems.append(Problem(str(corpus_dir), "", "corpus", "empty corpus: no .md files"))
    return documents


def _parse_item(raw: Any, index: int, label: str, sections: dict, seen_ids: set, problems: list[Problem]) -> Item | None:
    if not isinstance(raw, dict):
        problems.append(Problem(label, f"#{index + 1}", "", "each item must be a mapping"))
        return None
    item_id = str(raw.get("id", "")).strip() or f"#{index + 1}"
    start = len(problems)

    def bad(field_name: str, message: str) -> None:
        problems.append(Problem(label, item_id, field_name, message))

    if "id" not in raw or not str(raw["id"]).strip():
        bad("id", "missing")
    elif item_id in seen_ids:
        bad("id", "duplicate id")
    seen_ids.add(item_id)
    for key in sorted(set(raw) - ITEM_KEYS):
        bad(key, f"unknown field (allowed: {', '.join(sorted(ITEM_KEYS))})")
    kind = raw.get("kind", "qa")
    if kind not in KINDS:
        bad("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    for text_field in ("question", "answer"):
        if not isinstance(raw.get(text_field), str) or not raw[text_field].strip():
            bad(text_field, "missing or empty")
    paraphrases = raw.get("paraphrases")
    if not isinstance(paraphrases, list) or not all(isinstance(p, str) and p.strip() for p in paraphrases):
        bad("paraphrases", f"must be a list of at least {MIN_PARAPHRASES} non-empty strings")
        paraphrases = []
    elif len(paraphrases) < MIN_PARAPHRASES:
        bad("paraphrases", f"has {len(paraphrases)}; at least {MIN_PARAPHRASES} are needed")
    anchors = raw.get("anchor")
    anchors = [anchors] if isinstance(anchors, str) else anchors
    if not isinstance(anchors, list) or not anchors:
        bad("anchor", "missing: give a section id (file stem#heading slug) or a list of them")
        anchors = []
    for a in anchors:
        if a not in sections:
            bad("anchor", f"unknown section id {a!r}{_suggest(a, sections)}")
    distractor = raw.get("distractor")
    if not isinstance(distractor, str) or not distractor:
        bad("distractor", "missing: give the id of an adjacent, confusable section")
    elif distractor not in sections:
        bad("distractor", f"unknown section id {distractor!r}{_suggest(distractor, sections)}")
    elif distractor in anchors:
        bad("distractor", "is also an anchor; it must be a different section")
    schema = raw.get("schema")
    if kind == "json":
        _check_json_item(schema, raw.get("answer"), bad)
    elif schema is not None:
        bad("schema", f"only json items take a schema (this item is {kind})")
    if len(problems) > start:
        return None
    return Item(item_id, kind, raw["question"].strip(), tuple(p.strip() for p in paraphrases), tuple(anchors),
                distractor, str(raw["answer"]).strip(), schema)


def _check_json_item(schema: Any, answer: Any, bad) -> None:
    import jsonschema
    if not isinstance(schema, dict):
        bad("schema", "json items need a JSON Schema mapping")
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        bad("schema", f"invalid JSON Schema: {exc.message}")
        return
    if isinstance(answer, str):
        try:
            value = json.loads(answer)
        except json.JSONDecodeError as exc:
            bad("answer", f"json items need a JSON reference answer ({exc.msg})")
            return
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if errors:
            bad("answer", f"reference answer does not satisfy its schema: {errors[0].message}")


def _suggest(section_id: str, sections: dict) -> str:
    import difflib
    close = difflib.get_close_matches(section_id, list(sections), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
