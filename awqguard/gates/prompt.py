"""The RAG prompt: retrieved chunks under their section headers, then the question (docs/architecture.md §7).

Header order is "fixed" (retrieval rank) or "shuffled" (a seeded permutation: the header-shuffle
probe). Chunks carry their section id so answers can cite it. json items ask for JSON only.
"""

from __future__ import annotations

import random
from typing import Sequence

from awqguard.gates.chunker import Chunk

SYSTEM = ("Answer the question using only the documentation below. Be brief. "
          "If the documentation does not contain the answer, say you do not know.")
JSON_INSTRUCTION = "Reply with one JSON object on a single line and nothing else."


def context_block(chunks: Sequence[Chunk], order: str = "fixed", seed: int = 0) -> str:
    if order not in ("fixed", "shuffled"):
        raise ValueError(f"header order must be fixed or shuffled; got {order!r}")
    chunks = list(chunks)
    if order == "shuffled":
        random.Random(seed).shuffle(chunks)
    return "\n\n".join(f"[{c.section_id}] {c.header}\n{c.text}" for c in chunks)


def build_messages(question: str, chunks: Sequence[Chunk], kind: str = "qa", order: str = "fixed",
                   seed: int = 0) -> list[dict[str, str]]:
    """Chat messages for one run; the tokenizer's chat template turns them into the prompt."""
    user = f"Documentation:\n{context_block(chunks, order, seed)}\n\nQuestion: {question}"
    if kind == "json":
        user += f"\n{JSON_INSTRUCTION}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def render_prompts(tokenizer, conversations: Sequence[list[dict]]) -> list[str]:
    """Prompt texts through the tokenizer's chat template, ready for generation."""
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
