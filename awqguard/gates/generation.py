"""Batched, seeded generation for one model (reference or candidate) over many chat prompts.

Prompts are left-padded into batches; each batch is generated under `torch.manual_seed(seed +
batch index)`, so the reference and the candidate see the same prompts, in the same batches, under
the same seeds. An empty answer counts as an abort for λ.
"""

from __future__ import annotations

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


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], decoding: Decoding, seed: int,
             batch_size: int = 16) -> list[Generation]:
    """One Generation per prompt, in order."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    sampling = ({"do_sample": False} if decoding.greedy else
                {"do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p})
    results: list[Generation] = []
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        torch.manual_seed(seed * 100_003 + b)
        out = model.generate(**batch, max_new_tokens=decoding.max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
        new = out[:, batch["input_ids"].shape[1]:]
        lengths = batch["attention_mask"].sum(dim=1)
        for row, n_prompt in zip(new, lengths):
            ids = [int(t) for t in row if int(t) != tokenizer.pad_token_id]
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id)]
            results.append(Generation(tokenizer.decode(ids, skip_special_tokens=True).strip(), tuple(ids),
                                      int(n_prompt)))
    return results
