"""The decide stage: every gate judged on its metric, with its worst items, symptoms and notices
(docs/architecture.md §10)."""

from __future__ import annotations

import math

from awqguard.gates.document import GateResult, Measurement, WorstItem, failing_symptoms
from awqguard.gates.fixtures import Item
from awqguard.gates.policy import Decision, Gate
from awqguard.gates.problem_map import SYMPTOMS
from awqguard.gates.records import ItemSummary
from awqguard.gates.registry import Worst

WORST_ITEMS = 3


def decide(gates: list[Gate], metrics: dict[str, Measurement], summaries: dict[str, ItemSummary],
           flips: dict[str, dict], decision: Decision = Decision(),
           generator: dict[str, ItemSummary] | None = None) -> list[GateResult]:
    """Each gate's result; `generator` holds the item summaries of the runs whose retrieval matched,
    which the gates on answers rank their worst items by (default: `summaries`)."""
    generator = summaries if generator is None else generator
    return [g.judge(metrics.get(g.metric), worst_items(g.worst, generator if g.worst and g.worst.answers
                                                       else summaries, flips), decision) for g in gates]


def worst_items(worst: Worst | None, summaries: dict[str, ItemSummary], flips: dict[str, dict],
                n: int = WORST_ITEMS) -> tuple[WorstItem, ...]:
    """The n items that weigh most on a metric, as its declaration says to rank them."""
    if worst is None:
        return ()
    if worst.side == "probes":
        return tuple(WorstItem(p["item"], p["ds"], p["probe"]) for p in flips["candidate"]["probes"]
                     if p["flipped"])[:n]
    key = lambda item: getattr(getattr(item[1], worst.side), worst.key)
    ranked = {i: s for i, s in summaries.items()
              if (worst.kind is None or s.kind == worst.kind) and key((i, s)) is not None}
    top = sorted(ranked.items(), key=key, reverse=worst.largest)[:n]
    return tuple(WorstItem(i, round(float(key((i, s))), 4)) for i, s in top)


def symptom_entries(results: list[GateResult]) -> list[dict]:
    """Each symptom a failed or warned gate evidences, with its causes, fixes and those gates."""
    failing = [g for g in results if g.failing]
    out = []
    for symptom_id in failing_symptoms(results):
        s = SYMPTOMS[symptom_id]
        out.append({"id": s.id, "title": s.title, "description": s.description, "causes": list(s.causes),
                    "fixes": list(s.fixes),
                    "gates": [g.id for g in failing if any(x == s.id for x, _ in g.symptoms)]})
    return out


def run_notices(settings, items: list[Item], ref_fingerprint: str, cand_fingerprint: str,
                summaries: dict[str, ItemSummary], decision_min: int = Decision.min_items) -> list[str]:
    """What a reader must know to read this run's verdicts (what could not vary, what is too thin)."""
    out = []
    if settings.decoding.greedy:
        out.append("Greedy decoding: every seed gives the same answer, so λ across runs varies with the "
                   "paraphrases only and drift.seed_noise is not measured.")
    if cand_fingerprint == ref_fingerprint:
        out.append("The candidate is the reference model itself: answers, entropy, perplexity and KL cannot differ; "
                   "only a quantized embedder can move retrieval. This run shows the gates' false-alarm floor.")
    if len(items) < decision_min:
        out.append(f"Only {len(items)} items: fewer than the {decision_min} a gate decides on (decision.min_items), "
                   "so the gates over items are inconclusive.")
    changed = [s.drift.matched_share for s in summaries.values() if s.drift.matched_share < 1]
    if changed:
        runs = round(sum(1 - share for share in changed) / len(summaries) * 100)
        out.append(f"In {runs}% of the runs ({len(changed)} of {len(summaries)} items) the candidate's prompt showed "
                   "other chunks than the reference's: answer drift, λ, the anchor gap and JSON validity are judged "
                   "on the other runs (what the generator changed), and the drift on these is reported as "
                   "retrieval drift.")
    for kind in ("json", "long"):
        if not any(s.kind == kind for s in summaries.values()):
            out.append(f"The suite has no {kind} items: the gates that need them are skipped.")
    return out


def served_notice(reference_served: bool, candidate_served: bool, greedy: bool, order: str) -> list[str]:
    """What the drift gates compare when a variant is served (sampling cannot be coupled over HTTP)."""
    if greedy or reference_served == candidate_served:
        return []
    matched = (" The in-process variant samples as the server does, taking the top-p nucleus before temperature."
               if order == "top-p-first" else "")
    return ["One variant is served and the other runs in this process, so their answers do not share random "
            "numbers: drift is judged against the reference's own seed-to-seed spread (drift.seed_noise), not "
            "against coupled samples." + matched + " Serve both variants the same way, or use decoding.greedy: "
            "true, to compare answers draw for draw."]


def non_finite_notice(metrics: dict[str, Measurement]) -> list[str]:
    names = sorted(name for name, m in metrics.items() if any(not math.isfinite(v) for v in m.numbers()))
    if not names:
        return []
    return [f"Not a finite number (NaN or infinite): {', '.join(names)}. The candidate's outputs overflowed or hold "
            "NaN (look for NaN or zero scales in its checkpoint); these values are written as null and every "
            "gate on them fails as not measurable."]
