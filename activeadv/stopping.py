"""When to stop asking for labels: stabilizing predictions (Bloodgood & Vijay-Shanker, CoNLL 2009).

A labeling budget is usually a guess.  The rule here needs no held-out labels:
keep a fixed *stop set* of pool items (labeled or not, never changed), predict
it after every round, and measure how much consecutive rounds' models agree
with Cohen's kappa.  When the mean kappa of the last ``window`` rounds reaches
``threshold`` (the paper's 0.99 over 3 rounds), new labels no longer change
what the model says, and further rounds mostly spend money.

Pure numpy: ``simulation.simulate`` and ``loop`` compute the agreements, the
store keeps one per round, and ``status`` / ``report`` / ``run --until-stable``
read the rule back from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from activeadv.errors import ConfigError

STOP_SET_SIZE = 2000


def stop_set(ids: np.ndarray, size: int = STOP_SET_SIZE, seed: int = 0) -> np.ndarray:
    """A fixed random subset of ``ids`` (sorted): the same for every round of a project or a simulation."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa between two label vectors: 1 = identical, 0 = chance agreement.

    Two constant, identical vectors (chance agreement 1) count as full agreement.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kappa needs two label vectors of one length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        return float("nan")
    observed = float((a == b).mean())
    pa = np.bincount(a, minlength=num_classes) / len(a)
    pb = np.bincount(b, minlength=num_classes) / len(b)
    expected = float((pa * pb).sum())
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class StabilizingPredictions:
    """Stop when the mean agreement of the last ``window`` rounds is at least ``threshold``."""

    window: int = 3
    threshold: float = 0.99

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f"stopping window must be >= 1, got {self.window}")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"stopping threshold must be in (0, 1], got {self.threshold}")

    def fired(self, agreements: Sequence[float | None]) -> bool:
        """Whether the rule holds after the last of ``agreements`` (one per round; None = no previous model)."""
        recent = list(agreements)[-self.window :]
        if len(recent) < self.window or any(a is None or not np.isfinite(a) for a in recent):
            return False
        return float(np.mean(recent)) >= self.threshold  # type: ignore[arg-type]

    def first_fired(self, agreements: Sequence[float | None]) -> int | None:
        """Index of the first round after which the rule held, or None."""
        values = list(agreements)
        for end in range(1, len(values) + 1):
            if self.fired(values[:end]):
                return end - 1
        return None
