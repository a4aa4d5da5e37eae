"""The measure stage: from the two variants' raw runs to per-run records, per-item summaries and
suite metrics (docs/architecture.md §9).

`embed_texts` is the one step that runs the measuring-stick embedder; everything after it is a pure
function of the runs and the Stick's embeddings. Records pair the reference and the candidate on
the same item, prompt and seed, which is what every drift figure is over.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Sequence

import numpy as np

from awqguard.gates import metrics as m
from awqguard.gates.document import Measurement
from awqguard.gates.fixtures import Item, Suite
from awqguard.gates.resample import STATISTICS, Resampler
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
                  evidence: dict[str, Evidence], shown: int) -> list[Record]:
    """One record per (item, prompt, seed), holding both variants' retrieval, answer and metrics;
    `shown` is how many top chunks a prompt shows (whether both prompts held the same context)."""
    by_item = {it.id: it for it in items}
    records = []
    for r_ref, r_cand in zip(runs["reference"]["runs"], runs["candidate"]["runs"]):
        item = by_item[r_ref["item"]]
        ev = evidence[item.id]
        retrieval = {name: _retrieval(stick, suite, item, ev, r, chunks) for name, r in
                     (("reference", r_ref), ("candidate", r_cand))}
        same_context = r_ref["chunk_ids"][:shown] == r_cand["chunk_ids"][:shown]
        for j, seed_answer in enumerate(r_ref["answers"]):
            ref = _run_side(stick, item, ev, r_ref, j, retrieval["reference"])
            cand = _run_side(stick, item, ev, r_cand, j, retrieval["candidate"])
            drift = RecordDrift(stick.answer_ds(ref.answer, cand.answer),
                                ref.retrieved[:1] == cand.retrieved[:1] and r_ref["chunk_ids"][:1] == r_cand["chunk_ids"][:1],
                                same_context,
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


def item_summaries(records: Sequence[Record], stick: Stick, resampler: Resampler,
                   seeds_vary: bool = True) -> dict[str, ItemSummary]:
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
                                   _item_drift(recs, stick, resampler, seeds_vary))
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
        json_valid=mean("json_valid") if recs[0].kind == "json" else None,
        bad_miss_rate=float(np.mean([r.misses_badly for r in runs])))


def _item_drift(recs: Sequence[Record], stick: Stick, resampler: Resampler, seeds_vary: bool) -> ItemDrift:
    """The item's answer drift and its noise floor, and its drift on the runs whose prompts showed
    the variants different chunks (retrieval_answer_ds)."""
    mean = lambda key: float(np.mean([getattr(r.drift, key) for r in recs]))
    answer_ds = [r.drift.answer_ds for r in recs]
    noise = _seed_noise(recs, stick) if seeds_vary else None
    excess = mean("answer_ds") - (noise or 0.0)
    changed = [r.drift.answer_ds for r in recs if not r.drift.same_context]
    return ItemDrift(mean("answer_ds"), mean("ds_qr"), mean("coverage"), mean("ds_aa"),
                     list(resampler.interval(answer_ds)), noise, excess, 1.0 - len(changed) / len(recs),
                     float(np.mean(changed)) if changed else None)


def matched_records(records: Sequence[Record]) -> list[Record]:
    """The runs whose prompts showed both variants the same chunks in the same order: what differs
    between their answers can only come from the generator."""
    return [r for r in records if r.drift.same_context]


def suite_metrics(items: dict[str, ItemSummary], records: Sequence[Record], resampler: Resampler,
                  generator: dict[str, ItemSummary], retrieval_shared: bool = False) -> dict[str, Measurement]:
    """Suite-level metrics with their intervals over items: a value per variant, or one value for
    paired figures (drift). Retrieval figures are over every run (`items`); figures about answers
    over the runs whose prompts matched (`generator`: the item summaries of `matched_records`), so
    a changed retrieval is never blamed on the generator. `retrieval_shared` says both variants use
    one retriever, so the retrieval figures cannot move."""
    retrieval = _variant_metrics(RETRIEVAL_FIGURES, items, resampler)
    if retrieval_shared:
        fixed = "both variants retrieve with the same retriever, so retrieval cannot differ"
        retrieval = {k: dataclasses.replace(v, fixed=fixed) for k, v in retrieval.items()}
    generator_drift = float(np.mean([s.drift.answer_ds for s in generator.values()])) if generator else 0.0
    return {**retrieval, **_variant_metrics(ANSWER_FIGURES, generator, resampler),
            **_step_metrics(matched_records(records)), **_json_metrics(generator, resampler),
            **_drift_metrics(generator, resampler), **_retrieval_drift(items, records, resampler, generator_drift)}


_side = lambda key: lambda s, v: float(getattr(s.side(v), key))
_label = lambda label: lambda s, v: float(s.side(v).lambda_label == label)
RETRIEVAL_FIGURES = {      # metric -> (per-item figure of a variant, statistic over items)
    "ds_qr.mean": (_side("ds_qr"), "mean"), "ds_qr.item_max": (_side("ds_qr"), "max"),
    "ds_qr.topk_mean": (_side("ds_qr_topk"), "mean"), "ds_ra.mean": (_side("ds_ra"), "mean"),
    "coverage.mean": (_side("coverage"), "mean"), "anchor_gap.chunk_mean": (_side("gap_chunk"), "mean"),
}
ANSWER_FIGURES = {
    "ds_aa.mean": (_side("ds_aa"), "mean"), "hit.rate": (_side("hit_rate"), "mean"),
    "lambda.convergence_rate": (_label(m.CONVERGENT), "mean"), "lambda.chaotic_count": (_label(m.CHAOTIC), "sum"),
    "lambda.chaotic_share": (_label(m.CHAOTIC), "mean"), "lambda.split_share": (_label(m.SPLIT), "mean"),
    "lambda.bad_miss_rate": (_side("bad_miss_rate"), "mean"),
    "lambda.divergent_count": (_label(m.DIVERGENT), "sum"),
    "anchor_gap.answer_mean": (_side("gap_answer"), "mean"),
    "anchor_gap.flattened_share": (lambda s, v: float(s.side(v).gap_answer <= 0.05), "mean"),
    "loops.rate": (_side("loop_rate"), "mean"),
}


def _variant_metrics(figures: dict, items: dict[str, ItemSummary], resampler: Resampler) -> dict[str, Measurement]:
    summaries = list(items.values())
    out = {}
    for name, (figure, statistic) in figures.items():
        if not summaries:
            out[name] = Measurement.not_measured("no run's retrieval matched between the variants")
            continue
        values = {v: [figure(s, v) for s in summaries] for v in VARIANTS}
        fn = STATISTICS[statistic]
        out[name] = Measurement.of_variants(
            float(fn(np.array(values["reference"]))), float(fn(np.array(values["candidate"]))),
            resampler.interval(values["candidate"], statistic),
            resampler.paired(values["candidate"], values["reference"], statistic), len(summaries),
            resampler.interval(values["reference"], statistic))
    return out


def _step_metrics(records: Sequence[Record]) -> dict[str, Measurement]:
    steps = {v: [lab for r in records for lab in (r.side(v).step_labels or [])] for v in VARIANTS}
    share = {v: float(np.mean([lab == m.CHAOTIC for lab in steps[v]])) if steps[v] else None for v in VARIANTS}
    return {"lambda_steps.chaotic_share": Measurement.of_variants(share["reference"], share["candidate"])}


def _json_metrics(items: dict[str, ItemSummary], resampler: Resampler) -> dict[str, Measurement]:
    json_items = [s for s in items.values() if s.kind == "json"]
    if not json_items:
        return {"json.validity": Measurement.of_variants(None, None),
                "json.validity_drop": Measurement.not_measured("the suite has no json items with a run whose retrieval matched")}
    valid = {v: [s.side(v).json_valid for s in json_items] for v in VARIANTS}
    ref, cand = float(np.mean(valid["reference"])), float(np.mean(valid["candidate"]))
    drop = Measurement(value=ref - cand, ci=resampler.paired(valid["reference"], valid["candidate"]),
                       n=len(json_items), worst=ref)        # the most it can drop is all the reference has
    return {"json.validity": Measurement.of_variants(ref, cand), "json.validity_drop": drop}


def _mean(values: Sequence[float], resampler: Resampler, statistic: str = "mean", **details) -> Measurement:
    return Measurement.paired(float(STATISTICS[statistic](np.asarray(values, dtype=np.float64))),
                              resampler.interval(values, statistic), n=len(values), **details)


def _drift_metrics(items: dict[str, ItemSummary], resampler: Resampler) -> dict[str, Measurement]:
    """Generator drift, over the items whose retrieval matched."""
    summaries = list(items.values())
    if not summaries:
        reason = "no run's retrieval matched between the variants"
        return {k: Measurement.not_measured(reason) for k in ("drift.answer_ds_mean", "drift.answer_ds_excess",
                                                              "drift.answer_ds_item_excess_max")}
    drift = [s.drift.answer_ds for s in summaries]
    out = {"drift.answer_ds_mean": _mean(drift, resampler), "drift.answer_ds_item_max": _mean(drift, resampler, "max")}
    if any(s.drift.seed_noise is None for s in summaries):   # one seed, or greedy: drift is judged as it is
        out["drift.seed_noise"] = Measurement.not_measured("needs two seeds with sampled decoding")
    else:
        out["drift.seed_noise"] = _mean([s.drift.seed_noise for s in summaries], resampler)
    excess = [s.drift.answer_ds_excess for s in summaries]
    out["drift.answer_ds_excess"] = _mean(excess, resampler)
    out["drift.answer_ds_item_excess_max"] = _mean(excess, resampler, "max")
    out["drift.ds_aa"] = _paired_diff(summaries, "ds_aa", resampler)
    test = m.mcnemar([s.reference.lambda_label == m.CONVERGENT for s in summaries],
                     [s.candidate.lambda_label == m.CONVERGENT for s in summaries])
    out["lambda.mcnemar"] = Measurement.paired(test.p_value, reference_only=test.reference_only,
                                               candidate_only=test.candidate_only)
    return out


def _paired_diff(summaries: Sequence[ItemSummary], key: str, resampler: Resampler) -> Measurement:
    cand, ref = [getattr(s.candidate, key) for s in summaries], [getattr(s.reference, key) for s in summaries]
    return Measurement.paired(float(np.mean(cand) - np.mean(ref)), resampler.paired(cand, ref), n=len(cand))


def _retrieval_drift(items: dict[str, ItemSummary], records: Sequence[Record], resampler: Resampler,
                     generator_drift: float) -> dict[str, Measurement]:
    """How retrieval differs between the variants, and what it added to the answer drift: on each
    item's changed runs, the drift beyond the larger of the item's seed noise and the generator's
    own mean drift on the matched runs (so a generator that drifts everywhere is not blamed on
    retrieval, nor a reseed-sized change on a coupled sampler)."""
    summaries = list(items.values())
    changed = [s for s in summaries if s.drift.retrieval_answer_ds is not None]
    share = lambda flags: float(np.mean(flags)) if flags else None
    out = {"drift.ds_qr": _paired_diff(summaries, "ds_qr", resampler),
           "drift.coverage": _paired_diff(summaries, "coverage", resampler),
           "retrieval.top1_agreement": Measurement.paired(share([r.drift.same_top1 for r in records])),
           "retrieval.changed_share": Measurement.paired(
               share([not r.drift.same_context for r in records]), items_with_changed_runs=len(changed))}
    if changed:
        excess = [s.drift.retrieval_answer_ds - max(s.drift.seed_noise or 0.0, generator_drift) for s in changed]
        out["drift.retrieval_answer_ds_excess"] = _mean(excess, resampler, generator_drift=generator_drift)
    else:
        out["drift.retrieval_answer_ds_excess"] = Measurement.not_measured(
            "every run showed both variants the same chunks: retrieval moved no answer")
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


def probe_metrics(flips: dict[str, dict], resampler: Resampler) -> dict[str, Measurement]:
    """Flip rate per variant and the candidate's excess, with its interval over probes."""
    out = {"probes.flip_rate": Measurement.of_variants(flips["reference"]["rate"], flips["candidate"]["rate"])}
    if flips["candidate"]["rate"] is None:
        out["probes.flip_excess"] = Measurement.not_measured("probes are off (probes.items: 0)")
        return out
    cand = [float(p["flipped"]) for p in flips["candidate"]["probes"]]
    ref = [float(p["flipped"]) for p in flips["reference"]["probes"]]
    out["probes.flip_excess"] = Measurement(value=float(np.mean(cand) - np.mean(ref)), ci=resampler.paired(cand, ref),
                                            n=len(cand), worst=1.0 - float(np.mean(ref)))
    return out
