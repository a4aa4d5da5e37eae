"""Every metric a gate can name, declared once (docs/architecture.md §9a).

A metric's entry says which way is better, its unit, the engine stage that produces it, the range
its value can take (a gate that could not fail anywhere in that range is uninformative) and how a
gate on it finds its worst items. A gate naming a metric that is not here is refused when the
configuration loads; a stage that produces a metric not declared here fails its test.
"""

from __future__ import annotations

from dataclasses import dataclass

LOWER, HIGHER, NEITHER = "lower", "higher", "neither"      # which way is better
STAGES = ("measure", "probes", "entropy", "perplexity", "cost")


@dataclass(frozen=True)
class Worst:
    """How a gate's worst items are found: `key` on each item summary's `side` ("candidate" or
    "drift"), ranked largest first when `largest`; `kind` limits the ranking to items of that kind;
    `answers` ranks the summaries of the runs whose retrieval matched (what the generator did).
    `side="probes"` lists the candidate's probes that flipped instead."""

    side: str
    key: str = ""
    largest: bool = True
    kind: str | None = None
    answers: bool = False


@dataclass(frozen=True)
class Metric:
    id: str
    better: str
    unit: str
    stage: str
    description: str
    worst: Worst | None = None
    bounds: tuple[float | None, float | None] = (None, None)     # (lowest, highest) value; None = unbounded

    def __post_init__(self) -> None:
        assert self.better in (LOWER, HIGHER, NEITHER) and self.stage in STAGES, self

    @property
    def worst_value(self) -> float | None:
        """The worst value the metric can take, from its bounds (None when unbounded that way)."""
        return {LOWER: self.bounds[1], HIGHER: self.bounds[0]}.get(self.better)


_DS_QR = Worst("candidate", "ds_qr", largest=True)
_COVERAGE = Worst("candidate", "coverage", largest=False)
_HITS = Worst("candidate", "hit_rate", largest=False, answers=True)
_DRIFT = Worst("drift", "answer_ds_excess", largest=True, answers=True)
_GAP = Worst("candidate", "gap_answer", largest=False, answers=True)
_JSON = Worst("candidate", "json_valid", largest=False, kind="json", answers=True)
_PROBES = Worst("probes")
SHARE, DS, DIFF = (0.0, 1.0), (0.0, 1.0), (-1.0, 1.0)

METRICS: dict[str, Metric] = {m.id: m for m in (
    # retrieval (per variant)
    Metric("ds_qr.mean", LOWER, "ΔS", "measure", "ΔS(question, top-1 chunk), suite mean", _DS_QR, bounds=DS),
    Metric("ds_qr.item_max", LOWER, "ΔS", "measure", "ΔS(question, top-1 chunk), worst item", _DS_QR, bounds=DS),
    Metric("ds_qr.topk_mean", LOWER, "ΔS", "measure", "ΔS(question, each top-k chunk), suite mean", _DS_QR, bounds=DS),
    Metric("ds_ra.mean", LOWER, "ΔS", "measure", "ΔS(top-1 chunk, anchor section), suite mean", bounds=DS),
    Metric("coverage.mean", HIGHER, "share", "measure", "share of the anchor's tokens inside the top-k chunks",
           _COVERAGE, bounds=SHARE),
    Metric("retrieval.changed_share", LOWER, "share", "measure",
           "runs whose prompt showed the candidate other chunks (or another order) than the reference", bounds=SHARE),
    Metric("retrieval.top1_agreement", HIGHER, "share", "measure",
           "runs whose top-1 chunk is the same for both variants", bounds=SHARE),
    # answers and λ (per variant)
    Metric("ds_aa.mean", LOWER, "ΔS", "measure", "ΔS(answer, anchor), suite mean", bounds=DS),
    Metric("hit.rate", HIGHER, "share", "measure", "runs whose answer hits the anchor", bounds=SHARE),
    Metric("lambda.convergence_rate", HIGHER, "share", "measure", "items whose runs all hit the anchor and agree",
           _HITS, bounds=SHARE),
    Metric("lambda.chaotic_count", LOWER, "items", "measure", "items with a run that misses the anchor badly", _HITS),
    Metric("lambda.chaotic_share", LOWER, "share", "measure", "share of items with a run that misses badly", _HITS, bounds=SHARE),
    Metric("lambda.bad_miss_rate", LOWER, "share", "measure", "share of runs that miss the anchor badly, mean over items",
           _HITS, bounds=SHARE),
    Metric("lambda.split_share", LOWER, "share", "measure", "share of items whose runs disagree", _HITS, bounds=SHARE),
    Metric("lambda.divergent_count", LOWER, "items", "measure", "items whose runs drift away from the anchor", _HITS),
    Metric("lambda.mcnemar", NEITHER, "p-value", "measure", "McNemar's test on convergent items, paired by item",
           _HITS),
    Metric("lambda_steps.chaotic_share", LOWER, "share", "measure", "chaotic steps along long answers", bounds=SHARE),
    Metric("anchor_gap.answer_mean", HIGHER, "ΔS", "measure", "ΔS(answer, distractor) − ΔS(answer, anchor), mean",
           _GAP, bounds=DIFF),
    Metric("anchor_gap.chunk_mean", HIGHER, "ΔS", "measure", "ΔS(chunk, distractor) − ΔS(chunk, anchor), mean", _GAP, bounds=DIFF),
    Metric("anchor_gap.flattened_share", LOWER, "share", "measure", "items whose answer gap is 0.05 or less", _GAP, bounds=SHARE),
    Metric("loops.rate", LOWER, "share", "measure", "answers caught in a repetition loop", bounds=SHARE),
    Metric("json.validity", HIGHER, "share", "measure", "json items' answers valid against their schema", _JSON, bounds=SHARE),
    Metric("json.validity_drop", LOWER, "share", "measure", "reference JSON-valid rate minus the candidate's", _JSON, bounds=DIFF),
    # drift (paired: one value for the pair)
    Metric("drift.answer_ds_mean", LOWER, "ΔS", "measure", "ΔS(candidate answer, reference answer), item mean",
           _DRIFT, bounds=DS),
    Metric("drift.answer_ds_item_max", LOWER, "ΔS", "measure", "the same, worst item", _DRIFT, bounds=DS),
    Metric("drift.seed_noise", NEITHER, "ΔS", "measure", "ΔS between the reference's answers under two seeds",
           _DRIFT),
    Metric("drift.answer_ds_excess", LOWER, "ΔS", "measure", "answer drift beyond the seed noise, item mean", _DRIFT, bounds=DIFF),
    Metric("drift.answer_ds_item_excess_max", LOWER, "ΔS", "measure", "answer drift beyond the noise, worst item",
           _DRIFT, bounds=DIFF),
    Metric("drift.retrieval_answer_ds_excess", LOWER, "ΔS", "measure", "answer drift beyond the noise on runs "
           "whose retrieval changed, item mean (what the embedder moved)", Worst("drift", "retrieval_answer_ds"),
           bounds=DIFF),
    Metric("drift.ds_qr", LOWER, "ΔS", "measure", "candidate minus reference ΔS(question, top-1 chunk)", _DRIFT, bounds=DIFF),
    Metric("drift.coverage", HIGHER, "share", "measure", "candidate minus reference coverage", _DRIFT, bounds=DIFF),
    Metric("drift.ds_aa", LOWER, "ΔS", "measure", "candidate minus reference ΔS(answer, anchor)", _DRIFT, bounds=DIFF),
    # probes
    Metric("probes.flip_rate", LOWER, "share", "probes", "answers that flip under deeper retrieval or shuffled "
           "headers", _PROBES, bounds=SHARE),
    Metric("probes.flip_excess", LOWER, "share", "probes", "candidate minus reference flip rate", _PROBES, bounds=DIFF),
    # teacher-forced on the reference's long continuations
    Metric("entropy.onset_share", LOWER, "share of length", "entropy", "share of the continuation the candidate's "
           "entropy spends above the reference's own, position by position, counted toward 2x (soft)", bounds=SHARE),
    Metric("entropy.slope_excess", LOWER, "nats per 100 tokens", "entropy", "candidate minus reference entropy "
           "slope"),
    Metric("continuation.kl_mean", LOWER, "nats", "entropy", "mean KL(reference ‖ candidate) along continuations"),
    Metric("continuation.top1_agreement", HIGHER, "share", "entropy", "positions where both models' top token agree", bounds=SHARE),
    # teacher-forced on the suite's corpus
    Metric("perplexity.ratio", LOWER, "ratio", "perplexity", "perplexity on the suite's corpus, candidate / "
           "reference"),
    Metric("kl.mean", LOWER, "nats", "perplexity", "mean KL(reference ‖ candidate) per token"),
    Metric("kl.p99", LOWER, "nats", "perplexity", "99th percentile of KL per token"),
    Metric("same_top.rate", HIGHER, "share", "perplexity", "tokens where both models' top token agree", bounds=SHARE),
    # cost
    Metric("cost.weight_bytes_ratio", LOWER, "ratio", "cost", "candidate / reference bytes of the block linears' "
           "weights"),
)}


def metric(metric_id: str) -> Metric:
    """The declared metric; KeyError for an unknown id (callers turn it into their own error)."""
    return METRICS[metric_id]
