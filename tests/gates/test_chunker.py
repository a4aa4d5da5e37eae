from pathlib import Path

from awqguard.gates.chunker import chunk_corpus, chunk_document, section_token_span
from awqguard.gates.corpus import split_sections
from awqguard.gates.fixtures import Document, load_suite
from awqguard.gates.metrics import coverage

TEXT = "# Guide\n\n## Alpha\n\n" + " ".join(f"a{i}" for i in range(50)) + "\n\n## Beta\n\n" + " ".join(
    f"b{i}" for i in range(50)) + "\n"


def _doc():
    return Document("guide", Path("guide.md"), TEXT, tuple(split_sections("guide", TEXT)))


def test_windows_overlap_and_cover_every_token():
    doc = _doc()
    chunks = chunk_document(doc, size=40, overlap=10)
    assert [(c.start, c.end) for c in chunks] == [(0, 40), (30, 70), (60, 100), (90, 106)]
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
        assert c.text.split() == TEXT.split()[c.start:c.end]
    assert covered == set(range(len(TEXT.split())))


def test_chunks_know_their_section_and_header_path():
    chunks = chunk_document(_doc(), size=20, overlap=0)
    first_beta = next(c for c in chunks if c.text.split()[0].startswith("b"))
    assert first_beta.section_id == "guide#beta" and first_beta.header == "Guide > Beta"
    assert chunks[0].section_id == "guide#guide" and chunks[0].header == "Guide"


def test_section_spans_and_coverage_by_chunks():
    doc = _doc()
    alpha = next(s for s in doc.sections if s.id == "guide#alpha")
    span = section_token_span(doc, alpha)
    assert span == ("guide", 2, 54)          # tokens "#", "Guide" precede; "##", "Alpha", a0..a49 are the section
    chunks = chunk_document(doc, size=30, overlap=0)
    assert coverage([span], [c.span for c in chunks]) == 1.0
    assert coverage([span], [chunks[0].span]) == (30 - 2) / (54 - 2)


def test_default_suite_chunks():
    suite = load_suite(Path(__file__).resolve().parents[2] / "fixtures" / "default")
    chunks = chunk_corpus(suite.documents.values())
    assert len(chunks) > 40
    assert {c.doc for c in chunks} == set(suite.documents)
