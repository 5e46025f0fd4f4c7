"""Plain frozen records handed between modules.

They hold numpy arrays and stdlib types only, so that the store, the oracle and
the Label Studio adapter never need torch.  Item ids are always the one id space
of the project (database key == ``task.data.item_id`` == ``Pool`` id), never
positions inside a subset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class Selection:
    """Items chosen in one round, best first.

    ``scores`` are the strategy's scores (higher = asked first); ``predicted``
    and ``confidence`` are the model's prediction for each item (class index
    and its softmax probability), sent to annotators as pre-annotations.
    """

    item_ids: np.ndarray  # (n,) int64
    scores: np.ndarray  # (n,) float64
    strategy: str
    predicted: np.ndarray | None = None  # (n,) int64 class index
    confidence: np.ndarray | None = None  # (n,) float64 in [0, 1]

    def __len__(self) -> int:
        return int(len(self.item_ids))


@dataclass(frozen=True)
class Annotation:
    """One label given to one item by someone (a person, an import, an oracle).

    ``label`` is a class *name* as the annotator typed it; validating it against
    the project's classes is the receiver's job, so an unknown label can be
    kept aside and reported instead of silently dropped.
    """

    item_id: int
    label: str | None  # None when the task was skipped / cancelled
    source: str = "oracle"  # seed | annotator | import | oracle
    annotator: str | None = None
    external_id: str | None = None  # e.g. Label Studio annotation id
    created_at: datetime | None = None
    skipped: bool = False


@dataclass(frozen=True)
class EvalMetrics:
    """Test accuracy of one model: clean and under attacks at the training eps."""

    accuracy: float
    fgsm_accuracy: float | None = None
    pgd_accuracy: float | None = None
    n: int = 0


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: accuracy after training on ``labels`` labels."""

    strategy: str
    seed: int
    round: int
    labels: int
    accuracy: float
    fgsm_accuracy: float | None = None


@dataclass(frozen=True)
class RoundResult:
    """What one active-learning round did, with per-phase wall-clock seconds."""

    round: int
    labels: int
    metrics: EvalMetrics
    selection: Selection | None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectedAnnotation:
    """An annotation refused on sync: its label is not one of the project's classes
    (or it has no / several choices).  Reported to the user, never trained on."""

    item_id: int | None  # None when the task carries no usable item_id
    label: str | None
    reason: str
    annotator: str | None = None
    external_id: str | None = None  # e.g. Label Studio annotation id
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Disagreement:
    """Annotators of one item did not agree.  ``label`` is the majority class name,
    None on a tie (then flagged and not trained on until someone breaks it)."""

    item_id: int
    label: str | None
    votes: dict[str, int]  # class name -> number of annotators who chose it
    tie: bool
