import pytest
import torch

import tiny_models
from awqguard.gates.chunker import Chunk
from awqguard.gates.generation import Decoding, generate
from awqguard.gates.prompt import build_messages, context_block

CHUNKS = [Chunk("auth", i * 10, i * 10 + 10, 0, 0, f"auth#s{i}", f"Auth > S{i}", f"text {i}") for i in range(5)]


def test_context_keeps_headers_and_orders():
    fixed = context_block(CHUNKS)
    assert fixed.index("[auth#s0] Auth > S0") < fixed.index("[auth#s4] Auth > S4")
    shuffled = context_block(CHUNKS, "shuffled", seed=3)
    assert shuffled != fixed and sorted(shuffled.split("\n\n")) == sorted(fixed.split("\n\n"))
    assert shuffled == context_block(CHUNKS, "shuffled", seed=3)
    with pytest.raises(ValueError):
        context_block(CHUNKS, "random")


def test_json_items_ask_for_json():
    msgs = build_messages("Give the plan.", CHUNKS[:1], kind="json")
    assert msgs[0]["role"] == "system" and "single JSON object" in msgs[1]["content"]
    assert "Question: Give the plan." in msgs[1]["content"]


@pytest.fixture(scope="module")
def tiny_lm():
    model = tiny_models.build("llama-gqa")
    return model, tiny_models.char_tokenizer()


def test_batched_generation_is_seeded_and_matches_unbatched(tiny_lm):
    model, tok = tiny_lm
    prompts = ["abc", "hello world", "x" * 30]
    greedy = Decoding(greedy=True, max_new_tokens=6)
    batched = generate(model, tok, prompts, greedy, seed=0, batch_size=3)
    single = [generate(model, tok, [p], greedy, seed=0, batch_size=1)[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]   # left padding changes nothing
    assert [g.prompt_tokens for g in batched] == [3, 11, 30]
    sampled = Decoding(temperature=1.5, top_p=1.0, max_new_tokens=8)
    a = generate(model, tok, prompts, sampled, seed=1)
    b = generate(model, tok, prompts, sampled, seed=1)
    c = generate(model, tok, prompts, sampled, seed=2)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
