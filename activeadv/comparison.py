"""Paired comparison of two strategies' learning curves, seed by seed.

Every strategy of a simulate seed starts from the same seed labels and model seeds, so the seed-to-seed spread
(0.003-0.005 AULC on MNIST) is shared noise, and the per-seed difference is the thing to test.  A lead in the mean
that is smaller than that spread reads as a win in a table of means; this module says whether it is one.

The test is an exact sign-flip (permutation) test of the mean difference: no normality is assumed, which matters
with the 3-8 seeds a study affords.  Its smallest possible p is 2 / 2**n (0.25 with 3 seeds), so a study that
wants to show p < 0.05 needs at least 6 seeds; the 95% interval (Student t) is reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

MAX_EXACT_SEEDS = 20  # 2**20 sign patterns: exact and still instant


@dataclass(frozen=True)
class PairedDifference:
    """``mine - theirs`` over the seeds both have."""

    seeds: int
    mean: float
    ci_low: float  # 95% Student-t interval of the mean difference (nan with one seed)
    ci_high: float
    ahead: int  # seeds where mine is strictly higher
    p_value: float  # two-sided exact sign-flip test of mean == 0

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready (nan becomes null)."""
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in self.__dict__.items()}


def sign_flip_p(diffs: np.ndarray) -> float:
    """Share of the 2**n sign patterns of ``diffs`` whose mean is at least as far from 0 as the observed one."""
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    if n == 0:
        return float("nan")
    if n > MAX_EXACT_SEEDS:
        raise ValueError(f"sign-flip test is exact up to {MAX_EXACT_SEEDS} seeds, got {n}")
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    flipped = np.abs((signs * diffs).mean(axis=1))
    return float(np.mean(flipped >= abs(diffs.mean()) - 1e-12))


def paired_difference(mine: Mapping[int, float], theirs: Mapping[int, float]) -> PairedDifference | None:
    """Compare two strategies' per-seed values (AULC); None when they share no seed."""
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        return None
    diffs = np.array([mine[s] - theirs[s] for s in seeds], dtype=float)
    mean = float(diffs.mean())
    if len(diffs) > 1:
        half = float(student_t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    else:
        half = float("nan")
    return PairedDifference(seeds=len(seeds), mean=mean, ci_low=mean - half, ci_high=mean + half,
                            ahead=int((diffs > 0).sum()), p_value=sign_flip_p(diffs))
