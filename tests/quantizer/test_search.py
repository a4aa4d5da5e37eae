"""The searches must leave every weight exactly as they found it (AutoAWQ 0.2.9 does not on CPU)."""

import torch

import tiny_models
from awqguard.quantizer.blocks import CallRecorder, InputGrams, InputStats, capture_block_inputs, run_block
from awqguard.quantizer.config import QuantConfig
from awqguard.quantizer.mappings import find_blocks, resolve_architecture, resolve_block
from awqguard.quantizer.rounding import fake_quantize
from awqguard.quantizer.search import (CLIP_SHRINKS, GramCall, InspectCall, search_clip, search_clip_gram,
                                      search_scale)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_scale_and_clip_searches_leave_weights_bit_for_bit():
    model = tiny_models.build("llama-mha")
    cfg = QuantConfig(group_size=32)
    _, arch = resolve_architecture(model)
    _, blocks = find_blocks(model, arch)
    block = blocks[0]
    samples = torch.randint(3, tiny_models.VOCAB, (4, 32), generator=torch.Generator().manual_seed(0))
    hidden, call = capture_block_inputs(model, block, samples, chunk=4)
    mappings = resolve_block(block, arch, "model.layers.0")
    linears = {n: m for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    stats = InputStats(linears)
    recorder = CallRecorder(linears, {id(rm.inspect): rm.inspect for rm in mappings})
    run_block(block, hidden, call, 4, torch.device("cpu"))
    stats.remove(), recorder.remove()
    before = _snapshot(model)
    for rm in mappings:
        name = next(n for n, m in linears.items() if m is rm.linears[0])
        args, kwargs, out = recorder.calls[id(rm.inspect)]
        s, ratio, losses = search_scale(rm, stats.mean(name), InspectCall(args, kwargs, out), cfg)
        assert len(losses) == cfg.n_grid and 0.0 <= ratio < 1.0 and (s > 0).all()
    for name, lin in linears.items():
        search_clip(lin.weight, recorder.linear_inputs[name].reshape(-1, lin.in_features), cfg)
    after = _snapshot(model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"{k} changed during the search"


def test_scale_search_loss_at_best_ratio_is_the_minimum():
    model = tiny_models.build("llama-gqa")
    cfg = QuantConfig(group_size=32, w_bit=3, scale_search="full")
    _, arch = resolve_architecture(model)
    _, blocks = find_blocks(model, arch)
    samples = torch.randint(3, tiny_models.VOCAB, (2, 32))
    hidden, call = capture_block_inputs(model, blocks[0], samples, chunk=2)
    rm = resolve_block(blocks[0], arch, "b")[0]
    rec = CallRecorder({}, {id(rm.inspect): rm.inspect})
    stats = InputStats({"q": rm.linears[0]})
    run_block(blocks[0], hidden, call, 2, torch.device("cpu"))
    rec.remove(), stats.remove()
    s, ratio, losses = search_scale(rm, stats.mean("q"), InspectCall(*rec.calls[id(rm.inspect)]), cfg)
    assert losses[int(round(ratio * cfg.n_grid))] == min(losses)


def test_clip_never_worse_than_no_clip():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=gen)
    w[:, 3] *= 8                                     # an outlier column widens the grid
    x = torch.randn(128, 64, generator=gen)
    cfg = QuantConfig(group_size=32)
    best = search_clip(w, x, cfg)
    max_abs = w.abs().reshape(16, 2, 32).amax(-1)
    ratios = best / max_abs
    assert all(any(abs(float(r) - s) < 1e-5 for s in CLIP_SHRINKS) for r in ratios.flatten())

    def group_err(weight):
        q = fake_quantize(weight, 4, 32)
        xg, qg, wg = x.reshape(128, 2, 32), q.reshape(16, 2, 32), w.reshape(16, 2, 32)
        return (torch.einsum("tgk,ogk->ogt", xg, qg) - torch.einsum("tgk,ogk->ogt", xg, wg)).pow(2).mean(-1)

    limit = best.unsqueeze(-1)
    clipped = torch.maximum(torch.minimum(w.reshape(16, 2, 32), limit), -limit).reshape(16, 64)
    assert (group_err(clipped) <= group_err(w) + 1e-6).all()
    assert (ratios < 1).any()


def _down_mapping_inputs():
    """The up -> down mapping of a tiny Llama block, its recorded call, and its input's second moments."""
    block, arch, hidden, call = tiny_models.first_block_inputs("llama-mha", seed=1)
    rm = next(rm for rm in resolve_block(block, arch, "b") if rm.mapping.prev == "mlp.up_proj")
    linears = {"down": rm.linears[0]}
    every_token = torch.arange(4 * 32)
    grams = InputGrams(linears, [["down"]], 32, {"down"}, {"down"}, every_token)
    stats = InputStats(linears)
    run_block(block, hidden, call, 2, torch.device("cpu"))      # two chunks: sums must span both
    grams.remove(), stats.remove()
    rec = CallRecorder(linears, {id(rm.inspect): rm.inspect})       # keeps one call: one chunk of all 4
    run_block(block, hidden, call, 4, torch.device("cpu"))
    rec.remove()
    return rm, rec, grams, stats


def test_gram_loss_equals_the_module_loss_for_a_linear_checked_mapping():
    rm, rec, grams, stats = _down_mapping_inputs()
    cfg = QuantConfig(group_size=32, w_bit=3, scale_search="full")     # every loss, to compare them all
    _, ratio_a, direct = search_scale(rm, stats.mean("down"), InspectCall(*rec.calls[id(rm.inspect)]), cfg)
    _, ratio_b, via_gram = search_scale(rm, stats.mean("down"), GramCall(*grams.full("down")), cfg)
    assert grams.full("down")[1] == 4 * 32
    assert torch.allclose(torch.tensor(direct), torch.tensor(via_gram), rtol=1e-3)
    assert ratio_a == ratio_b


def test_clip_search_on_second_moments_matches_the_token_search():
    rm, rec, grams, _ = _down_mapping_inputs()
    lin = rm.linears[0]
    cfg = QuantConfig(group_size=32)
    x = rec.linear_inputs["down"].reshape(-1, lin.in_features)
    gram, tokens = grams.per_group("down")
    assert tokens == 4 * 32
    assert torch.equal(search_clip(lin.weight, x, cfg), search_clip_gram(lin.weight, gram, cfg))


def test_token_sample_keeps_exactly_the_chosen_tokens_across_chunks():
    from awqguard.quantizer.blocks import TokenSample, is_tokenwise
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(6, 5, 8)                                 # 6 sequences of 5 tokens
    positions = torch.tensor([0, 4, 7, 13, 22, 29])          # spread over every sequence
    sample = TokenSample({1: lin}, positions)
    for start in range(0, 6, 4):                             # chunks of 4 then 2 sequences
        lin(x[start:start + 4])
    sample.remove()
    (inp,), kwargs, out = sample.call(1, torch.device("cpu"))
    flat = x.reshape(-1, 8)
    assert torch.equal(inp[0], flat[positions]) and kwargs == {}
    assert torch.allclose(out[0], lin(flat[positions]))
    assert is_tokenwise(lin)


def test_both_loss_samples_quantize_and_only_attention_keeps_whole_sequences():
    from awqguard.quantizer.awq import quantize_model
    from awqguard.quantizer.blocks import is_tokenwise
    model = tiny_models.build("llama-gqa")
    block = model.model.layers[0]
    assert not is_tokenwise(block.self_attn) and is_tokenwise(block.mlp)
    ids = torch.randint(3, 90, (8, 32), generator=torch.Generator().manual_seed(0))
    before = tiny_models.outputs(model, ids)
    for sample in ("spread", "sequences"):
        quantized = tiny_models.build("llama-gqa")
        cfg = QuantConfig(w_bit=4, group_size=32, n_samples=8, seqlen=32, loss_tokens=48, loss_sequences=3,
                          gram_tokens=64, loss_sample=sample)
        report = quantize_model(quantized, ids, cfg, torch.device("cpu"))
        after = tiny_models.outputs(quantized, ids)
        assert torch.isfinite(after).all()
        assert (after - before).abs().mean() < before.abs().mean()     # still the same model, roughly
        assert all(0 < v <= 1 for b in report.blocks for v in b.clip_shrink.values())


def _run_grid(curve, mode):
    from awqguard.quantizer.search import grid_indices
    losses = [float("nan")] * len(curve)
    for i in grid_indices(len(curve), mode, losses):
        losses[i] = curve[i]
    tried = [i for i, v in enumerate(losses) if v == v]
    return min(tried, key=lambda i: losses[i]), len(tried)


def test_coarse_scale_search_finds_the_minimum_of_a_valley_with_half_the_evaluations():
    for valley in range(20):
        curve = [abs(i - valley) + 0.01 * i for i in range(20)]      # falls then rises, minimum at `valley`
        assert _run_grid(curve, "full") == (valley, 20)
        best, tried = _run_grid(curve, "coarse")
        assert best == valley and tried <= 10


def test_coarse_scale_search_on_a_real_block_stays_close_to_the_full_grid():
    rm, rec, grams, stats = _down_mapping_inputs()
    probe = GramCall(*grams.full("down"))
    _, _, full = search_scale(rm, stats.mean("down"), probe, QuantConfig(group_size=32, w_bit=3, scale_search="full"))
    _, ratio, coarse = search_scale(rm, stats.mean("down"), probe,
                                    QuantConfig(group_size=32, w_bit=3, scale_search="coarse"))
    evaluated = [v for v in coarse if v == v]
    assert len(evaluated) <= 10 and coarse[int(round(ratio * 20))] == min(evaluated)
    assert min(evaluated) <= min(full) * 1.05
