"""Your own pipeline: a Jinja2 prompt template and a `package.module:function` retriever feed both
variants, and each returned passage is aligned to the suite's corpus for coverage."""

import textwrap

import pytest

import tiny_models
from awqguard.backends import LocalBackend
from awqguard.errors import ConfigError
from awqguard.gates.chunker import chunk_corpus
from awqguard.gates.engine import run_gates
from awqguard.gates.fixtures import load_suite
from awqguard.gates.passages import UNALIGNED, Aligner
from engine_helpers import config, reduced_suite

FAST = dict(pipeline={"chunk_tokens": 24, "chunk_overlap": 6, "prompt_chunks": 3, "top_k": 3, "quantize_embedder": False},
            decoding={"max_new_tokens": 6}, probes={"items": 0}, entropy={"tokens": 40},
            perplexity={"window": 48, "max_windows": 2}, seeds=[0], decision={"min_items": 1})
VERBATIM = "Access to a Tarnwell Cloud organization is controlled by four roles"       # in access.md
RETRIEVER = f'''
def search(question, k):
    """A stand-in for a vector database: the same three passages for every question."""
    return [{{"text": "{VERBATIM}"}},
            {{"text": "A passage from another knowledge base entirely.", "section_id": "kb#external"}},
            "Owners have full control of the organization, including billing and payment methods."][:k]

def broken(question, k):
    return "not a list"
'''
TEMPLATE = textwrap.dedent("""\
    {% set system = "You are the production assistant." %}
    Context:
    {% for c in chunks %}<<{{ c.section_id }} / {{ c.header_path | join(" > ") }}>> {{ c.text }}
    {% endfor %}Q ({{ kind }}): {{ question }}""")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWQGUARD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "my_retriever.py").write_text(RETRIEVER)
    (tmp_path / "prompt.j2").write_text(TEMPLATE)
    return reduced_suite(tmp_path / "suite", {"qa": 2})


def _run(suite, **pipeline):
    cfg = config(suite=str(suite), **{**FAST, "pipeline": {**FAST["pipeline"], **pipeline}})
    backends = [LocalBackend(tiny_models.build("llama-gqa", seed), tiny_models.char_tokenizer(), name, name)
                for seed, name in ((0, "ref"), (1, "cand"))]
    return run_gates(cfg, use_cache=False, reference=backends[0], candidate=backends[1])


def test_a_custom_retriever_and_template_change_what_both_variants_see(workspace):
    default = _run(workspace)
    custom = _run(workspace, retriever="my_retriever:search", prompt_template="prompt.j2")
    for record in custom["records"]:
        ref, cand = record["reference"], record["candidate"]
        assert ref["retrieved"] == cand["retrieved"] == ["access#team-members-and-access-roles", "kb#external",
                                                         "access#owner-role"]
        assert ref["prompt_tokens"] == cand["prompt_tokens"]
    default_tokens = {(r["item"], r["prompt"]): r["reference"]["prompt_tokens"] for r in default["records"]}
    assert all(r["reference"]["prompt_tokens"] != default_tokens[(r["item"], r["prompt"])] for r in custom["records"])
    assert any("custom retriever my_retriever:search" in n for n in custom["notices"])


def test_passages_align_verbatim_partially_or_not_at_all(workspace):
    suite = load_suite(workspace)
    chunks = chunk_corpus(suite.documents.values(), 24, 6)
    aligner = Aligner(suite, chunks)
    exact = aligner.chunk(VERBATIM.replace(" ", "\n", 2), None)          # whitespace does not matter
    assert exact.doc == "access" and exact.end - exact.start == len(VERBATIM.split())
    partial = aligner.chunk("Owners have full control of the organization, including billing and payment methods.", None)
    assert partial.doc == "access" and partial.section_id == "access#owner-role" and partial.end > partial.start
    assert aligner.chunk("Nothing here matches the corpus at all.", None).doc == UNALIGNED


@pytest.mark.parametrize("pipeline, message", [
    ({"retriever": "my_retriever:broken"}, "returned str"),
    ({"retriever": "my_retriever:missing"}, "cannot load 'my_retriever:missing'"),
    ({"prompt_template": "nowhere.j2"}, "nowhere.j2 does not exist"),
    ({"prompt_template": "bad.j2"}, "bad.j2, line 2"),
])
def test_a_broken_retriever_or_template_is_a_config_error_naming_it(workspace, pipeline, message):
    (workspace.parent / "bad.j2").write_text("fine\n{% for c in chunks %}unclosed")
    with pytest.raises(ConfigError, match=message):
        _run(workspace, **pipeline)


def test_the_template_renders_the_user_turn_and_may_replace_the_system_prompt(workspace):
    from awqguard.gates.prompt import template_messages
    suite = load_suite(workspace)
    chunks = chunk_corpus(suite.documents.values(), 24, 6)[:2]
    messages = template_messages(TEMPLATE, "prompt.j2", "Who owns it?", chunks, "qa")
    assert messages[0] == {"role": "system", "content": "You are the production assistant."}
    assert messages[1]["content"].startswith("Context:\n<<access#team-members-and-access-roles / Team Members")
    assert messages[1]["content"].endswith("Q (qa): Who owns it?") and chunks[1].text in messages[1]["content"]
    no_system = template_messages('{% set system = "" %}{{ question }}', "t", "Why?", chunks)
    assert no_system == [{"role": "user", "content": "Why?"}]
