"""`diagnose`: where a candidate's error comes from, for the candidate at hand.

Ranks the candidate's blocks, then the linears of its most sensitive blocks, by the KL each adds
when swapped alone into the float model (swap.py), on windows of the suite's corpus; reports each
linear's activation outliers and the distance between the candidate's calibration text and the
corpus. Every number is measured on these two models and this text; nothing is looked up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from awqguard import progress
from awqguard.diagnose import measures, swap
from awqguard.quantizer.mappings import resolve_architecture

WINDOW = 128                 # tokens per window of the corpus
CALIB_TOKENS = 200_000       # the calibration text's distribution is taken over at most this many tokens


@dataclass
class Diagnosis:
    reference: str
    candidate: str
    candidate_config: dict | None            # awqguard.json's config, None for a checkpoint without one
    tokens: int                              # positions the KL is averaged over
    kl_total: float                          # KL(float ‖ candidate), every block quantized
    blocks: list[dict]                       # {name, kl, share}, most sensitive first
    linears: list[dict]                      # {name, kl, share}, for the linears of `linear_blocks`
    linear_blocks: list[str]
    outliers: list[dict]                     # {name, max_over_median, share_over_6x}, largest first
    calibration: dict[str, Any]
    in_features: dict[str, int] = field(default_factory=dict)   # linear -> input width (for group sizes)
    out_features: dict[str, int] = field(default_factory=dict)  # linear -> output width (for byte counts)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_windows(tokenizer, texts: list[str], tokens: int) -> torch.Tensor:
    """[n, WINDOW (+1 for BOS)] windows of the corpus covering about `tokens` positions."""
    from awqguard.gates.perplexity import heldout_windows
    windows = heldout_windows(tokenizer, texts, WINDOW, max(1, -(-tokens // WINDOW)))
    bos = tokenizer.bos_token_id
    if bos is not None:
        windows = torch.cat([torch.full((windows.shape[0], 1), bos), windows], dim=1)
    return windows


@torch.no_grad()
def diagnose_models(reference: nn.Module, candidate: nn.Module, windows: torch.Tensor, linear_blocks: int,
                    labels: tuple[str, str], calibration: dict, candidate_config: dict | None) -> Diagnosis:
    """The diagnosis of `candidate` against its float `reference` (same architecture) on `windows`."""
    start, stages = time.perf_counter(), {}
    windows = windows.to(next(reference.parameters()).device)
    _, arch = resolve_architecture(reference)
    float_blocks = reference.get_submodule(arch.blocks)
    cand_blocks = candidate.get_submodule(arch.blocks)
    tape = swap.record(reference, float_blocks, arch.blocks, windows)
    total = measures.mean_kl(tape.logprobs, torch.log_softmax(candidate(input_ids=windows, use_cache=False)
                                                              .logits.float(), dim=-1))
    stages["record"] = time.perf_counter() - start
    blocks = _rank_blocks(reference, arch.blocks, cand_blocks, tape, windows, total)
    stages["blocks"] = time.perf_counter() - start - stages["record"]
    top = [int(b["name"].rsplit(".", 1)[1]) for b in blocks[:linear_blocks]]
    linears = _rank_linears(reference, arch, float_blocks, cand_blocks, top, tape, windows, total)
    stages["linears"] = time.perf_counter() - start - stages["record"] - stages["blocks"]
    outliers = sorted(({"name": n, **measures.outlier_stats(a)} for n, a in tape.absmax.items()),
                      key=lambda o: -o["max_over_median"])
    shapes = {f"{arch.blocks}.{i}.{n}": (m.in_features, m.out_features) for i, b in enumerate(float_blocks)
              for n, m in b.named_modules() if isinstance(m, nn.Linear)}
    return Diagnosis(labels[0], labels[1], candidate_config, int(windows.numel()), total, blocks, linears,
                     [f"{arch.blocks}.{i}" for i in top], outliers, calibration,
                     {k: v[0] for k, v in shapes.items()}, {k: v[1] for k, v in shapes.items()},
                     round(time.perf_counter() - start, 1), {k: round(v, 1) for k, v in stages.items()})


def _rank_blocks(reference, blocks_name, cand_blocks, tape, windows, total) -> list[dict]:
    rows = []
    with progress.task("diagnose: blocks", total=len(cand_blocks)) as bar:
        for i, block in enumerate(cand_blocks):
            kl = swap.swap_kl(reference, blocks_name, i, block, tape, windows)
            rows.append({"name": f"{blocks_name}.{i}", "kl": kl, "share": kl / total if total > 0 else 0.0})
            bar.advance()
    return sorted(rows, key=lambda r: -r["kl"])


def _rank_linears(reference, arch, float_blocks, cand_blocks, top, tape, windows, total) -> list[dict]:
    jobs = [(i, n) for i in top for n in swap.linear_names(cand_blocks[i])]
    scales = {i: swap.fold_scales(float_blocks[i], cand_blocks[i], arch) for i in top}
    rows = []
    with progress.task("diagnose: linears", total=len(jobs)) as bar:
        for i, name in jobs:
            block = swap.with_one_linear(float_blocks[i], cand_blocks[i], name, scales[i])
            kl = swap.swap_kl(reference, arch.blocks, i, block, tape, windows)
            rows.append({"name": f"{arch.blocks}.{i}.{name}", "kl": kl, "share": kl / total if total > 0 else 0.0})
            bar.advance()
    return sorted(rows, key=lambda r: -r["kl"])


def calibration_distance(tokenizer, corpus_texts: list[str], record: dict | None) -> dict[str, Any]:
    """How far the candidate's calibration text is from the corpus, by token unigram distributions;
    says why when the candidate does not name a calibration text that can be read again.

    A JS divergence shrinks as samples grow, so the decision compares like with like: slices of the
    calibration text as long as half the corpus, each against the other half (`matched`), beside the
    corpus's two halves against each other (`floor`, what text from the same place scores).
    """
    from awqguard.quantizer.calibration import gather_texts, token_stream
    sources = ((record or {}).get("calibration") or {}).get("sources")
    if not sources or any(s.startswith("<") for s in sources):
        why = ("the candidate's awqguard.json does not name its calibration sources" if not sources
               else "the candidate was calibrated on texts passed in memory")
        return {"measured": False, "reason": why, "sources": sources}
    try:
        texts, _ = gather_texts(sources if len(sources) > 1 else sources[0])
    except Exception as exc:      # noqa: BLE001 - a moved or deleted calibration file
        return {"measured": False, "reason": f"cannot read the calibration text again: {exc}", "sources": sources}
    special = set(tokenizer.all_special_ids)           # the separators texts are joined with

    def stream(parts: list[str]) -> list[int]:
        return [t for t in token_stream(tokenizer, parts) if t not in special]
    calib = stream(texts)[:CALIB_TOKENS]
    half_a, half_b = stream(corpus_texts[0::2]), stream(corpus_texts[1::2])
    dist = measures.token_distribution
    corpus = dist(half_a + half_b)
    step = max(len(half_a), 1)
    slices = [calib[i:i + step] for i in range(0, max(len(calib) - step, 0) + 1, max(len(calib) // 5, step))][:5]
    matched = sum(measures.js_distance(dist(s), dist(half_b)) for s in slices) / max(len(slices), 1)
    return {"measured": True, "sources": sources, "js_divergence": measures.js_distance(dist(calib), corpus),
            "matched": matched, "floor": measures.js_distance(dist(half_a), dist(half_b)),
            "unseen_share": measures.unseen_share(dist(calib), corpus)}
