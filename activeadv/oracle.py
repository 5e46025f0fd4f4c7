"""Whoever answers label requests.

``Oracle`` is the seam between the loop and the people (or the simulation):
``request`` hands over a selection, ``collect`` returns whatever labels are
ready without blocking.  ``SimulatedOracle`` answers at once from a dataset's
hidden ground truth, optionally with a seeded error rate, so that the whole
loop (and label-efficiency curves) can run with no annotation server.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from activeadv.data import Pool
from activeadv.errors import ConfigError
from activeadv.records import Annotation, Selection


class Oracle(Protocol):
    """``request`` hands a selection over; ``collect`` returns the labels ready now (never blocks); ``commit`` is
    called once the labels of the last ``collect`` are stored, so an oracle with a cursor (Label Studio) moves it
    only then and a crash in between pulls the same labels again (the store ignores repeats)."""

    def request(self, selection: Selection, round_id: int) -> None: ...

    def collect(self) -> list[Annotation]: ...

    def commit(self) -> None: ...


class NoOracle:
    """Nobody is asked: requests stay in the database until labels arrive by ``activeadv labels import``."""

    def request(self, selection: Selection, round_id: int) -> None:
        return None

    def collect(self) -> list[Annotation]:
        return []

    def commit(self) -> None:
        return None


class SimulatedOracle:
    """Reveals the true label of every requested item (wrong with probability ``error_rate``)."""

    def __init__(self, pool: Pool, error_rate: float = 0.0, seed: int = 0) -> None:
        if not pool.has_targets:
            raise ConfigError("the simulated oracle needs a dataset with known labels")
        if not 0.0 <= error_rate <= 1.0:
            raise ConfigError(f"error rate must be in [0, 1], got {error_rate}")
        self.pool = pool
        self.error_rate = error_rate
        self._rng = np.random.default_rng(seed)
        self._pending: list[int] = []

    def answer(self, item_ids: np.ndarray) -> np.ndarray:
        """Class indices for ``item_ids`` as this oracle would label them."""
        truth = self.pool.targets(item_ids).copy()
        if self.error_rate > 0:
            wrong = self._rng.random(len(truth)) < self.error_rate
            shift = self._rng.integers(1, self.pool.num_classes, size=len(truth))
            truth[wrong] = (truth[wrong] + shift[wrong]) % self.pool.num_classes
        return truth

    def request(self, selection: Selection, round_id: int) -> None:
        self._pending.extend(int(i) for i in selection.item_ids)

    def collect(self) -> list[Annotation]:
        if not self._pending:
            return []
        ids = np.array(self._pending, dtype=np.int64)
        self._pending = []
        names = self.pool.class_names
        return [Annotation(item_id=int(i), label=names[int(c)], source="oracle", annotator="simulated")
                for i, c in zip(ids, self.answer(ids))]

    def commit(self) -> None:
        return None  # answers are computed, nothing to acknowledge
