"""The `Backend` protocol and the typed objects that cross it (docs/architecture.md §7a).

A backend is one model the check compares: the reference or the candidate. Whatever runs it (a
transformers model in this process, a server behind HTTP), the engine asks it for the same four
things, so every stage and metric is written once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import torch


@dataclass(frozen=True)
class Decoding:
    """How answers are decoded; part of every run's cache key."""

    greedy: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 96
    order: str = "temperature-first"     # or "top-p-first": the nucleus taken before temperature, as llama.cpp does


@dataclass(frozen=True)
class Generation:
    """One answer: its text, its token ids (end tokens removed) and the prompt's length in tokens."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int

    @property
    def aborted(self) -> bool:
        return not self.text.strip()


@dataclass(frozen=True)
class Scores:
    """Teacher-forced next-token log-probabilities of one sequence, from position `start` on.

    `logprobs` is [n, V] over the whole vocabulary when `token_ids` is None, else [n, K] for the
    K tokens named in `token_ids` [n, K] (a server that returns only its top K; -1 pads a shorter
    row). `targets` [n] are the tokens the sequence actually holds at those positions and
    `target_logprobs` [n] their log-probabilities (exact even when a target is not in the top K).
    `valid` [n] is False at positions the backend could not score (dropped from every metric).
    """

    targets: torch.Tensor
    logprobs: torch.Tensor
    token_ids: torch.Tensor | None = None
    target_logprobs: torch.Tensor | None = None
    valid: torch.Tensor | None = None

    @property
    def full_vocabulary(self) -> bool:
        return self.token_ids is None

    @property
    def top_k(self) -> int | None:
        """K of a top-K score, None for the whole vocabulary."""
        return None if self.token_ids is None else int(self.token_ids.shape[-1])


@dataclass(frozen=True)
class BackendInfo:
    """What results.json says about a model: where it came from and how it computes."""

    label: str
    fingerprint: str
    quantized: bool
    dtype: str = "unknown"
    device: str = "unknown"
    kernel_paths: tuple[str, ...] = ()


@runtime_checkable
class Backend(Protocol):
    """One model under comparison. `tokenizer` is a local transformers tokenizer: awqguard renders
    every prompt and tokenizes every scored text itself, so both variants see identical tokens."""

    info: BackendInfo
    tokenizer: Any

    @property
    def vocab_size(self) -> int:
        """Rows of the model's input embedding: every token id must be below it."""

    @property
    def score_prefix(self) -> tuple[int, ...]:
        """Tokens every scored sequence must begin with (empty for most backends); the teacher-forced
        stage gives both variants the same prefixed sequences."""

    @property
    def scoring_unavailable(self) -> str | None:
        """Why this backend cannot score sequences (its teacher-forced gates are skipped), or None."""

    def generate(self, prompts: Sequence[str], decoding: Decoding, seeds: Sequence[int] = (0,), *,
                 budgets: Sequence[int] | None = None, stop_at_eos: bool = True,
                 on_batch: Callable[[int], None] | None = None) -> list[list[Generation]]:
        """For each prompt, one Generation per seed: result[i][j] is prompts[i] under seeds[j]."""

    def score(self, sequences: Sequence[Sequence[int]], start: int) -> Iterator[Scores]:
        """Scores of each sequence's positions `start`.. (one Scores per sequence, in order), lazily:
        full-vocabulary log-probabilities are large, so callers consume them one at a time."""

    def weight_bytes(self) -> int | None:
        """Bytes of the block linears' weights as stored (None when the backend cannot tell)."""
