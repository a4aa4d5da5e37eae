"""Batched generation for one model (reference or candidate), paired across variants by construction.

Each prompt is prefilled once and its cache is repeated for every seed, so the seeds of a run set
share the prompt's cost. Sampling is inverse-CDF with one uniform number per row and step drawn
from that row's own generator, seeded by (seed, prompt text): the same prompt under the same seed
draws the same numbers in the reference and the candidate, whatever the batch it lands in. Two
models with the same next-token distribution therefore write the same answer, and small
differences change answers only where they matter (coupled sampling). An empty answer counts as
an abort for λ.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Decoding:
    greedy: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 96


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int

    @property
    def aborted(self) -> bool:
        return not self.text.strip()


def render_prompts(tokenizer, conversations: Sequence[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


def row_seed(seed: int, prompt: str) -> int:
    """A generator seed for one (seed, prompt) pair, independent of batching and of the variant."""
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}


def next_tokens(logits: torch.Tensor, decoding: Decoding, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row from logits [B, V]: argmax, or top-p sampling by inverse CDF at `uniforms` [B]."""
    if decoding.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / decoding.temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    sorted_probs = torch.where(cumulative - sorted_probs < decoding.top_p, sorted_probs, 0.0)
    cdf = sorted_probs.cumsum(dim=-1)
    target = (uniforms * cdf[:, -1]).unsqueeze(-1)
    pick = torch.searchsorted(cdf, target).clamp(max=cdf.shape[-1] - 1)
    return order.gather(-1, pick).squeeze(-1)


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def _decode_cache(model, prefill_cache, repeats: int, new_tokens: int):
    """The prompt's cache repeated for every seed, in a preallocated StaticCache when the model's layers
    allow it (DynamicCache re-concatenates the whole cache at every step, which dominates CPU decode)."""
    from transformers import StaticCache
    try:
        layers = prefill_cache.layers
        if any(getattr(layer, "is_sliding", False) for layer in layers):
            raise TypeError("sliding-window layers")
        length = prefill_cache.get_seq_length()
        static = StaticCache(config=model.config, max_cache_len=length + new_tokens + 1)
        k0 = layers[0].keys
        static.early_initialization(k0.shape[0] * repeats, k0.shape[1], k0.shape[3], k0.dtype, k0.device)
        if len(static.layers) != len(layers):
            raise TypeError("cache layer count differs")
        for target, source in zip(static.layers, layers):
            target.keys[:, :, :length] = source.keys.repeat_interleave(repeats, 0)
            target.values[:, :, :length] = source.values.repeat_interleave(repeats, 0)
            target.cumulative_length.fill_(length)
        return static
    except (AttributeError, TypeError, ValueError, IndexError, RuntimeError):
        if repeats > 1:
            prefill_cache.batch_repeat_interleave(repeats)
        return prefill_cache


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


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], decoding: Decoding, seeds: Sequence[int] = (0,),
             batch_size: int = 16, stop_at_eos: bool = True, on_batch=None) -> list[list[Generation]]:
    """For each prompt, one Generation per seed: result[i][j] is prompts[i] under seeds[j].

    With greedy decoding every seed gives the same answer, so the prompt is decoded once and shared.
    `stop_at_eos=False` forbids the end tokens (a long continuation of fixed length).
    """
    from transformers import DynamicCache

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    eos = stop_ids(model, tokenizer)
    eos_list = torch.tensor(sorted(eos), device=device)
    repeats = 1 if decoding.greedy else len(seeds)
    with_positions, keep_last = _accepts(model, "position_ids"), _accepts(model, "logits_to_keep")
    results: list[list[Generation]] = []
    for start in range(0, len(prompts), batch_size):
        texts = list(prompts[start:start + batch_size])
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        mask = batch["attention_mask"]
        extra = {"logits_to_keep": 1} if keep_last else {}
        if with_positions:
            extra["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=batch["input_ids"], attention_mask=mask, past_key_values=DynamicCache(),
                    use_cache=True, **extra)
        logits = out.logits[:, -1].float().repeat_interleave(repeats, 0)
        cache = _decode_cache(model, out.past_key_values, repeats, decoding.max_new_tokens)
        mask = mask.repeat_interleave(repeats, 0)
        gens = [torch.Generator().manual_seed(row_seed(s, t)) for t in texts for s in (seeds[:repeats])]
        rows = len(gens)
        active = list(range(rows))                 # batch position -> row; shrinks as rows finish
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        for step_index in range(decoding.max_new_tokens):
            if not stop_at_eos:
                logits[:, eos_list] = float("-inf")
            uniforms = torch.cat([torch.rand(1, generator=gens[r]) for r in active]).to(device)
            chosen = next_tokens(logits, decoding, uniforms)
            for pos, r in enumerate(active):
                if not done[pos]:
                    tokens[r].append(int(chosen[pos]))
            done |= torch.isin(chosen, eos_list)
            if bool(done.all()) or step_index == decoding.max_new_tokens - 1:
                break
            if int(done.sum()) * 4 >= len(active):   # a quarter finished: later steps run only the live rows
                keep = (~done).nonzero().squeeze(-1)
                cache = _select_rows(cache, keep)
                mask, chosen, done = mask[keep], chosen[keep], done[keep]
                active = [active[int(i)] for i in keep]
            chosen = torch.where(done, tokenizer.pad_token_id, chosen)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step = {"position_ids": mask.sum(-1, keepdim=True) - 1} if with_positions else {}
            out = model(input_ids=chosen.unsqueeze(-1), attention_mask=mask, past_key_values=cache, use_cache=True,
                        **step)
            logits, cache = out.logits[:, -1].float(), out.past_key_values
        n_prompt = batch["attention_mask"].sum(dim=1).tolist()
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


@torch.no_grad()
def continuation_logprobs(model, prompt_ids: Sequence[int], continuation: Sequence[int]) -> torch.Tensor:
    """Next-token log-probabilities [len(continuation), V] at each continuation position (teacher forcing)."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(continuation)], device=device)
    logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, dim=-1)
