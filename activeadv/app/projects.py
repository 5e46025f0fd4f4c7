"""Project use cases: create or extend a project, the schema, what a project looks like now, its report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activeadv.app.annotation import label_studio_summary, link_project
from activeadv.app.workspace import Workspace
from activeadv.errors import ConfigError
from activeadv.records import (
    ProjectInfo,
    ProjectStatus,
    RegisterResult,
    RobustnessRow,
    RoundInfo,
    robustness_at,
    worst_case,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- create
@dataclass(frozen=True)
class InitResult:
    """``created`` False: an existing project was extended (new files registered, settings updated)."""

    project: ProjectInfo
    created: bool
    registered: dict[str, RegisterResult]
    schema_created: bool
    linked_to: str | None  # the Label Studio URL when ``init --label-studio`` linked it
    feature_scaling: str | None = None  # feature vectors: what is done to their values (None for images)


def init_project(ws: Workspace, name: str, dataset: str, *, classes: list[str] | None = None,
                 train_settings: dict[str, Any] | None = None, explicit: dict[str, Any] | None = None,
                 ls_url: str | None = None, progress: bool = False,
                 notify: Callable[[str], None] = log.info) -> InitResult:
    """Create project ``name`` on ``dataset`` and register its items, or register what is new in it.

    ``train_settings``: every training option (the project's defaults for its
    rounds, on creation); ``explicit``: the ones the user typed (they update
    an existing project).  A brand-new empty database gets the schema; an older
    one is refused.  With ``ls_url`` Label Studio is checked *before* anything
    is stored (a server that is down or a bad token leaves no half-made
    project), then the project is linked.
    """
    from activeadv.data import load_dataset
    from activeadv.loop import register_dataset
    from activeadv.training import TrainConfig

    data = load_dataset(dataset, class_names=classes)
    client = ws.connect(ls_url) if ls_url else None
    store = ws.raw_store()
    try:
        schema_created = store.current() is None and store.is_empty()
        if schema_created:
            notify(f"creating the activeadv schema in {store.display_url}")
            store.upgrade()
        store.check_schema()
        existing = {p.name: p for p in store.projects()}.get(name)
        if existing is None:
            settings = TrainConfig(**(train_settings or {})).to_dict()
            settings.pop("device", None)
            try:
                project = store.create_project(name, dataset, data.class_names, train_settings=settings)
            except ConfigError:  # another `init` created it a moment ago: extend it like any existing project
                existing = {p.name: p for p in store.projects()}.get(name)
                if existing is None:
                    raise
        if existing is not None:
            if existing.dataset != dataset:
                raise ConfigError(f"project '{name}' uses dataset '{existing.dataset}', not '{dataset}'")
            if tuple(data.class_names) != existing.class_names:
                raise ConfigError(f"project '{name}' has classes {','.join(existing.class_names)}; "
                                  f"the data now gives {','.join(data.class_names)}")
            project = existing
            if explicit:
                project = store.update_project(project.id, train_settings={**project.train_settings, **explicit})
        with store.lock(project.id):  # a concurrent `init` (or round) waits its turn: items are added once
            registered = register_dataset(store, project, data, progress=progress)
        if client is not None:
            root = ws.files_root(None, client.url)
            project = link_project(store, project, client, files_root=root, pool=data.pool)
    finally:
        store.close()
    scaling = data.pool.scaling
    return InitResult(project, existing is None, registered, schema_created,
                      None if client is None else client.url, None if scaling is None else scaling.describe())


# ---------------------------------------------------------------------- schema
@dataclass(frozen=True)
class SchemaState:
    database: str  # display URL, password masked
    before: str | None
    current: str | None
    head: str
    known: bool  # False: written by a newer activeadv

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def upgrade_schema(ws: Workspace) -> SchemaState:
    """Create the schema or migrate it to this version's head (safe to run again)."""
    with ws.raw_store() as store:
        before = store.current()
        store.upgrade()
        return SchemaState(store.display_url, before, store.current(), store.head(), True)


def schema_state(ws: Workspace) -> SchemaState:
    with ws.raw_store() as store:
        current = store.current()
        return SchemaState(store.display_url, current, current, store.head(),
                           current is None or store.knows(current))


# ---------------------------------------------------------------------- status
@dataclass(frozen=True)
class StatusView:
    """Everything `status` shows, for the CLI and the service alike."""

    project: ProjectInfo
    status: ProjectStatus
    running: tuple[int, str] | None  # (pid, host) of a process holding the round lock
    label_studio: dict[str, Any] | None  # task counts, or ``error``; None when not linked
    rounds: list[dict[str, Any]]
    stopping: dict[str, Any]
    disagreements: int = 0  # items whose annotators disagree (stored by sync)

    def to_dict(self) -> dict[str, Any]:
        st = self.status
        return {"project": self.project.name, "dataset": self.project.dataset,
                "classes": list(self.project.class_names), "pool": st.pool, "test": st.test,
                "labeled": st.labeled, "pending": st.pending, "skipped": st.skipped, "rejected": st.rejected,
                "disagreements": self.disagreements,
                "running": None if self.running is None else {"pid": self.running[0], "host": self.running[1]},
                "label_studio": self.label_studio, "rounds": self.rounds, "stopping": self.stopping}


def project_status(ws: Workspace, name: str | None = None, *, label_studio: bool = True) -> StatusView:
    """The project's counts, rounds, stopping rule and (when linked) Label Studio's task counts.

    An unreachable Label Studio is reported in ``label_studio['error']``, never raised.
    """
    project = ws.project(name)
    st = ws.store.status(project.id)
    holder = ws.store.lock_holder(project.id)
    ls = label_studio_summary(ws, project) if label_studio else None
    return StatusView(project, st, None if holder is None else (holder[0], holder[1]), ls,
                      round_rows(ws, project, st.rounds), stopping_summary(st.rounds),
                      len(ws.store.disagreements(project.id)))


def round_rows(ws: Workspace, project: ProjectInfo, rounds: Sequence[RoundInfo]) -> list[dict[str, Any]]:
    """``round_row`` of each round, with its stored robustness suite (headline at the project's training eps)."""
    suites = ws.store.robustness(project.id)
    epsilon = training_epsilon(project)
    return [round_row(r, suites.get(r.number, ()), epsilon) for r in rounds]


def training_epsilon(project: ProjectInfo) -> float:
    """The project's training eps (TrainConfig's default 0.1 when it has none): the robustness headline's eps."""
    value = project.train_settings.get("epsilon")
    return float(value) if isinstance(value, (int, float)) and value > 0 else 0.1


def suite_summary(rows: Sequence[RobustnessRow], epsilon: float) -> dict[str, Any] | None:
    """A round's robustness suite as plain data; None when it has none.

    ``eps``: the sweep's eps nearest to ``epsilon``; ``at_eps``: accuracy per
    attack there; ``worst``/``worst_attack``: the lowest of them (the
    headline); ``accuracy``: the whole suite, ``{attack: {eps: accuracy}}``
    (eps as text, ``0`` for clean); ``n``: test items attacked; ``seconds``:
    what the suite cost (shared measurements counted once).
    """
    if not rows:
        return None
    near, at_eps = robustness_at(rows, epsilon)
    attack, worst = worst_case(at_eps)
    accuracy: dict[str, dict[str, float]] = {}
    for row in rows:
        accuracy.setdefault(row.attack, {})[f"{row.eps:g}"] = row.accuracy
    return {"eps": near, "at_eps": at_eps, "worst": worst, "worst_attack": attack, "accuracy": accuracy,
            "n": max(r.n for r in rows),
            "seconds": round(sum(r.seconds for r in rows if r.attack not in ("fgsm_true", "transfer")), 3)}


def round_row(r: RoundInfo, suite: Sequence[RobustnessRow] = (), epsilon: float = 0.1) -> dict[str, Any]:
    """One round as plain data (the status table, ``--json``, the service); ``suite``: its robustness rows."""
    return {"round": r.number, "strategy": r.strategy, "strategy_params": r.strategy_params,
            "strategy_label": r.strategy_label,
            "state": r.state, "labels": r.labels_used, "selected": r.selected,
            "accuracy": r.metrics.accuracy if r.metrics else None,
            "fgsm_accuracy": r.metrics.fgsm_accuracy if r.metrics else None,
            "pgd_accuracy": r.metrics.pgd_accuracy if r.metrics else None,
            "robustness": suite_summary(suite, epsilon),
            "agreement": r.stop_agreement,
            "seconds": round(sum(r.timings.values()), 3), "model": r.model_path,
            "started_at": r.started_at.isoformat()}


def stopping_summary(rounds: list[RoundInfo] | tuple[RoundInfo, ...], window: int | None = None,
                     threshold: float | None = None) -> dict[str, Any]:
    """The stopping rule (stabilizing predictions; default window and threshold) read from the stored rounds."""
    from activeadv.loop import stopping_state
    from activeadv.stopping import StabilizingPredictions

    defaults = StabilizingPredictions()
    rule = StabilizingPredictions(window or defaults.window, defaults.threshold if threshold is None else threshold)
    fired, first = stopping_state(list(rounds), rule)
    return {"rule": f"mean kappa of the last {rule.window} rounds >= {rule.threshold}", "stable": fired,
            "first_stable_round": first}


# ---------------------------------------------------------------------- report
def write_report(ws: Workspace, name: str | None, out_dir: Path) -> list[Path]:
    """rounds.csv, simulations.csv and accuracy.png: the project's rounds beside stored simulate runs;
    robustness.csv and robustness.png: the rounds' robustness suites; disagreements.csv."""
    from activeadv.report import write_disagreements, write_robustness
    from activeadv.report import write_report as write

    project = ws.project(name)
    status = ws.store.status(project.id)
    written = write(status, ws.store.simulations(project.dataset), out_dir)
    written += write_robustness(status, ws.store.robustness(project.id), out_dir, training_epsilon(project))
    return [*written, write_disagreements(ws.store.disagreements(project.id), Path(out_dir) / "disagreements.csv")]
