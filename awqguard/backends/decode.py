"""Batched generation for an in-process model (reference or candidate), paired across variants by construction.

Each prompt is prefilled once and its cache is repeated for every seed, so the seeds of a run set
share the prompt's cost. Sampling is inverse-CDF with one uniform number per row and step drawn
from that row's own generator, seeded by (seed, prompt text): the same prompt under the same seed
draws the same numbers in the reference and the candidate, whatever the batch it lands in. Two
models with the same next-token distribution therefore write the same answer, and small
differences change answers only where they matter (coupled sampling). An empty answer counts as
an abort for λ.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from typing import Sequence

import torch

from awqguard.backends.base import Decoding, Generation
from awqguard.hf_compat import cache_kwargs, output_cache


def row_seed(seed: int, prompt: str) -> int:
    """A generator seed for one (seed, prompt) pair, independent of batching and of the variant."""
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}


def next_tokens(logits: torch.Tensor, decoding: Decoding, uniforms: torch.Tensor, head: int = 64) -> torch.Tensor:
    """One token per row from logits [B, V]: argmax, or top-p sampling by inverse CDF at `uniforms` [B].

    The nucleus is looked for among each row's `head` most likely tokens first (sorting the whole
    vocabulary every step cost a third of a decode step); rows whose nucleus is wider are sorted in full.
    """
    if decoding.greedy:
        return logits.argmax(dim=-1)
    if decoding.order == "top-p-first":
        return _top_p_first(logits, decoding, uniforms)
    probs = torch.softmax(logits.float() / decoding.temperature, dim=-1)
    top_probs, top_ids = probs.topk(min(head, probs.shape[-1]), dim=-1)
    wide = top_probs.sum(dim=-1) < decoding.top_p
    chosen = _nucleus_pick(top_probs, top_ids, decoding.top_p, uniforms)
    if bool(wide.any()):
        sorted_probs, order = probs[wide].sort(dim=-1, descending=True)
        chosen[wide] = _nucleus_pick(sorted_probs, order, decoding.top_p, uniforms[wide])
    return chosen


def _top_p_first(logits: torch.Tensor, decoding: Decoding, uniforms: torch.Tensor) -> torch.Tensor:
    """llama.cpp's order: the top-p nucleus of the untempered distribution, then temperature on it."""
    sorted_logits, order = logits.float().sort(dim=-1, descending=True)
    raw = torch.softmax(sorted_logits, dim=-1)
    keep = (raw.cumsum(dim=-1) - raw) < decoding.top_p
    tempered = torch.softmax(torch.where(keep, sorted_logits / decoding.temperature, -torch.inf), dim=-1)
    return _nucleus_pick(tempered, order, 1.0, uniforms)      # already the nucleus, still in descending order


def _nucleus_pick(sorted_probs: torch.Tensor, order: torch.Tensor, top_p: float, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF pick inside the top-p nucleus of probabilities sorted in descending order."""
    cumulative = sorted_probs.cumsum(dim=-1)
    sorted_probs = torch.where(cumulative - sorted_probs < top_p, sorted_probs, 0.0)
    cdf = sorted_probs.cumsum(dim=-1)
    target = (uniforms * cdf[:, -1]).unsqueeze(-1)
    pick = torch.searchsorted(cdf, target).clamp(max=cdf.shape[-1] - 1)
    return order.gather(-1, pick).squeeze(-1)


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def _static_cache(model, like, rows: int, length: int):
    """An empty StaticCache of `rows` x `length` shaped like the prefill cache `like`, or None where the
    model's layers do not allow one (sliding windows, unusual cache classes)."""
    from transformers import StaticCache
    try:
        layers = like.layers
        if any(getattr(layer, "is_sliding", False) for layer in layers):
            return None
        if len({layer.keys.device for layer in layers}) > 1:       # a model spread over GPUs
            return None
        static = StaticCache(config=model.config, max_cache_len=length)
        if any(getattr(layer, "is_sliding", False) for layer in static.layers):
            return None          # Gemma 2/3: the config makes sliding-window layers, shorter than `length`
        k0 = layers[0].keys
        static.early_initialization(rows, k0.shape[1], k0.shape[3], k0.dtype, k0.device)
        if len(static.layers) != len(layers) or not hasattr(static.layers[0], "cumulative_length"):
            return None
        return static
    except (AttributeError, TypeError, ValueError, IndexError, RuntimeError):
        return None


def _chunks(lengths: Sequence[int], tokens: int) -> list[list[int]]:
    """Prompt indices in ascending length, cut into chunks whose padded size (rows x longest) stays
    within `tokens`, so a chunk wastes little on padding and prefill runs at a moderate batch size."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        if chunks and (len(chunks[-1]) + 1) * lengths[i] <= tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _prefill(model, tokenizer, texts: list[str], repeats: int, steps: int, chunk_tokens: int, extra: dict, device):
    """(decode cache, attention mask, last logits, prompt lengths) for a decode batch, every row repeated
    for each seed.

    Prompts are prefilled in length-sorted chunks (`_chunks`) and right-aligned into one
    preallocated StaticCache that decodes them all together (DynamicCache re-concatenates the whole
    cache at every step, which dominates CPU decode). Keys carry their rotary positions already, so
    where a prompt sits in the cache does not matter; the mask hides the left padding. Models that
    cannot use a StaticCache are prefilled in one piece into a DynamicCache.
    """
    from transformers import DynamicCache

    def forward(batch):
        kw = {**extra, "position_ids": (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)} if "position_ids" in extra else extra
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     use_cache=True, **cache_kwargs(DynamicCache()), **kw)

    encode = lambda part: tokenizer(part, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    n_prompt = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    total = max(n_prompt)
    static, logits, mask = None, None, torch.zeros(len(texts), total, dtype=torch.long, device=device)
    for chunk in _chunks(n_prompt, chunk_tokens):
        part = encode([texts[i] for i in chunk])
        out = forward(part)
        if static is None:
            static = _static_cache(model, output_cache(out), len(texts) * repeats, total + steps + 1)
            if static is None:                       # one DynamicCache for the whole batch, in prompt order
                whole = encode(texts)
                out = forward(whole)
                cache = output_cache(out)
                if repeats > 1:
                    cache.batch_repeat_interleave(repeats)
                return (cache, whole["attention_mask"].repeat_interleave(repeats, 0),
                        out.logits[:, -1].float().repeat_interleave(repeats, 0), n_prompt)
            logits = torch.empty(len(texts) * repeats, out.logits.shape[-1], device=device)
        width = part["input_ids"].shape[1]
        rows = torch.tensor([i * repeats + j for i in chunk for j in range(repeats)], device=device)
        for target, source in zip(static.layers, output_cache(out).layers):
            target.keys[rows, :, total - width:total] = source.keys.repeat_interleave(repeats, 0)
            target.values[rows, :, total - width:total] = source.values.repeat_interleave(repeats, 0)
        mask[chunk, total - width:] = part["attention_mask"]
        logits[rows] = out.logits[:, -1].float().repeat_interleave(repeats, 0)
    for layer in static.layers:
        layer.cumulative_length.fill_(total)
    return static, mask.repeat_interleave(repeats, 0), logits, n_prompt


def _select_rows(cache, keep: torch.Tensor):
    """The cache restricted to the batch rows `keep`."""
    from transformers import StaticCache
    if isinstance(cache, StaticCache):
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[keep], layer.values[keep]
            layer.batch_size = len(keep)
        return cache
    cache.batch_select_indices(keep)
    return cache


def padding_tokenizer(tokenizer):
    """A copy of `tokenizer` that pads on the left (decode batches are right-aligned), with EOS as
    the pad token when it has none: the caller's tokenizer is left as it was."""
    padded = copy.deepcopy(tokenizer)
    if padded.pad_token_id is None:
        padded.pad_token = padded.eos_token
    padded.padding_side = "left"
    return padded


def _forward_options(model) -> tuple[dict, bool]:
    """(extra forward kwargs for prefill, whether the model takes position ids)."""
    with_positions, keep_last = _accepts(model, "position_ids"), _accepts(model, "logits_to_keep")
    extra = {"logits_to_keep": 1} if keep_last else {}
    if with_positions:
        extra["position_ids"] = None                # filled per chunk from its attention mask
    return extra, with_positions


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], decoding: Decoding, seeds: Sequence[int] = (0,),
             batch_size: int = 16, stop_at_eos: bool = True, on_batch=None,
             budgets: Sequence[int] | None = None, prefill_tokens: int = 4096) -> list[list[Generation]]:
    """For each prompt, one Generation per seed: result[i][j] is prompts[i] under seeds[j].

    With greedy decoding every seed gives the same answer, so the prompt is decoded once and shared.
    `stop_at_eos=False` forbids the end tokens (a long continuation of fixed length). `budgets` gives
    each prompt its own max_new_tokens (default: decoding.max_new_tokens for all), so prompts of
    different kinds share one batch; sort them by budget to keep batches' step counts tight.
    `batch_size` prompts decode together (decode steps are bound by reading the weights, so wide
    batches are cheap); they are prefilled in length-sorted chunks of at most `prefill_tokens` padded
    tokens (prefill is compute-bound and fastest at moderate batch sizes). A tokenizer that does not
    pad on the left is used through a padding copy (`padding_tokenizer`), never changed.
    """
    if tokenizer.pad_token_id is None or tokenizer.padding_side != "left":
        tokenizer = padding_tokenizer(tokenizer)
    repeats = 1 if decoding.greedy else len(seeds)
    budgets = list(budgets) if budgets is not None else [decoding.max_new_tokens] * len(prompts)
    eos = stop_ids(model, tokenizer)
    results: list[list[Generation]] = []
    for start in range(0, len(prompts), batch_size):
        texts = list(prompts[start:start + batch_size])
        tokens, n_prompt = _decode_batch(model, tokenizer, texts, decoding, seeds[:repeats],
                                         budgets[start:start + batch_size], stop_at_eos, prefill_tokens, eos)
        for i in range(len(texts)):
            per_seed = []
            for j in range(repeats):
                ids = [t for t in tokens[i * repeats + j] if t not in eos]
                per_seed.append(Generation(tokenizer.decode(ids, skip_special_tokens=True).strip(), tuple(ids),
                                           int(n_prompt[i])))
            results.append(per_seed * (len(seeds) if repeats == 1 else 1))
        if on_batch is not None:
            on_batch(len(texts))
    return results


def _decode_batch(model, tokenizer, texts: list[str], decoding: Decoding, seeds: Sequence[int],
                  budgets: Sequence[int], stop_at_eos: bool, prefill_tokens: int,
                  eos: set[int]) -> tuple[list[list[int]], list[int]]:
    """(sampled token ids per row, prompt lengths) for one decode batch; row i*len(seeds)+j is
    texts[i] under seeds[j]. Rows that finish drop out of later steps once a quarter are done."""
    device = next(model.parameters()).device
    eos_list = torch.tensor(sorted(eos), device=device)
    repeats = len(seeds)
    extra, with_positions = _forward_options(model)
    limit = torch.tensor(list(budgets), device=device).repeat_interleave(repeats)
    steps = int(limit.max())
    cache, mask, logits, n_prompt = _prefill(model, tokenizer, texts, repeats, steps, prefill_tokens, extra, device)
    gens = [torch.Generator().manual_seed(row_seed(s, t)) for t in texts for s in seeds]
    active = list(range(len(gens)))              # batch position -> row; shrinks as rows finish
    done = torch.zeros(len(gens), dtype=torch.bool, device=device)
    tokens: list[list[int]] = [[] for _ in gens]
    for step_index in range(steps):
        if not stop_at_eos:
            logits[:, eos_list] = float("-inf")
        uniforms = torch.cat([torch.rand(1, generator=gens[r]) for r in active]).to(device)
        chosen = next_tokens(logits, decoding, uniforms)
        for pos, r in enumerate(active):
            if not done[pos]:
                tokens[r].append(int(chosen[pos]))
        done |= torch.isin(chosen, eos_list) | (limit <= step_index + 1)
        if bool(done.all()) or step_index == steps - 1:
            break
        if int(done.sum()) * 4 >= len(active):   # a quarter finished: later steps run only the live rows
            keep = (~done).nonzero().squeeze(-1)
            cache = _select_rows(cache, keep)
            mask, chosen, done, limit = mask[keep], chosen[keep], done[keep], limit[keep]
            active = [active[int(i)] for i in keep]
        chosen = torch.where(done, tokenizer.pad_token_id, chosen)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step = {"position_ids": mask.sum(-1, keepdim=True) - 1} if with_positions else {}
        out = model(input_ids=chosen.unsqueeze(-1), attention_mask=mask, use_cache=True, **cache_kwargs(cache), **step)
        logits, cache = out.logits[:, -1].float(), output_cache(out)
    return tokens, n_prompt
