"""The RAG prompt: retrieved chunks under their section headers, then the question (docs/architecture.md §7).

Header order is "fixed" (retrieval rank) or "shuffled" (a seeded permutation: the header-shuffle
probe). Chunks carry their section id so answers can cite it. json items ask for JSON only.
"""

from __future__ import annotations

import functools
import random
from typing import Sequence

from awqguard.errors import ConfigError
from awqguard.gates.chunker import Chunk

SYSTEM = ("Answer the question using only the documentation below. Be brief. "
          "If the documentation does not contain the answer, say you do not know.")
JSON_INSTRUCTION = "Reply with one JSON object on a single line and nothing else."


def context_block(chunks: Sequence[Chunk], order: str = "fixed", seed: int = 0) -> str:
    if order not in ("fixed", "shuffled"):
        raise ValueError(f"header order must be fixed or shuffled; got {order!r}")
    chunks = ordered(chunks, order, seed)
    return "\n\n".join(f"[{c.section_id}] {c.header}\n{c.text}" for c in chunks)


def build_messages(question: str, chunks: Sequence[Chunk], kind: str = "qa", order: str = "fixed",
                   seed: int = 0) -> list[dict[str, str]]:
    """Chat messages for one run; the tokenizer's chat template turns them into the prompt."""
    user = f"Documentation:\n{context_block(chunks, order, seed)}\n\nQuestion: {question}"
    if kind == "json":
        user += f"\n{JSON_INSTRUCTION}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def ordered(chunks: Sequence[Chunk], order: str = "fixed", seed: int = 0) -> list[Chunk]:
    chunks = list(chunks)
    if order == "shuffled":
        random.Random(seed).shuffle(chunks)
    return chunks


@functools.lru_cache(maxsize=8)
def _compiled(source: str, name: str):
    import jinja2
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"pipeline.prompt_template {name}, line {exc.lineno}: {exc.message}") from None


def template_messages(source: str, name: str, question: str, chunks: Sequence[Chunk], kind: str = "qa",
                      order: str = "fixed", seed: int = 0) -> list[dict[str, str]]:
    """Chat messages from the user's own prompt template (pipeline.prompt_template): its output is the
    user turn; a top-level `{% set system = "..." %}` replaces awqguard's system prompt ("" drops it)."""
    import jinja2
    passages = [{"text": c.text, "section_id": c.section_id, "header": c.header,
                 "header_path": [h for h in c.header.split(" > ") if h]} for c in ordered(chunks, order, seed)]
    try:
        module = _compiled(source, name).make_module({"question": question, "chunks": passages, "kind": kind,
                                                      "json_instruction": JSON_INSTRUCTION})
    except jinja2.TemplateError as exc:
        raise ConfigError(f"pipeline.prompt_template {name}: {exc}") from None
    system = getattr(module, "system", SYSTEM)
    user = str(module).strip()
    return ([{"role": "system", "content": str(system)}] if system else []) + [{"role": "user", "content": user}]


def render_prompts(tokenizer, conversations: Sequence[list[dict]]) -> list[str]:
    """Prompt texts through the tokenizer's chat template, ready for generation. A base model
    without one (Gemma-3-270M's GGUF) gets the turns as plain paragraphs after its BOS token (prompts
    are tokenized without special tokens, as a chat template writes them itself), ending in "Answer:"."""
    if not getattr(tokenizer, "chat_template", None):
        return [(tokenizer.bos_token or "") + plain_prompt(c) for c in conversations]
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


def plain_prompt(messages: Sequence[dict]) -> str:
    return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
