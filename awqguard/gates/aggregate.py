"""The measure stage: from the two variants' raw runs to per-run records, per-item summaries and
suite metrics (docs/architecture.md §9).

`embed_texts` is the one step that runs the measuring-stick embedder; everything after it is a pure
function of the runs and the Stick's embeddings. Records pair the reference and the candidate on
the same item, prompt and seed, which is what every drift figure is over.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from awqguard.gates import metrics as m
from awqguard.gates.document import Measurement
from awqguard.gates.fixtures import Item, Suite
from awqguard.gates.records import VARIANTS, ItemDrift, ItemSummary, Record, RecordDrift, RunSide, VariantSummary
from awqguard.gates.scoring import (Evidence, Stick, cited_sections, evidence_for, score_answer, score_retrieval,
                                    step_prefixes, step_trace)

PROBE_FLIP_DS = 0.20


def _texts(variant_run: dict) -> list[str]:
    return [a["text"] for r in variant_run["runs"] + variant_run["probes"] for a in r["answers"] if a["text"]]


def embed_texts(stick: Stick, suite: Suite, items: Sequence[Item], chunks, runs: dict[str, dict]) -> dict[str, Evidence]:
    """Embed everything the metrics compare, each text once: chunks, prompts, evidence and answers
    together, then each long answer's sentence prefixes (its step trace)."""
    evidence = {it.id: evidence_for(suite, it) for it in items}
    texts = [c.text for c in chunks]
    for it in items:
        ev = evidence[it.id]
        texts += list(it.prompts) + ev.anchor_pieces + ev.distractor_pieces
    for run in runs.values():
        texts += _texts(run)
    stick.add(texts)
    kinds = {it.id: it.kind for it in items}
    for r_ref, r_cand in zip(runs["reference"]["runs"], runs["candidate"]["runs"]):
        if kinds[r_ref["item"]] != "long":
            continue
        for j in range(len(r_ref["answers"])):
            for r in (r_ref, r_cand):
                if r["answers"][j]["text"].strip():
                    stick.add(step_prefixes(r["answers"][j]["text"]))
    return evidence


def build_records(suite: Suite, items: Sequence[Item], chunks, runs: dict[str, dict], stick: Stick,
                  evidence: dict[str, Evidence]) -> list[Record]:
    """One record per (item, prompt, seed), holding both variants' retrieval, answer and metrics."""
    by_item = {it.id: it for it in items}
    records = []
    for r_ref, r_cand in zip(runs["reference"]["runs"], runs["candidate"]["runs"]):
        item = by_item[r_ref["item"]]
        ev = evidence[item.id]
        retrieval = {name: _retrieval(stick, suite, item, ev, r, chunks) for name, r in
                     (("reference", r_ref), ("candidate", r_cand))}
        for j, seed_answer in enumerate(r_ref["answers"]):
            ref = _run_side(stick, item, ev, r_ref, j, retrieval["reference"])
            cand = _run_side(stick, item, ev, r_cand, j, retrieval["candidate"])
            drift = RecordDrift(stick.answer_ds(ref.answer, cand.answer),
                                ref.retrieved[:1] == cand.retrieved[:1] and r_ref["chunk_ids"][:1] == r_cand["chunk_ids"][:1],
                                *(abs(getattr(cand, k) - getattr(ref, k)) for k in ("ds_qr", "coverage", "ds_aa")))
            records.append(Record(item.id, item.kind, r_ref["prompt"], seed_answer["seed"], r_ref["question"],
                                  ref, cand, drift))
    return records


def _retrieval(stick: Stick, suite: Suite, item: Item, ev: Evidence, run: dict, chunks) -> dict:
    chunk_list = [chunks[i] for i in run["chunk_ids"]]
    return score_retrieval(stick, suite, item, ev, run["question"], [c.text for c in chunk_list],
                           [c.span for c in chunk_list])


def _run_side(stick: Stick, item: Item, ev: Evidence, run: dict, j: int, retrieval: dict) -> RunSide:
    """One variant's side of one record: its retrieval scores and the scores of its j-th answer."""
    a = run["answers"][j]
    aborted = not a["text"].strip()
    answer = score_answer(stick, item, ev, run["question"], a["text"], aborted)
    return RunSide(
        run["retrieved"], a["text"], a["tokens"], aborted, a["loop"], **retrieval, **answer,
        hit=m.Run(answer["ds_aa"], aborted, answer["cites_anchor"]).hit,
        json_valid=m.json_valid(a["text"], item.schema) if item.kind == "json" else None,
        step_labels=m.step_labels(step_trace(stick, ev, a["text"])) if item.kind == "long" and not aborted else None,
        prompt_tokens=run.get("prompt_tokens"))


def item_summaries(records: Sequence[Record], stick: Stick, seeds_vary: bool = True) -> dict[str, ItemSummary]:
    """Per item and variant: λ across its runs and the means of its run metrics; plus per-item drift.
    `seeds_vary` is False under greedy decoding, where there is no sampling noise floor."""
    grouped: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        grouped[rec.item].append(rec)
    out = {}
    for item_id, recs in grouped.items():
        first = recs[0]                                  # the question itself under the first seed
        sides = {name: _variant_summary(recs, name, stick) for name in VARIANTS}
        out[item_id] = ItemSummary(first.kind, first.question, sides["reference"], sides["candidate"],
                                   _item_drift(recs, stick, seeds_vary))
    return out


def _variant_summary(recs: Sequence[Record], name: str, stick: Stick) -> VariantSummary:
    sides = [r.side(name) for r in recs]
    answers = [s.answer for s in sides if s.answer]
    if len(answers) >= 2:
        agreement = float(np.median(m.pairwise_delta_s(np.stack([stick.vectors[a] for a in answers]))))
    else:
        agreement = 0.0 if answers else 1.0
    runs = [m.Run(s.ds_aa, s.aborted, s.cites_anchor) for s in sides]
    mean = lambda key: float(np.mean([getattr(s, key) for s in sides]))
    return VariantSummary(
        m.lambda_label(runs, agreement), agreement, float(np.mean([r.hit for r in runs])),
        *(mean(k) for k in ("ds_qr", "ds_qr_topk", "ds_ra", "ds_aa", "ds_aq", "coverage", "gap_answer", "gap_chunk")),
        loop_rate=mean("loop"), retrieved=recs[0].side(name).retrieved, answer=recs[0].side(name).answer,
        json_valid=mean("json_valid") if recs[0].kind == "json" else None)


def _item_drift(recs: Sequence[Record], stick: Stick, seeds_vary: bool) -> ItemDrift:
    mean = lambda key: float(np.mean([getattr(r.drift, key) for r in recs]))
    spread = m.paired_bootstrap([r.drift.answer_ds for r in recs], [0.0] * len(recs))
    noise = _seed_noise(recs, stick) if seeds_vary else None
    return ItemDrift(mean("answer_ds"), mean("ds_qr"), mean("coverage"), mean("ds_aa"), [spread.low, spread.high],
                     noise, mean("answer_ds") - (noise or 0.0))


def suite_metrics(items: dict[str, ItemSummary], records: Sequence[Record]) -> dict[str, Measurement]:
    """Suite-level metrics: a value per variant, or one value for paired figures (drift)."""
    return {**_variant_metrics(items, records), **_json_metrics(items), **_drift_metrics(items, records)}


def _variant_metrics(items: dict[str, ItemSummary], records: Sequence[Record]) -> dict[str, Measurement]:
    summaries = list(items.values())
    mean = lambda key: lambda v: float(np.mean([getattr(s.side(v), key) for s in summaries]))
    share = lambda label: lambda v: float(np.mean([s.side(v).lambda_label == label for s in summaries]))
    count = lambda label: lambda v: float(sum(s.side(v).lambda_label == label for s in summaries))
    steps = {v: [lab for r in records for lab in (r.side(v).step_labels or [])] for v in VARIANTS}
    figures = {
        "ds_qr.mean": mean("ds_qr"), "ds_qr.item_max": lambda v: float(np.max([s.side(v).ds_qr for s in summaries])),
        "ds_qr.topk_mean": mean("ds_qr_topk"), "ds_ra.mean": mean("ds_ra"), "coverage.mean": mean("coverage"),
        "ds_aa.mean": mean("ds_aa"), "hit.rate": mean("hit_rate"),
        "lambda.convergence_rate": share(m.CONVERGENT), "lambda.chaotic_count": count(m.CHAOTIC),
        "lambda.chaotic_share": share(m.CHAOTIC), "lambda.split_share": share(m.SPLIT),
        "lambda.divergent_count": count(m.DIVERGENT),
        "anchor_gap.answer_mean": mean("gap_answer"), "anchor_gap.chunk_mean": mean("gap_chunk"),
        "anchor_gap.flattened_share": lambda v: float(np.mean([s.side(v).gap_answer <= 0.05 for s in summaries])),
        "loops.rate": lambda v: float(np.mean([r.side(v).loop for r in records])),
        "lambda_steps.chaotic_share":
            lambda v: float(np.mean([lab == m.CHAOTIC for lab in steps[v]])) if steps[v] else None,
    }
    return {name: Measurement.of_variants(fn("reference"), fn("candidate")) for name, fn in figures.items()}


def _json_metrics(items: dict[str, ItemSummary]) -> dict[str, Measurement]:
    json_items = [s for s in items.values() if s.kind == "json"]
    if not json_items:
        return {"json.validity": Measurement.of_variants(None, None),
                "json.validity_drop": Measurement.not_measured("the suite has no json items")}
    valid = {v: float(np.mean([s.side(v).json_valid for s in json_items])) for v in VARIANTS}
    return {"json.validity": Measurement.of_variants(valid["reference"], valid["candidate"]),
            "json.validity_drop": Measurement.paired(valid["reference"] - valid["candidate"])}


def _interval(candidate: Sequence[float], reference: Sequence[float]) -> Measurement:
    ci = m.paired_bootstrap(candidate, reference)
    return Measurement.paired(ci.mean, (ci.low, ci.high), n=ci.n, decidable=ci.decidable)


def _drift_metrics(items: dict[str, ItemSummary], records: Sequence[Record]) -> dict[str, Measurement]:
    summaries = list(items.values())
    drift = [s.drift.answer_ds for s in summaries]
    out = {"drift.answer_ds_mean": _interval(drift, [0.0] * len(drift)),
           "drift.answer_ds_item_max": Measurement.paired(float(np.max(drift)))}
    noise = [s.drift.seed_noise for s in summaries]
    if any(n is None for n in noise):        # one seed, or greedy: no noise floor, drift is judged as it is
        out["drift.seed_noise"] = Measurement.not_measured("needs two seeds with sampled decoding")
        noise = [0.0] * len(noise)
    else:
        out["drift.seed_noise"] = Measurement.paired(float(np.mean(noise)))
    out["drift.answer_ds_excess"] = _interval(drift, noise)
    out["drift.answer_ds_item_excess_max"] = Measurement.paired(
        float(np.max([s.drift.answer_ds_excess for s in summaries])))
    for key in ("ds_qr", "coverage", "ds_aa"):
        out[f"drift.{key}"] = _interval([getattr(s.candidate, key) for s in summaries],
                                        [getattr(s.reference, key) for s in summaries])
    out["retrieval.top1_agreement"] = Measurement.paired(float(np.mean([r.drift.same_top1 for r in records])))
    test = m.mcnemar([s.reference.lambda_label == m.CONVERGENT for s in summaries],
                     [s.candidate.lambda_label == m.CONVERGENT for s in summaries])
    out["lambda.mcnemar"] = Measurement.paired(test.p_value, reference_only=test.reference_only,
                                               candidate_only=test.candidate_only,
                                               decidable=len(summaries) >= m.MIN_ITEMS_TO_DECIDE)
    return out


def _seed_noise(records: Sequence[Record], stick: Stick) -> float | None:
    """Mean ΔS between the reference's answers to the same prompt under different seeds: how far
    answers move by sampling alone, the noise floor that answer drift is judged against."""
    by_prompt: dict[tuple, list[str]] = defaultdict(list)
    for r in records:
        by_prompt[(r.item, r.prompt)].append(r.reference.answer)
    pairs = [(a[0], a[1]) for a in by_prompt.values() if len(a) >= 2]
    if not pairs:
        return None
    return float(np.mean([stick.answer_ds(a, b) for a, b in pairs]))


def probe_flips(runs: dict[str, dict], stick: Stick) -> dict[str, dict]:
    """Per variant: share of probes whose answer flips against the same variant's base run (question, first seed)."""
    out = {}
    for name in VARIANTS:
        base = {r["item"]: r["answers"][0]["text"] for r in runs[name]["runs"] if r["prompt"] == 0}
        flips, details = [], []
        for p in runs[name]["probes"]:
            answer, reference = p["answers"][0]["text"], base[p["item"]]
            ds = stick.answer_ds(answer, reference)
            flipped = ds > PROBE_FLIP_DS or cited_sections(answer)[:1] != cited_sections(reference)[:1]
            flips.append(flipped)
            details.append({"item": p["item"], "probe": p["probe"], "ds": round(ds, 4), "flipped": flipped})
        out[name] = {"rate": float(np.mean(flips)) if flips else None, "probes": details}
    return out


def probe_metrics(flips: dict[str, dict], min_probes: int) -> dict[str, Measurement]:
    """Flip rate per variant and the candidate's excess; fewer than `min_probes` probes decide nothing."""
    out = {"probes.flip_rate": Measurement.of_variants(flips["reference"]["rate"], flips["candidate"]["rate"])}
    n_probes = len(flips["candidate"]["probes"])
    if flips["candidate"]["rate"] is None:
        out["probes.flip_excess"] = Measurement.not_measured("probes are off (probes.items: 0)")
    elif n_probes < min_probes:
        out["probes.flip_excess"] = Measurement.not_measured(f"only {n_probes} probes, too few to decide "
                                                             f"(need {min_probes}; raise probes.items)")
    else:
        out["probes.flip_excess"] = Measurement.paired(flips["candidate"]["rate"] - flips["reference"]["rate"])
    return out
