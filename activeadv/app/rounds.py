"""Round use cases: one round (``activeadv round``) and several with waits for people (``activeadv run``).

The engine (``loop.run_round``) knows the steps; this layer decides who
answers (nobody / a simulation / Label Studio), with which training settings
(the project's, overridden by what the caller typed) and where checkpoints go.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activeadv.app.annotation import simulated_annotator, store_oracle
from activeadv.app.projects import round_rows, stopping_summary, suite_summary, training_epsilon
from activeadv.app.workspace import Workspace, linked_project_id
from activeadv.errors import ActiveAdvError, ConfigError
from activeadv.execution import Execution
from activeadv.records import ProjectInfo, ProjectStatus, RoundResult

if TYPE_CHECKING:
    from activeadv.data import Dataset
    from activeadv.labelstudio import LabelStudioClient
    from activeadv.loop import WaitResult
    from activeadv.oracle import Oracle

log = logging.getLogger(__name__)

ORACLES = ("none", "simulated", "labelstudio")


class InterruptedRun(ActiveAdvError):
    """``run`` stopped by Ctrl-C: every label that arrived is stored; running again continues."""


@dataclass(frozen=True)
class RoundPlan:
    """How each round selects, trains and asks (the options `round` and `run` share)."""

    strategy: str = "dfal"
    query_size: int = 20
    initial: int | None = None  # seed round size for a project without labels [query_size]
    subsample: int | None = None  # score only this many random candidates (large pools)
    oracle: str | None = None  # none | simulated | labelstudio [labelstudio when linked, else none]
    oracle_error: float = 0.0
    ls_url: str | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint_dir: Path | None = None
    force_unlock: bool = False
    train_overrides: dict[str, Any] = field(default_factory=dict)  # options typed now; the project's otherwise
    execution: Execution = field(default_factory=Execution)  # local, or Ray (the `ray` extra): scoring, training
    random_until: int | None = None  # rounds pick at random while the project holds fewer labels (None: one round)


def oracle_kind(kind: str | None, project: ProjectInfo) -> str:
    """``kind`` as given, else ``labelstudio`` for a project linked to Label Studio, else ``none``."""
    if kind is None:
        return "labelstudio" if project.ls_project_id is not None else "none"
    if kind not in ORACLES:
        raise ConfigError(f"unknown oracle '{kind}': one of {', '.join(ORACLES)}")
    return kind


def make_oracle(ws: Workspace, kind: str, project: ProjectInfo, data: Dataset, plan: RoundPlan
                ) -> tuple[Oracle, LabelStudioClient | None]:
    """The oracle and, for Label Studio, the connected client (None otherwise)."""
    from activeadv.oracle import NoOracle, SimulatedOracle

    if kind == "simulated":
        return SimulatedOracle(data.pool, error_rate=plan.oracle_error, seed=plan.seed), None
    if kind == "labelstudio":
        linked_project_id(project)
        client = ws.connect(plan.ls_url, project)
        return store_oracle(ws, project, data.pool, client, files_root=ws.files_root(None, client.url)), client
    return NoOracle(), None


@dataclass(frozen=True)
class RoundReport:
    result: RoundResult
    status: ProjectStatus
    oracle: str

    @property
    def robustness(self) -> dict[str, Any] | None:
        """The round's robustness suite (``projects.suite_summary``, headline at the training eps)."""
        return suite_summary(self.result.robustness, training_epsilon(self.status.project))

    def to_dict(self) -> dict[str, Any]:
        r, st, m = self.result, self.status, self.result.metrics
        return {"round": r.round, "labels_used": r.labels, "selected": len(r.selection or []),
                "strategy": None if r.selection is None else r.selection.strategy,
                "accuracy": None if m is None else m.accuracy,
                "fgsm_accuracy": None if m is None else m.fgsm_accuracy,
                "pgd_accuracy": None if m is None else m.pgd_accuracy,
                "robustness": self.robustness,
                "labeled": st.labeled, "pending": st.pending, "timings": r.timings, "oracle": self.oracle}


class _Prepared:
    """What every round of a command shares: project, dataset, settings, oracle (made once)."""

    def __init__(self, ws: Workspace, name: str | None, plan: RoundPlan) -> None:
        from activeadv.loop import RoundOptions, train_config_for
        from activeadv.training import resolve_device

        resolve_device(plan.device)  # a bad --device fails before anything else
        self.opts = RoundOptions(strategy=plan.strategy, query_size=plan.query_size, initial=plan.initial,
                                 subsample=plan.subsample, seed=plan.seed, execution=plan.execution,
                                 random_until=plan.random_until)
        self.project = ws.project(name)
        self.cfg = train_config_for(self.project, **plan.train_overrides, seed=plan.seed, device=plan.device)
        self.data = ws.dataset(self.project)
        self.kind = oracle_kind(plan.oracle, self.project)
        self.oracle, self.client = make_oracle(ws, self.kind, self.project, self.data, plan)
        self.checkpoint_dir = ws.checkpoint_dir(plan.checkpoint_dir)


def run_round(ws: Workspace, name: str | None, plan: RoundPlan, *, progress: bool = False,
              on_phase: Callable[[str], None] | None = None) -> RoundReport:
    """One round (or the rest of an interrupted one): collect, train, evaluate, rank, request."""
    from activeadv import loop

    p = _Prepared(ws, name, plan)
    result = loop.run_round(ws.store, p.project, p.data, p.oracle, p.cfg, p.opts, p.checkpoint_dir,
                            progress=progress, force_unlock=plan.force_unlock, on_phase=on_phase)
    return RoundReport(result, ws.store.status(p.project.id), p.kind)


@dataclass(frozen=True)
class RunPlan:
    """How ``run`` waits between rounds and when it stops."""

    rounds: int
    min_new_labels: int | None = None  # [query size]
    poll_seconds: float = 10.0
    timeout: float | None = None
    auto_accuracy: float | None = None  # a simulated annotator answers Label Studio's open tasks at each wait
    until_stable: bool = False
    stop_window: int = 3
    stop_threshold: float = 0.99

    def __post_init__(self) -> None:
        if self.auto_accuracy is not None and not 0.0 <= self.auto_accuracy <= 1.0:
            raise ConfigError("--auto-annotate must be an accuracy in [0, 1]")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError("--timeout must be a number of seconds > 0")  # nan waited for ever
        if not (math.isfinite(self.poll_seconds) and self.poll_seconds > 0):
            raise ConfigError("--poll-seconds must be a number of seconds > 0")


@dataclass(frozen=True)
class RunReport:
    rounds: list[RoundReport]
    curve: list[dict[str, Any]]
    stopping: dict[str, Any]
    oracle: str

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": [r.to_dict() for r in self.rounds], "oracle": self.oracle, "curve": self.curve,
                "stopping": self.stopping}


def run_rounds(ws: Workspace, name: str | None, plan: RoundPlan, run: RunPlan, *, progress: bool = False,
               on_round: Callable[[RoundReport], None] | None = None,
               on_wait: Callable[[WaitResult], None] | None = None) -> RunReport:
    """Several rounds, each (but a fresh project's seed round) after enough new labels arrived.

    Ctrl-C is safe at any time (``InterruptedRun``): every label that arrived
    is stored and a round interrupted half-way is finished by the next call.
    """
    from activeadv import loop
    from activeadv.stopping import StabilizingPredictions

    rule = StabilizingPredictions(run.stop_window, run.stop_threshold)
    p = _Prepared(ws, name, plan)
    if run.auto_accuracy is not None and p.kind != "labelstudio":
        raise ConfigError("--auto-annotate answers Label Studio tasks: link the project "
                          "(`activeadv labelstudio link`) or pass --oracle labelstudio")
    before_poll = None
    if run.auto_accuracy is not None:
        assert p.client is not None
        before_poll = simulated_annotator(p.client, linked_project_id(p.project), p.data.pool,
                                          p.project.class_names, run.auto_accuracy, plan.seed)
    reports: list[RoundReport] = []

    def each_round(result: RoundResult) -> None:
        reports.append(RoundReport(result, ws.store.status(p.project.id), p.kind))
        if on_round is not None:
            on_round(reports[-1])

    try:
        loop.run_rounds(ws.store, p.project, p.data, p.oracle, p.cfg, p.opts, p.checkpoint_dir, rounds=run.rounds,
                        min_new_labels=run.min_new_labels or plan.query_size, poll_seconds=run.poll_seconds,
                        timeout=run.timeout, before_poll=before_poll, progress=progress, on_round=each_round,
                        on_wait=on_wait, force_unlock=plan.force_unlock,
                        until_stable=rule if run.until_stable else None)
    except KeyboardInterrupt:
        st = ws.store.status(p.project.id)
        raise InterruptedRun(f"interrupted after {len(reports)} round(s): {st.labeled} labels stored, "
                             f"{st.pending} pending; run again to continue") from None
    st = ws.store.status(p.project.id)
    return RunReport(reports, round_rows(ws, p.project, st.rounds),
                     stopping_summary(st.rounds, run.stop_window, run.stop_threshold), p.kind)
