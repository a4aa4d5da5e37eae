"""`LocalBackend`: a transformers model in this process (docs/architecture.md §7a).

Generation runs awqguard's own batched decoder (backends/decode.py: coupled sampling, static
cache); scoring is one forward pass per batch of equal-length sequences.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from awqguard.backends.base import BackendInfo, Decoding, Generation, Scores
from awqguard.backends.decode import generate, padding_tokenizer

SCORE_BATCH = 4         # sequences per teacher-forced forward pass: [4, 512, 49k] float32 is ~400 MB


class LocalBackend:
    """A model object plus its tokenizer (None when it only scores token ids, as in benchmarks).
    `batch_size` prompts decode together (a run setting)."""

    def __init__(self, model, tokenizer=None, label: str = "model", fingerprint: str = "", quantized: bool = False,
                 batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._padded = padding_tokenizer(tokenizer) if tokenizer is not None else None
        self.info = BackendInfo(label, fingerprint, quantized, dtype=_dtype(model), device=_device(model),
                                kernel_paths=kernel_paths(model))

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().num_embeddings

    score_prefix: tuple[int, ...] = ()
    scoring_unavailable: str | None = None

    def generate(self, prompts: Sequence[str], decoding: Decoding, seeds: Sequence[int] = (0,), *,
                 budgets: Sequence[int] | None = None, stop_at_eos: bool = True,
                 on_batch: Callable[[int], None] | None = None) -> list[list[Generation]]:
        return generate(self.model, self._padded, prompts, decoding, seeds, self.batch_size,
                        stop_at_eos=stop_at_eos, on_batch=on_batch, budgets=budgets)

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[int]], start: int) -> Iterator[Scores]:
        device = next(self.model.parameters()).device
        for batch in _equal_length_batches(sequences, SCORE_BATCH):
            ids = torch.tensor(batch, device=device)
            logits = self.model(input_ids=ids, use_cache=False).logits[:, start - 1:-1].float()
            logprobs = F.log_softmax(logits, dim=-1)
            for row in range(ids.shape[0]):
                yield Scores(ids[row, start:], logprobs[row])

    def weight_bytes(self) -> int:
        return linear_weight_bytes(self.model)


def _equal_length_batches(sequences: Sequence[Sequence[int]], size: int) -> Iterator[list[list[int]]]:
    """Consecutive runs of at most `size` sequences of one length (a batch needs no padding)."""
    batch: list[list[int]] = []
    for seq in sequences:
        seq = [int(t) for t in seq]
        if batch and (len(batch) == size or len(seq) != len(batch[0])):
            yield batch
            batch = []
        batch.append(seq)
    if batch:
        yield batch


def linear_weight_bytes(model) -> int:
    """Bytes of the linear layers' weights as stored (fp16 for float layers), embeddings and head excluded."""
    from awqguard.kernels.wqlinear import AWQLinear
    total = 0
    for name, module in model.named_modules():
        if name.endswith("lm_head"):
            continue
        if isinstance(module, AWQLinear):
            total += sum(module.get_buffer(b).numel() * module.get_buffer(b).element_size()
                         for b in ("qweight", "qzeros", "scales"))
        elif isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * 2
    return total


def kernel_paths(model) -> tuple[str, ...]:
    """The compute paths of the model's packed linears ("float" when it has none)."""
    from awqguard.kernels.wqlinear import AWQLinear
    return tuple(sorted({m.path for m in model.modules() if isinstance(m, AWQLinear)})) or ("float",)


def _dtype(model: Any) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")


def _device(model: Any) -> str:
    return str(next(model.parameters()).device)
