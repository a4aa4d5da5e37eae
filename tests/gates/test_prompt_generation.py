import pytest
import torch

import tiny_models
from awqguard.backends.base import Decoding
from awqguard.backends.decode import generate, next_tokens
from awqguard.gates.chunker import Chunk
from awqguard.gates.prompt import build_messages, context_block, render_prompts

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
    assert msgs[0]["role"] == "system" and "one JSON object" in msgs[1]["content"]
    assert "Question: Give the plan." in msgs[1]["content"]


def test_a_tokenizer_without_chat_template_gets_a_plain_prompt_after_its_bos():
    tokenizer = tiny_models.char_tokenizer()
    tokenizer.chat_template = None
    msgs = build_messages("Give the plan.", CHUNKS[:1], kind="qa")
    (prompt,) = render_prompts(tokenizer, [msgs])
    assert prompt.startswith(tokenizer.bos_token + msgs[0]["content"]) and prompt.endswith("Answer:")
    assert msgs[1]["content"] in prompt


@pytest.fixture(scope="module")
def tiny_lm():
    model = tiny_models.build("llama-gqa")
    return model, tiny_models.char_tokenizer()


def test_batched_generation_is_seeded_and_matches_unbatched(tiny_lm):
    model, tok = tiny_lm
    prompts = ["abc", "hello world", "x" * 30]
    greedy = Decoding(greedy=True, max_new_tokens=6)
    batched = [g[0] for g in generate(model, tok, prompts, greedy, seeds=[0], batch_size=3)]
    single = [generate(model, tok, [p], greedy, seeds=[0], batch_size=1)[0][0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]   # left padding changes nothing
    assert [g.prompt_tokens for g in batched] == [3, 11, 30]
    sampled = Decoding(temperature=1.5, top_p=1.0, max_new_tokens=8)
    a = generate(model, tok, prompts, sampled, seeds=[1, 2], batch_size=2)
    b = generate(model, tok, prompts[::-1], sampled, seeds=[1, 2], batch_size=3)[::-1]
    assert [[g.token_ids for g in row] for row in a] == [[g.token_ids for g in row] for row in b]
    assert all(row[0].token_ids != row[1].token_ids for row in a)            # the seeds differ


def test_greedy_shares_one_decode_across_seeds(tiny_lm):
    model, tok = tiny_lm
    rows = generate(model, tok, ["abc"], Decoding(greedy=True, max_new_tokens=5), seeds=[0, 1, 2])
    assert len(rows[0]) == 3 and len({g.token_ids for g in rows[0]}) == 1


def test_without_eos_the_continuation_has_full_length(tiny_lm):
    model, tok = tiny_lm
    (row,) = generate(model, tok, ["abc"], Decoding(greedy=True, max_new_tokens=12), stop_at_eos=False)
    assert len(row[0].token_ids) == 12 and tok.eos_token_id not in row[0].token_ids


def test_inverse_cdf_sampling_respects_top_p_and_couples_close_models():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    dec = Decoding(temperature=1.0, top_p=0.8)
    picks = [int(next_tokens(logits, dec, torch.tensor([u]))) for u in (0.0, 0.3, 0.7, 0.999)]
    assert picks == [0, 0, 1, 1]                  # tokens 2 and 3 lie outside the top-p 0.8 nucleus
    near = logits + torch.tensor([[0.01, -0.01, 0.0, 0.0]])
    u = torch.rand(200, generator=torch.Generator().manual_seed(0))
    same = (next_tokens(logits.expand(200, 4), dec, u) == next_tokens(near.expand(200, 4), dec, u)).float().mean()
    assert same > 0.95                            # the same uniforms pick the same tokens


def test_nucleus_from_the_head_equals_the_full_sort():
    g = torch.Generator().manual_seed(1)
    scale = torch.tensor([[0.3], [1.0], [3.0], [10.0]]).repeat(25, 1)     # flat rows need the full-sort fallback
    logits = torch.randn(100, 500, generator=g) * scale
    u = torch.rand(100, generator=g)
    dec = Decoding(temperature=0.7, top_p=0.9)
    narrow = next_tokens(logits, dec, u, head=8)
    assert torch.equal(narrow, next_tokens(logits, dec, u, head=500))
    assert not torch.equal(narrow, next_tokens(logits, Decoding(temperature=0.7, top_p=0.5), u, head=500))


def test_per_prompt_budgets_share_a_batch_and_match_separate_calls(tiny_lm):
    model, tok = tiny_lm
    prompts, budgets = ["abc", "hello there", "x"], [3, 9, 5]
    dec = Decoding(greedy=True, max_new_tokens=2)
    mixed = generate(model, tok, prompts, dec, budgets=budgets, stop_at_eos=False)
    for prompt, budget, (row,) in zip(prompts, budgets, mixed):
        (alone,) = generate(model, tok, [prompt], Decoding(greedy=True, max_new_tokens=budget), stop_at_eos=False)
        assert len(row.token_ids) == budget and row.token_ids == alone[0].token_ids


def test_prefill_chunks_are_length_sorted_and_within_budget():
    from awqguard.backends.decode import _chunks
    lengths = [390, 1170, 610, 390, 1170, 610, 390, 610]
    chunks = _chunks(lengths, 2500)
    assert sorted(i for c in chunks for i in c) == list(range(8))
    assert all(len(c) * max(lengths[i] for i in c) <= 2500 or len(c) == 1 for c in chunks)
    assert [max(lengths[i] for i in c) for c in chunks] == sorted(max(lengths[i] for i in c) for c in chunks)


def test_chunked_prefill_into_one_cache_equals_one_prefill(tiny_lm):
    model, tok = tiny_lm
    prompts = ["abc", "a much longer prompt with many more tokens in it", "mid length prompt", "x"]
    dec = Decoding(temperature=0.8, top_p=0.9, max_new_tokens=8)
    whole = generate(model, tok, prompts, dec, seeds=(0, 1), prefill_tokens=10_000)
    chunked = generate(model, tok, prompts, dec, seeds=(0, 1), prefill_tokens=1)     # one prompt per chunk
    assert [[g.token_ids for g in row] for row in chunked] == [[g.token_ids for g in row] for row in whole]
    assert [row[0].prompt_tokens for row in chunked] == [len(tok(p)["input_ids"]) for p in prompts]


def test_generation_makes_transformers_print_no_deprecation(tiny_lm):
    """awqguard's own calls use the installed transformers' names, so it logs and warns nothing
    (transformers 5 prints a deprecation for every use of `past_key_values`)."""
    import logging
    import warnings

    import transformers
    model, tok = tiny_lm
    transformers.utils.logging.warning_once.cache_clear()        # an earlier test may have used up the "once"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = transformers.utils.logging.get_logger("transformers")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generate(model, tok, ["abc", "hello world"], Decoding(greedy=False, max_new_tokens=5), seeds=[0, 1])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    messages = [r.getMessage() for r in records] + [str(w.message) for w in caught]
    assert not [m for m in messages if "deprecat" in m.lower()], messages


def test_top_p_first_takes_the_nucleus_before_temperature():
    """llama.cpp's order: a token outside the untempered nucleus is never drawn, whatever the temperature."""
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))       # untempered nucleus at p=0.8: tokens 0 and 1
    draws = torch.linspace(0.001, 0.999, 200)
    first = Decoding(temperature=3.0, top_p=0.8, order="top-p-first")
    picked = {int(next_tokens(logits, first, u.reshape(1))) for u in draws}
    assert picked == {0, 1}
    after = Decoding(temperature=3.0, top_p=0.8)            # tempered first: flatter, so token 2 joins the nucleus
    assert {int(next_tokens(logits, after, u.reshape(1))) for u in draws} == {0, 1, 2}


def test_sliding_window_layers_decode_past_the_window_as_transformers_does():
    """Gemma 2/3 build sliding-window cache layers shorter than a long prompt: the decoder must not put
    such a prompt into a static cache (it raised a shape mismatch on Gemma-3-270M), and its greedy
    tokens must be transformers' own."""
    import transformers as tf
    torch.manual_seed(2)
    config = tf.Gemma3TextConfig(**tiny_models._common(num_key_value_heads=2, head_dim=16), sliding_window=8,
                                 layer_types=["sliding_attention", "full_attention"])
    config._attn_implementation = "eager"
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.5 * torch.randn_like(p))     # varied next-token choices, not one repeated token
    tok = tiny_models.char_tokenizer()
    prompt = "the window is shorter than this prompt"
    got = generate(model, tok, [prompt], Decoding(greedy=True, max_new_tokens=8), seeds=[0], batch_size=1)[0][0]
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, ids.shape[1]:]
    assert list(got.token_ids) == expected.tolist() and len(set(expected.tolist())) > 1
