"""From the two variants' raw runs to per-run records, per-item summaries and suite metrics.

Pure given the Stick (the measuring-stick embeddings): no models here. Records pair the reference
and the candidate on the same item, prompt and seed, which is what every drift figure is over.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from awqguard.gates import metrics as m
from awqguard.gates.fixtures import Item, Suite
from awqguard.gates.scoring import (Evidence, Stick, cited_sections, evidence_for, score_answer, score_retrieval,
                                    step_trace)

VARIANTS = ("reference", "candidate")
PROBE_FLIP_DS = 0.20


def _texts(variant_run: dict) -> list[str]:
    return [a["text"] for r in variant_run["runs"] + variant_run["probes"] for a in r["answers"] if a["text"]]


def prepare_stick(stick: Stick, suite: Suite, items: Sequence[Item], chunks, runs: dict[str, dict]) -> dict[str, Evidence]:
    """Embed everything the metrics compare, in one pass per text."""
    evidence = {it.id: evidence_for(suite, it) for it in items}
    texts = [c.text for c in chunks]
    for it in items:
        ev = evidence[it.id]
        texts += list(it.prompts) + ev.anchor_pieces + ev.distractor_pieces
    for run in runs.values():
        texts += _texts(run)
    stick.add(texts)
    return evidence


def build_records(suite: Suite, items: Sequence[Item], chunks, runs: dict[str, dict], stick: Stick,
                  evidence: dict[str, Evidence]) -> list[dict]:
    """One record per (item, prompt, seed), holding both variants' retrieval, answer and metrics."""
    by_item = {it.id: it for it in items}
    ref_runs = runs["reference"]["runs"]
    cand_runs = runs["candidate"]["runs"]
    records = []
    for r_ref, r_cand in zip(ref_runs, cand_runs):
        item = by_item[r_ref["item"]]
        ev = evidence[item.id]
        sides = {}
        for name, r in (("reference", r_ref), ("candidate", r_cand)):
            chunk_list = [chunks[i] for i in r["chunk_ids"]]
            sides[name] = (r, score_retrieval(stick, suite, item, ev, r["question"], [c.text for c in chunk_list],
                                              [c.span for c in chunk_list]))
        for j, seed_answer in enumerate(r_ref["answers"]):
            rec = {"item": item.id, "kind": item.kind, "prompt": r_ref["prompt"], "seed": seed_answer["seed"],
                   "question": r_ref["question"]}
            for name, (r, retrieval) in sides.items():
                a = r["answers"][j]
                aborted = not a["text"].strip()
                side = {"retrieved": r["retrieved"], "answer": a["text"], "tokens": a["tokens"],
                        "aborted": aborted, "loop": a["loop"], **retrieval,
                        **score_answer(stick, item, ev, r["question"], a["text"], aborted)}
                side["hit"] = m.Run(side["ds_aa"], aborted, side["cites_anchor"]).hit
                if item.kind == "json":
                    side["json_valid"] = m.json_valid(a["text"], item.schema)
                if item.kind == "long" and not aborted:
                    side["step_labels"] = m.step_labels(step_trace(stick, ev, a["text"]))
                rec[name] = side
            ref_a, cand_a = rec["reference"]["answer"], rec["candidate"]["answer"]
            rec["drift"] = {
                "answer_ds": stick.answer_ds(ref_a, cand_a),
                "same_top1": rec["reference"]["retrieved"][:1] == rec["candidate"]["retrieved"][:1]
                and r_ref["chunk_ids"][:1] == r_cand["chunk_ids"][:1],
                **{k: abs(rec["candidate"][k] - rec["reference"][k]) for k in ("ds_qr", "coverage", "ds_aa")}}
            records.append(rec)
    return records


def item_summaries(records: Sequence[dict], stick: Stick, seeds_vary: bool = True) -> dict[str, dict]:
    """Per item and variant: λ across its runs and the means of its run metrics; plus per-item drift.
    `seeds_vary` is False under greedy decoding, where there is no sampling noise floor."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        grouped[rec["item"]].append(rec)
    out = {}
    for item_id, recs in grouped.items():
        first = recs[0]                                  # the question itself under the first seed
        summary = {"kind": first["kind"], "question": first["question"]}
        for name in VARIANTS:
            sides = [r[name] for r in recs]
            answers = [s["answer"] for s in sides if s["answer"]]
            if len(answers) >= 2:
                stick.add(answers)
                agreement = float(np.median(m.pairwise_delta_s(np.stack([stick.vectors[a] for a in answers]))))
            else:
                agreement = 0.0 if answers else 1.0
            runs = [m.Run(s["ds_aa"], s["aborted"], s["cites_anchor"]) for s in sides]
            summary[name] = {
                "lambda": m.lambda_label(runs, agreement), "agreement": agreement,
                "hit_rate": float(np.mean([r.hit for r in runs])),
                **{k: float(np.mean([s[k] for s in sides])) for k in
                   ("ds_qr", "ds_qr_topk", "ds_ra", "ds_aa", "ds_aq", "coverage", "gap_answer", "gap_chunk")},
                "loop_rate": float(np.mean([s["loop"] for s in sides])),
                "retrieved": first[name]["retrieved"], "answer": first[name]["answer"],
            }
            if summary["kind"] == "json":
                summary[name]["json_valid"] = float(np.mean([s["json_valid"] for s in sides]))
        summary["drift"] = {k: float(np.mean([r["drift"][k] for r in recs])) for k in ("answer_ds", "ds_qr", "coverage", "ds_aa")}
        spread = m.paired_bootstrap([r["drift"]["answer_ds"] for r in recs], [0.0] * len(recs))
        summary["drift"]["answer_ds_ci"] = [spread.low, spread.high]    # over the item's prompts and seeds
        noise = _seed_noise(recs, stick) if seeds_vary else None
        summary["drift"]["seed_noise"] = noise
        summary["drift"]["answer_ds_excess"] = summary["drift"]["answer_ds"] - (noise or 0.0)
        out[item_id] = summary
    return out


def worst(items: dict[str, dict], key, n: int = 3, reverse: bool = True) -> list[dict]:
    """The n items with the largest (or smallest) value of key(summary)."""
    ranked = sorted(items.items(), key=lambda kv: key(kv[1]), reverse=reverse)[:n]
    return [{"item": i, "value": round(float(key(s)), 4)} for i, s in ranked]


def suite_metrics(items: dict[str, dict], records: Sequence[dict]) -> dict[str, dict]:
    """Suite-level metrics: {name: {"reference": x, "candidate": y}} or {name: {"value": x}} for paired ones."""
    out: dict[str, dict] = {}

    def both(name: str, fn) -> None:
        out[name] = {v: fn(v) for v in VARIANTS}

    summaries = list(items.values())
    both("ds_qr.mean", lambda v: float(np.mean([s[v]["ds_qr"] for s in summaries])))
    both("ds_qr.item_max", lambda v: float(np.max([s[v]["ds_qr"] for s in summaries])))
    both("ds_qr.topk_mean", lambda v: float(np.mean([s[v]["ds_qr_topk"] for s in summaries])))
    both("ds_ra.mean", lambda v: float(np.mean([s[v]["ds_ra"] for s in summaries])))
    both("coverage.mean", lambda v: float(np.mean([s[v]["coverage"] for s in summaries])))
    both("ds_aa.mean", lambda v: float(np.mean([s[v]["ds_aa"] for s in summaries])))
    both("hit.rate", lambda v: float(np.mean([s[v]["hit_rate"] for s in summaries])))
    both("lambda.convergence_rate", lambda v: float(np.mean([s[v]["lambda"] == m.CONVERGENT for s in summaries])))
    both("lambda.chaotic_count", lambda v: float(sum(s[v]["lambda"] == m.CHAOTIC for s in summaries)))
    both("lambda.chaotic_share", lambda v: float(np.mean([s[v]["lambda"] == m.CHAOTIC for s in summaries])))
    both("lambda.split_share", lambda v: float(np.mean([s[v]["lambda"] == m.SPLIT for s in summaries])))
    both("lambda.divergent_count", lambda v: float(sum(s[v]["lambda"] == m.DIVERGENT for s in summaries)))
    both("anchor_gap.answer_mean", lambda v: float(np.mean([s[v]["gap_answer"] for s in summaries])))
    both("anchor_gap.chunk_mean", lambda v: float(np.mean([s[v]["gap_chunk"] for s in summaries])))
    both("anchor_gap.flattened_share", lambda v: float(np.mean([s[v]["gap_answer"] <= 0.05 for s in summaries])))
    both("loops.rate", lambda v: float(np.mean([r[v]["loop"] for r in records])))
    steps = {v: [lab for r in records if "step_labels" in r[v] for lab in r[v]["step_labels"]] for v in VARIANTS}
    both("lambda_steps.chaotic_share",
         lambda v: float(np.mean([lab == m.CHAOTIC for lab in steps[v]])) if steps[v] else None)
    json_items = [s for s in summaries if s["kind"] == "json"]
    both("json.validity", lambda v: float(np.mean([s[v]["json_valid"] for s in json_items])) if json_items else None)
    if json_items:
        out["json.validity_drop"] = {"value": out["json.validity"]["reference"] - out["json.validity"]["candidate"]}
    else:
        out["json.validity_drop"] = {"value": None, "reason": "the suite has no json items"}

    drift = [s["drift"]["answer_ds"] for s in summaries]
    ci = m.paired_bootstrap(drift, [0.0] * len(drift))
    out["drift.answer_ds_mean"] = {"value": ci.mean, "ci": [ci.low, ci.high], "n": ci.n, "decidable": ci.decidable}
    out["drift.answer_ds_item_max"] = {"value": float(np.max(drift))}
    noise = [s["drift"]["seed_noise"] for s in summaries]
    if any(n is None for n in noise):        # one seed, or greedy: no noise floor, drift is judged as it is
        out["drift.seed_noise"] = {"value": None, "reason": "needs two seeds with sampled decoding"}
        noise = [0.0] * len(noise)
    else:
        out["drift.seed_noise"] = {"value": float(np.mean(noise))}
    ci = m.paired_bootstrap(drift, noise)
    out["drift.answer_ds_excess"] = {"value": ci.mean, "ci": [ci.low, ci.high], "n": ci.n, "decidable": ci.decidable}
    out["drift.answer_ds_item_excess_max"] = {"value": float(np.max([s["drift"]["answer_ds_excess"] for s in summaries]))}
    for key in ("ds_qr", "coverage", "ds_aa"):
        ref = [s["reference"][key] for s in summaries]
        cand = [s["candidate"][key] for s in summaries]
        ci = m.paired_bootstrap(cand, ref)
        out[f"drift.{key}"] = {"value": ci.mean, "ci": [ci.low, ci.high], "n": ci.n, "decidable": ci.decidable}
    out["retrieval.top1_agreement"] = {"value": float(np.mean([r["drift"]["same_top1"] for r in records]))}
    test = m.mcnemar([s["reference"]["lambda"] == m.CONVERGENT for s in summaries],
                     [s["candidate"]["lambda"] == m.CONVERGENT for s in summaries])
    out["lambda.mcnemar"] = {"value": test.p_value, "reference_only": test.reference_only,
                             "candidate_only": test.candidate_only,
                             "decidable": len(summaries) >= m.MIN_ITEMS_TO_DECIDE}
    return out


def _seed_noise(records: Sequence[dict], stick: Stick) -> float | None:
    """Mean ΔS between the reference's answers to the same prompt under different seeds: how far
    answers move by sampling alone, the noise floor that answer drift is judged against."""
    by_prompt: dict[tuple, list[str]] = defaultdict(list)
    for r in records:
        by_prompt[(r["item"], r["prompt"])].append(r["reference"]["answer"])
    pairs = [(a[0], a[1]) for a in by_prompt.values() if len(a) >= 2]
    if not pairs:
        return None
    stick.add([x for p in pairs for x in p if x])
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
