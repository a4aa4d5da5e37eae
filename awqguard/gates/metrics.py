"""WFGY metrics (docs/architecture.md §9) as pure functions on arrays and strings: no models, no I/O.

ΔS(x, y) = 1 − cos(E(x), E(y)), clipped to [0, 1]; zones < 0.40 stable, 0.40–0.60 transitional,
≥ 0.60 risk. Embeddings come from the measuring-stick embedder, computed elsewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

STABLE, RISK = 0.40, 0.60
HIT_THRESHOLD = 0.40          # a run "hits" when ΔS(answer, anchor) < 0.40
AGREE_THRESHOLD = 0.20        # answers agree when their median pairwise ΔS ≤ 0.20

# ---- ΔS ---------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm == 0, 1.0, norm)


def delta_s(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """ΔS between embeddings a and b ([d] or [n, d], paired row by row)."""
    cos = np.sum(_unit(a) * _unit(b), axis=-1)
    out = np.clip(1.0 - cos, 0.0, 1.0)
    return float(out) if np.ndim(out) == 0 else out


def pairwise_delta_s(vectors: np.ndarray) -> np.ndarray:
    """ΔS of every unordered pair of rows of [n, d] (length n·(n−1)/2)."""
    u = _unit(vectors)
    sims = u @ u.T
    iu = np.triu_indices(len(u), k=1)
    return np.clip(1.0 - sims[iu], 0.0, 1.0)


def zone(ds: float) -> str:
    return "stable" if ds < STABLE else ("transitional" if ds < RISK else "risk")


def anchor_gap(ds_to_distractor: float, ds_to_anchor: float) -> float:
    """How much closer x sits to its anchor than to the distractor; ≤ 0.05 means a flattened boundary."""
    return ds_to_distractor - ds_to_anchor


# ---- coverage -----------------------------------------------------------------------------------

Span = tuple[str, int, int]    # (document, start, end) in one coordinate system (tokens or characters)


def coverage(anchor_spans: Sequence[Span], chunk_spans: Sequence[Span]) -> float:
    """|anchor positions covered by any chunk span| / |anchor positions|, summed over all anchors."""
    total = sum(max(0, e - s) for _, s, e in anchor_spans)
    if total == 0:
        return 0.0
    covered = 0
    for doc, a_start, a_end in anchor_spans:
        pieces = sorted((max(s, a_start), min(e, a_end)) for d, s, e in chunk_spans
                        if d == doc and s < a_end and e > a_start)
        end = a_start
        for s, e in pieces:                      # union of the overlaps, in order
            s = max(s, end)
            if e > s:
                covered += e - s
                end = e
    return covered / total


# ---- λ across runs ------------------------------------------------------------------------------

CONVERGENT, SPLIT, DIVERGENT, CHAOTIC = "→", "<>", "←", "×"


@dataclass(frozen=True)
class Run:
    """One run of an item (a paraphrase under a seed) as λ sees it."""

    ds_answer_anchor: float
    aborted: bool = False          # empty, refused or errored
    cites_anchor: bool = False

    @property
    def hit(self) -> bool:
        return not self.aborted and (self.ds_answer_anchor < HIT_THRESHOLD or self.cites_anchor)

    @property
    def misses_badly(self) -> bool:
        """The run-level form of ×: it misses the anchor with ΔS ≥ 0.60."""
        return not self.hit and self.ds_answer_anchor >= RISK


def lambda_label(runs: Sequence[Run], answer_agreement: float) -> str:
    """λ for one item across its runs. `answer_agreement` = median pairwise ΔS of the answers.

    Precedence: ← any run aborted; × a run misses with ΔS_aa ≥ 0.60; → every run hits and the answers
    agree (≤ 0.20); <> anything else (some hit and some miss, or all hit but the answers disagree).
    """
    if not runs:
        raise ValueError("λ needs at least one run")
    if any(r.aborted for r in runs):
        return DIVERGENT
    if any(r.misses_badly for r in runs):
        return CHAOTIC
    if all(r.hit for r in runs) and answer_agreement <= AGREE_THRESHOLD:
        return CONVERGENT
    return SPLIT


def step_labels(s: Sequence[float], window: int = 5) -> list[str]:
    """λ over the steps of one long answer, from s_t = ΔS(prefix_t, anchor).

    Δ_t = s_t − s_{t−1}; E_t = rolling mean of s over `window` steps. → when Δ ≤ −0.02 and E is not
    rising; <> when |Δ| < 0.02 and E is flat; × when Δ > +0.04; ← otherwise (rising a little, or
    oscillating). The first step has no Δ and is labelled by the second.
    """
    s = np.asarray(s, dtype=np.float64)
    if len(s) < 2:
        return [SPLIT] * len(s)
    e = np.array([s[max(0, t - window + 1): t + 1].mean() for t in range(len(s))])
    labels = []
    for t in range(1, len(s)):
        d, de = s[t] - s[t - 1], e[t] - e[t - 1]
        if d > 0.04:
            labels.append(CHAOTIC)
        elif d <= -0.02 and de <= 0:
            labels.append(CONVERGENT)
        elif abs(d) < 0.02 and abs(de) < 0.02:
            labels.append(SPLIT)
        else:
            labels.append(DIVERGENT)
    return [labels[0]] + labels


# ---- entropy vs length --------------------------------------------------------------------------


def smooth(x: np.ndarray, window: int = 32) -> np.ndarray:
    """Moving average over `window` positions centred on each position; near the edges the window
    slides inward instead of shrinking, so every position averages min(window, len) values and no
    position is decided by a single token."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    width = min(window, n)
    if width == 0:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    lo = np.clip(np.arange(n) - width // 2, 0, n - width)
    return (c[lo + width] - c[lo]) / width


def slope_per_100(h: np.ndarray) -> float:
    """Least-squares slope of entropy per 100 positions."""
    h = np.asarray(h, dtype=np.float64)
    if len(h) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(h)), h, 1)[0] * 100)


def repetition_loop(tokens: Sequence, n: int = 4, repeats: int = 3) -> bool:
    """True when some n-gram occurs at least `repeats` times: the generation is looping."""
    counts: dict[tuple, int] = {}
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= repeats:
            return True
    return False


# ---- JSON answers -------------------------------------------------------------------------------

_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str):
    """The first JSON value in a model's answer (inside ``` fences or bare); raises ValueError if none."""
    candidates = [m.group(1) for m in _FENCED.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for start in (i for i, ch in enumerate(cand) if ch in "{["):
            try:
                return decoder.raw_decode(cand[start:])[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON value found")


def json_valid(text: str, schema: dict) -> bool:
    import jsonschema
    try:
        value = extract_json(text)
    except ValueError:
        return False
    return jsonschema.Draft202012Validator(schema).is_valid(value)


# ---- noise: McNemar -------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemar:
    reference_only: int     # items the reference passes and the candidate fails (b)
    candidate_only: int     # items the candidate passes and the reference fails (c)
    p_value: float


def mcnemar(reference_pass: Sequence[bool], candidate_pass: Sequence[bool]) -> McNemar:
    """Exact McNemar test on paired pass/fail outcomes: binomial test of b vs c at p = 0.5."""
    from scipy.stats import binomtest
    ref, cand = np.asarray(reference_pass, bool), np.asarray(candidate_pass, bool)
    b, c = int((ref & ~cand).sum()), int((~ref & cand).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return McNemar(b, c, p)
