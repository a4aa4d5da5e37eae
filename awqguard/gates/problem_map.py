"""Problem-Map symptoms (docs/architecture.md §10), declared as data: what a failed gate means and what to do.

Fixes are written in awqguard terms: the command or option a user changes. Fixes that depend on the
candidate (its group size, its sensitive linears, its calibration) are not guessed here: they point
to `awqguard diagnose`, which computes them from the candidate, and `awqguard tune`, which tries them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Symptom:
    id: str
    title: str
    description: str
    causes: tuple[str, ...]
    fixes: tuple[str, ...]


SYMPTOMS: dict[str, Symptom] = {s.id: s for s in (
    Symptom("ppl-drift", "Perplexity rises and answers drift",
            "The candidate's held-out perplexity, KL or answer drift against the reference is too high.",
            ("calibration data does not match production text", "group size too coarse for this model"),
            ("find the blocks and linears that cause it, with fixes computed for this candidate (the next smaller "
             "group size, the linears to keep, --calib only if its calibration text differs): awqguard diagnose",
             "try those fixes and keep the first that passes: awqguard tune --candidate <checkpoint>",
             "recalibrate on domain text: awqguard quantize --calib fixtures/<suite> (the suite's corpus)")),
    Symptom("synthesis-drift", "Snippets retrieved right but synthesis drifts",
            "Retrieval matches the reference, yet the candidate's answers move away from the anchor.",
            ("logit jitter from quantization", "unstable order of section headers in the prompt"),
            ("lock header order: pipeline.header_order: fixed in awqguard.yaml",
             "decode deterministically: awqguard check --greedy",
             "require citations of section ids in the prompt so answers stay traceable")),
    Symptom("no-gain", "No memory or throughput gain",
            "The candidate is not smaller or faster than the reference.",
            ("linears were not replaced by quantized modules", "slow kernel path", "wrong device placement"),
            ("check which kernel paths run: awqguard doctor",
             "check the replaced-module count in the checkpoint's awqguard.json",
             "load with a packed path: load_quantized(..., kernel=\"int4pack\") on CPU")),
    Symptom("entropy-collapse", "Long-chain reasoning collapses earlier",
            "The candidate's next-token entropy builds up faster with length than the reference's.",
            ("faster entropy accumulation in the quantized model", "no reranker or bridge between steps"),
            ("decode deterministically: awqguard check --greedy", "add a reranker before generation",
             "shorten chains: split long answers into steps")),
    Symptom("json-unstable", "JSON outputs unstable",
            "The candidate produces schema-valid JSON less often than the reference.",
            ("small errors amplified by strict formats", "schema too loose to guide the output"),
            ("tighten the item schemas (required fields, additionalProperties: false)",
             "constrain output to JSON (a grammar or JSON mode in the serving stack)")),
    Symptom("boundary-flattened", "Anchor and distractor no longer separated",
            "Answers or retrieved chunks sit as close to the confusable neighbour as to the anchor.",
            ("flattened semantic boundaries after quantization",),
            ("recalibrate: awqguard quantize --calib fixtures/<suite>",
             "find which layers flatten it and the group size or linears to change: awqguard diagnose, then "
             "awqguard tune --candidate <checkpoint>")),
    Symptom("retrieval-drift", "Retrieval drifts (quantized embedder)",
            "The candidate pipeline retrieves different or farther chunks than the reference.",
            ("embedder quantization too coarse",),
            ("keep the embedder in full precision: pipeline.quantize_embedder: false in awqguard.yaml",
             "quantize the embedder with a smaller group: pipeline.embedder_group_size: 32",
             "quantize the embedder to more bits: pipeline.embedder_w_bit: 8")),
)}
