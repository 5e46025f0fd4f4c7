"""SQLAlchemy 2 models of a labeling project: the database is the project's only state.

Everything a round needs to resume after a crash lives here: the items of the
pool, every label ever given (a newer label supersedes an older one without
deleting it), the rounds with their state, the selections sent to annotators,
the trained models and the simulation runs.

Unique constraints make every write idempotent: registering the same item,
storing the same external annotation or selecting the same item twice in one
round is a no-op, whoever retries.  The schema changes only through the
hand-reviewed Alembic migrations in ``migrations/``; a test checks that the two
agree.  Only ``store.py`` imports this module.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: migrations can drop/alter them by name on every
# backend, and SQLite's batch mode can rebuild tables without losing them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LABEL_SOURCES = ("seed", "annotator", "import", "oracle")
SPLITS = ("pool", "test")
ROUND_STATES = ("open", "trained", "selected", "requested", "done")
SELECTION_STATES = ("requested", "labeled", "skipped")


def utcnow() -> datetime:
    """Naive UTC: what every DateTime column stores (SQLite keeps no time zone)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime()}


class Project(Base):
    """One labeling project: a dataset, its classes and how to train and select.

    The Label Studio token is a secret and is never stored; only the server URL,
    the project id there and the sync cursor (``ls_last_sync``) are.
    """

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset: Mapped[str] = mapped_column(Text)
    class_names: Mapped[list[str]]
    train_settings: Mapped[dict[str, Any]]
    strategy_settings: Mapped[dict[str, Any]]
    ls_url: Mapped[str | None] = mapped_column(String(500))
    ls_project_id: Mapped[int | None]
    ls_last_sync: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Item(Base):
    """One entry of the pool (or the test split), addressed by its stable key.

    ``id`` is the item id everywhere (``Pool.with_ids``, Label Studio's
    ``task.data.item_id``).  ``content_hash`` finds a renamed file again.
    """

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "split", "key"),
        Index(None, "project_id", "content_hash"),
        CheckConstraint(_in("split", SPLITS), name="split"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(1000))
    content_hash: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Label(Base):
    """One class given to one item by someone; ``superseded_at`` is set when a newer label arrives.

    At most one label per item is current (partial unique index).  The same
    external annotation (e.g. a Label Studio annotation id) is stored once.
    """

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("project_id", "source", "external_id"),
        Index("ix_labels_current_item", "item_id", unique=True,
              sqlite_where=text("superseded_at IS NULL"), postgresql_where=text("superseded_at IS NULL")),
        Index(None, "project_id", "superseded_at"),
        CheckConstraint(_in("source", LABEL_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    class_index: Mapped[int]
    source: Mapped[str] = mapped_column(String(16))
    annotator: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None]


class LabelReject(Base):
    """An annotation that could not be used (unknown label or item), kept aside for review."""

    __tablename__ = "label_rejects"
    __table_args__ = (UniqueConstraint("project_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    raw_label: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Round(Base):
    """One active-learning round; ``state`` says how far it got, so a rerun resumes it.

    States, in order: open -> trained -> selected -> requested -> done.
    ``strategy`` is the strategy's registry name (``seed`` for the seed round)
    and ``strategy_params`` its parameters as JSON (``Strategy.params()``).
    """

    __tablename__ = "rounds"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        CheckConstraint(_in("state", ROUND_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="open")
    strategy: Mapped[str] = mapped_column(String(200))
    strategy_params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    query_size: Mapped[int]
    labels_used: Mapped[int | None]
    selected: Mapped[int | None]
    timings: Mapped[dict[str, Any]]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Selection(Base):
    """An item a round asked to label, with its score, rank and the model's guess."""

    __tablename__ = "selections"
    __table_args__ = (
        UniqueConstraint("round_id", "item_id"),
        Index(None, "item_id", "state"),
        CheckConstraint(_in("state", SELECTION_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="requested")
    predicted: Mapped[int | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    external_task_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """The model trained in a round: checkpoint file and its test accuracy (clean, FGSM, PGD)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), unique=True)
    path: Mapped[str] = mapped_column(Text)
    accuracy: Mapped[float | None] = mapped_column(Float)
    fgsm_accuracy: Mapped[float | None] = mapped_column(Float)
    pgd_accuracy: Mapped[float | None] = mapped_column(Float)
    n_test: Mapped[int | None]
    labels_used: Mapped[int]
    # Cohen's kappa with the previous round's model on the stop set (stopping.py); None for the first model
    stop_agreement: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Robustness(Base):
    """One measurement of a round's robustness suite: accuracy under one attack at one eps (robustness.py).

    A round has one row per (attack, eps); ``eps`` is the sweep's L-inf eps
    (0 for ``clean``), ``norm``/``radius`` the ball the attack searched, ``n``
    the test items attacked and ``seconds`` what the measurement cost.  Rounds
    from before revision 0005, and rounds run with the suite off, have none.
    """

    __tablename__ = "robustness"
    __table_args__ = (UniqueConstraint("round_id", "attack", "eps"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    attack: Mapped[str] = mapped_column(String(32))
    eps: Mapped[float] = mapped_column(Float)
    norm: Mapped[str] = mapped_column(String(8))
    radius: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    n: Mapped[int]
    seconds: Mapped[float] = mapped_column(Float)


class SimulationRun(Base):
    """A ``simulate`` run (strategies x seeds against ground truth), shown beside projects on the same dataset."""

    __tablename__ = "simulation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CurvePoint(Base):
    """One learning-curve point of a simulation run."""

    __tablename__ = "curve_points"
    __table_args__ = (UniqueConstraint("run_id", "strategy", "seed", "round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("simulation_runs.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int]
    round: Mapped[int]
    labels: Mapped[int]
    accuracy: Mapped[float] = mapped_column(Float)
    fgsm_accuracy: Mapped[float | None] = mapped_column(Float)


class Lock(Base):
    """Who runs a round on a project right now: one row per project (primary key), so a second taker fails.

    ``pid``/``host``/``heartbeat_at`` let a later process recognise the lock of
    a dead process (same host, pid gone; or heartbeat too old) and take it over.
    """

    __tablename__ = "locks"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    pid: Mapped[int]
    host: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """A Label Studio webhook delivery (or ML-backend training event), stored before anything acts on it.

    ``dedupe_key`` is built from the payload (action, annotation ids, their
    ``updated_at``), so a delivery sent twice is stored once; ``processed_at``
    stays NULL until the sync that saw the event's change committed, so a
    service killed between storing and acting finds the event again at restart.
    The payload is the request body only: headers (the shared secret) are never stored.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("project_id", "dedupe_key"),
        Index(None, "project_id", "processed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)


class Disagreement(Base):
    """Annotators of one item disagree: their votes per class and the rule that decided (or refused) the label.

    One row per item, rewritten by each sync that sees the item's task change
    and removed once its annotators agree again.
    """

    __tablename__ = "disagreements"
    __table_args__ = (UniqueConstraint("project_id", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    votes: Mapped[dict[str, Any]]
    tie: Mapped[bool]
    rule: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
