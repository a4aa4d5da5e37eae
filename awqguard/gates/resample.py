"""Intervals by resampling units (docs/architecture.md §10a): pure functions of per-unit values.

A unit is what varies together: a suite item (its question, paraphrases and seeds), a long
continuation, a perplexity window. A gate decides on the end of its 95% interval that is worse for
the candidate, so a verdict does not flip on which items a suite happens to hold. The generator is
seeded from the suite's digest and the unit count, so anyone can recompute an interval from
items.jsonl and get the same figures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {   # over the last axis of resampled values
    "mean": lambda x: x.mean(axis=-1), "max": lambda x: x.max(axis=-1), "sum": lambda x: x.sum(axis=-1)}


@dataclass(frozen=True)
class Resampler:
    """Bootstrap settings shared by every gate of one check."""

    seed: int = 0
    resamples: int = 2000
    confidence: float = 0.95

    @classmethod
    def for_suite(cls, digest: str, resamples: int = 2000, confidence: float = 0.95) -> "Resampler":
        return cls(int(hashlib.sha256(digest.encode()).hexdigest()[:8], 16), resamples, confidence)

    def indices(self, n: int) -> np.ndarray:
        """[resamples, n] unit indices drawn with replacement; the same draw for every figure on n units."""
        rng = np.random.default_rng([self.seed, n])
        return rng.integers(0, n, size=(self.resamples, n))

    def _bounds(self, draws: np.ndarray) -> tuple[float, float]:
        alpha = (1 - self.confidence) / 2
        return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))

    def interval(self, values: Sequence[float], statistic: str = "mean") -> tuple[float, float]:
        """The interval of `statistic` over per-unit `values`."""
        x = np.asarray(values, dtype=np.float64)
        return self._bounds(STATISTICS[statistic](x[self.indices(len(x))]))

    def paired(self, candidate: Sequence[float], reference: Sequence[float],
               statistic: str = "mean") -> tuple[float, float]:
        """The interval of statistic(candidate) − statistic(reference), units resampled together."""
        c, r = np.asarray(candidate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
        idx = self.indices(len(c))
        fn = STATISTICS[statistic]
        return self._bounds(fn(c[idx]) - fn(r[idx]))

    def of(self, n: int, statistic: Callable[[np.ndarray], float]) -> tuple[float, float]:
        """The interval of any statistic of a resample, given as its unit indices (curves, ratios)."""
        return self.of_each(n, lambda idx: (statistic(idx),))[0]

    def of_each(self, n: int, statistics: Callable[[np.ndarray], Sequence[float]]) -> list[tuple[float, float]]:
        """The intervals of several figures computed together from each resample (one pass, not one per figure)."""
        draws = np.array([statistics(row) for row in self.indices(n)], dtype=np.float64)
        return [self._bounds(draws[:, j]) for j in range(draws.shape[1])]
