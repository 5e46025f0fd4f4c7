"""Plain frozen records handed between modules.

They hold numpy arrays and stdlib types only, so that the store, the oracle and
the Label Studio adapter never need torch.  Item ids are always the one id space
of the project (database key == ``task.data.item_id`` == ``Pool`` id), never
positions inside a subset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


def strategy_text(name: str, params: Mapping[str, object]) -> str:
    """A strategy with every parameter, for display: ``dfal(mode=fast, top_k=10, ...)``, or the bare name.

    What ``repr(Strategy)`` shows; a round stores ``name`` and ``params`` apart
    (``RoundInfo.strategy`` / ``strategy_params``), never this text.
    """
    args = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{name}({args})" if args else name


def strategy_label(name: str, params: Mapping[str, object]) -> str:
    """A strategy in a few characters, for tables: the name, its ``mode`` when it has one, its batch diversity.

    ``dfal(fast)``, ``dfal(exact)+kcenter``, ``entropy+kmeans++``, ``seed``.
    """
    label = f"{name}({params['mode']})" if "mode" in params else name
    diversity = params.get("diversity", "none")
    return label if diversity in (None, "none") else f"{label}+{diversity}"


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
    rejected: str | None = None  # why the source already refused it (e.g. no choice): stored as a reject, never a label
    # A snapshot instead of a label: the ids of this source's annotations that still exist for the item
    # (Label Studio annotation ids); a current label of the source whose id is not among them is retracted.
    present: frozenset[str] | None = None


@dataclass(frozen=True)
class EvalMetrics:
    """Test accuracy of one model: clean and under attacks at the training eps."""

    accuracy: float
    fgsm_accuracy: float | None = None
    pgd_accuracy: float | None = None
    n: int = 0


@dataclass(frozen=True)
class RobustnessRow:
    """One measurement of the robustness suite (``robustness.evaluate_robustness``), flat and torch-free.

    ``attack`` is one of ``robustness.ATTACKS`` (or ``clean``, ``transfer_fgsm``,
    ``transfer_pgd``); ``eps`` the sweep's L-inf eps (0.0 for ``clean``);
    ``norm`` and ``radius`` the ball the attack searched ("inf" and eps, "2"
    and the L2 radius for ``pgd_l2``, "" and 0.0 for ``clean``); ``accuracy``
    w.r.t. the true labels on ``n`` attacked items; ``seconds`` the time this
    (attack, eps) took.  Stored per round (``robustness`` table) and per
    simulated round (``CurvePoint.robustness``).
    """

    attack: str
    eps: float
    accuracy: float
    n: int
    norm: str = "inf"
    radius: float = 0.0
    seconds: float = 0.0


def robustness_at(rows: Sequence[RobustnessRow], eps: float) -> tuple[float | None, dict[str, float]]:
    """``(sweep eps nearest to eps, {attack: accuracy there})`` of one model's suite; ``(None, {})`` when empty.

    The headline of a round: its suite at the training eps (or the sweep's
    closest eps).  ``clean`` is left out.
    """
    sweep = sorted({r.eps for r in rows if r.attack != "clean"})
    if not sweep:
        return None, {}
    near = min(sweep, key=lambda e: (abs(e - eps), e))
    return near, {r.attack: r.accuracy for r in rows if r.attack != "clean" and r.eps == near}


def worst_case(at_eps: Mapping[str, float]) -> tuple[str | None, float | None]:
    """The attack with the lowest accuracy (``transfer_fgsm``/``transfer_pgd`` are summed up in ``transfer``)."""
    candidates = {a: v for a, v in at_eps.items() if a not in ("transfer_fgsm", "transfer_pgd")}
    if not candidates:
        return None, None
    attack = min(candidates, key=lambda a: (candidates[a], a))
    return attack, candidates[attack]


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: accuracy after training on ``labels`` labels."""

    strategy: str
    seed: int
    round: int
    labels: int
    accuracy: float
    fgsm_accuracy: float | None = None
    agreement: float | None = None  # Cohen's kappa with the previous round's predictions on the stop set
    robustness: tuple[RobustnessRow, ...] = ()  # the round's robustness suite (empty when off)
    # the items labeled for this round that the previous round had not (round 0: the initial set), so that any
    # round's labeled set can be rebuilt from the log (a final, longer training on the chosen labels)
    added: tuple[int, ...] = ()


@dataclass(frozen=True)
class RoundResult:
    """What one active-learning round did, with per-phase wall-clock seconds."""

    round: int
    labels: int
    metrics: EvalMetrics
    selection: Selection | None
    timings: dict[str, float] = field(default_factory=dict)
    robustness: tuple[RobustnessRow, ...] = ()  # the suite stored for this round (empty when off or untrained)


# ---------------------------------------------------------------- store records
# What ``Store`` hands out instead of ORM objects: detached, immutable, no SQLAlchemy.


@dataclass(frozen=True)
class ProjectInfo:
    """A labeling project as stored; ``ls_*`` are Label Studio link fields (never the token)."""

    id: int
    name: str
    dataset: str
    class_names: tuple[str, ...]
    train_settings: dict
    strategy_settings: dict
    ls_url: str | None = None
    ls_project_id: int | None = None
    ls_last_sync: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class RegisterResult:
    """Database item ids for the keys given (same order) and what registering changed."""

    ids: np.ndarray  # (n,) int64
    added: int = 0
    renamed: int = 0  # known content under a new key
    changed: int = 0  # known key with new content


@dataclass(frozen=True)
class LabelCounts:
    """What ``Store.add_labels`` did with a batch of annotations."""

    added: int = 0
    duplicates: int = 0  # the same external annotation was already stored
    superseded: int = 0  # older labels replaced by a newer one
    skipped: int = 0  # annotators skipped the task
    rejected: int = 0  # unknown item or label, kept in label_rejects
    retracted: int = 0  # current labels whose annotation was deleted at the source (superseded, not deleted)


@dataclass(frozen=True)
class LabelRow:
    """One stored label with the item's key, for export."""

    item_id: int
    key: str
    label: str
    source: str
    annotator: str | None
    external_id: str | None
    created_at: datetime
    current: bool = True


@dataclass(frozen=True)
class RoundInfo:
    """One round as stored: how far it got (``state``) and what it used.

    ``strategy`` is the registry name (``seed`` for the seed round) and
    ``strategy_params`` its JSON parameters: ``acquisition.make_strategy(strategy,
    **strategy_params)`` rebuilds it; ``strategy_text`` / ``strategy_label`` show it.
    """

    id: int
    number: int
    state: str  # open | trained | selected | requested | done
    strategy: str
    query_size: int
    labels_used: int | None
    selected: int | None
    timings: dict
    started_at: datetime
    finished_at: datetime | None
    model_path: str | None = None
    metrics: EvalMetrics | None = None
    stop_agreement: float | None = None  # kappa with the previous round's model on the stop set
    strategy_params: dict = field(default_factory=dict)

    @property
    def strategy_text(self) -> str:
        """``dfal(mode=fast, top_k=10, ...)``: the strategy with every parameter."""
        return strategy_text(self.strategy, self.strategy_params)

    @property
    def strategy_label(self) -> str:
        """``dfal(fast)``, ``entropy+kcenter``: the strategy for a table column."""
        return strategy_label(self.strategy, self.strategy_params)


@dataclass(frozen=True)
class ProjectStatus:
    """Counts for ``activeadv status``."""

    project: ProjectInfo
    pool: int
    test: int
    labeled: int
    pending: int
    skipped: int
    rejected: int
    rounds: tuple[RoundInfo, ...]


@dataclass(frozen=True)
class SimulationInfo:
    """A stored ``simulate`` run with its learning-curve points."""

    id: int
    dataset: str
    settings: dict
    summary: dict
    created_at: datetime
    points: tuple[CurvePoint, ...] = ()


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

    @property
    def rule(self) -> str:
        """The rule that decided this item, as stored and reported (``resolve`` in labelstudio/annotations.py)."""
        if self.tie:
            return "tie between the top labels: no label, flagged for a person"
        return "majority of annotators (latest answer each)"


@dataclass(frozen=True)
class DisagreementRow:
    """A stored disagreement (``disagreements`` table): an item's votes and the rule applied."""

    item_id: int
    label: str | None
    votes: dict[str, int]
    tie: bool
    rule: str
    updated_at: datetime


@dataclass(frozen=True)
class EventInfo:
    """A stored webhook delivery; ``processed_at`` None until the worker acted on it."""

    id: int
    dedupe_key: str
    action: str
    payload: dict
    received_at: datetime
    processed_at: datetime | None
    attempts: int
    error: str | None
