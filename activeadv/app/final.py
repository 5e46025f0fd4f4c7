"""The final model (``activeadv final-model``): one long training on every label the project holds, asking for
nothing more.

Why a step of its own: a round trains briefly so that annotators wait minutes, not hours, and its model only has
to rank the pool.  Once labeling ends, the labels the rounds chose are worth one long training
(``training.FINAL_RECIPE``, where the measurements behind it are summarised).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from activeadv.app.workspace import Workspace
from activeadv.errors import ConfigError
from activeadv.execution import Execution
from activeadv.networks import Ensemble
from activeadv.records import EvalMetrics

RECIPES = ("final", "project")  # training.FINAL_RECIPE over the project's settings, or the project's alone


@dataclass(frozen=True)
class FinalPlan:
    """What ``final-model`` trains: the recipe (``final``, or ``project``: the rounds' own settings), the options
    typed over it, and where the checkpoint goes (``out``: this file, overwritten; else a new file in the
    project's checkpoint folder)."""

    recipe: str = "final"
    train_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    ensemble: int = 1  # model seeds seed, seed+1, ... averaged (training.train_ensemble)
    device: str = "auto"
    out: Path | None = None
    checkpoint_dir: Path | None = None
    execution: Execution = field(default_factory=Execution)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe '{self.recipe}': one of {', '.join(RECIPES)}")
        if self.ensemble < 1:
            raise ConfigError(f"--ensemble must be >= 1, got {self.ensemble}")


@dataclass(frozen=True)
class FinalReport:
    project: str
    path: Path
    labels: int
    metrics: EvalMetrics | None
    settings: dict[str, Any]  # the recipe and the typed options, applied over the project's settings
    train_seconds: float
    ensemble: int = 1  # models averaged in the checkpoint
    member_accuracy: list[float] = field(default_factory=list)  # an ensemble's members alone (clean, test split)

    def to_dict(self) -> dict[str, Any]:
        m = self.metrics
        return {"project": self.project, "checkpoint": str(self.path), "labels": self.labels,
                "accuracy": None if m is None else m.accuracy,
                "fgsm_accuracy": None if m is None else m.fgsm_accuracy,
                "pgd_accuracy": None if m is None else m.pgd_accuracy,
                "test_items": None if m is None else m.n, "ensemble": self.ensemble,
                "member_accuracy": self.member_accuracy,
                "settings": self.settings, "train_seconds": round(self.train_seconds, 1)}


def _free_path(folder: Path, stem: str) -> Path:
    """``folder/stem.pt``, or ``stem-2.pt``, ``stem-3.pt`` ...: an earlier final model is never overwritten."""
    path, k = folder / f"{stem}.pt", 1
    while path.exists():
        k += 1
        path = folder / f"{stem}-{k}.pt"
    return path


def train_final(ws: Workspace, name: str | None, plan: FinalPlan, *, progress: bool = False) -> FinalReport:
    """Train on every stored label with the plan's recipe, evaluate on the test split, save the checkpoint.

    Nothing in the database changes: no round, no request; ``activeadv robustness --checkpoint PATH`` attacks the
    file like any round's model.
    """
    from activeadv import loop, training

    if plan.out is not None and plan.out.is_dir():  # before the dataset is read and hashed
        raise ConfigError(f"--out {plan.out} is a folder: give the checkpoint's file name")
    project = ws.project(name)
    data = ws.dataset(project)
    recipe = training.FINAL_RECIPE if plan.recipe == "final" else {}
    settings = {**recipe, **plan.train_overrides}
    cfg = loop.train_config_for(project, **settings, seed=plan.seed, device=plan.device)
    ids, labels = loop.training_labels(ws.store, project, data)
    if len(ids) == 0:
        raise ConfigError(f"project '{project.name}' has no labels yet: run rounds (or `activeadv labels import`) "
                          "before training its final model")
    unlabeled = np.setdiff1d(data.pool.ids, ids) if cfg.unlabeled != "none" else None
    start = time.perf_counter()
    model = training.train_ensemble(data.pool, ids, labels, cfg, plan.ensemble, trainer=plan.execution.trainer(),
                                    progress=progress, unlabeled_ids=unlabeled)
    seconds = time.perf_counter() - start
    metrics, members = None, []
    if data.test is not None and data.test.has_targets:
        metrics = training.evaluate(model, data.test, cfg, progress=progress)
        if isinstance(model, Ensemble):
            members = [training.clean_accuracy(m, data.test, cfg) for m in model.members]
    if plan.out is not None:
        path = plan.out.expanduser().resolve()
    else:
        folder = loop.project_checkpoint_dir(ws.checkpoint_dir(plan.checkpoint_dir), project)
        members_part = f"-ensemble-{plan.ensemble}" if plan.ensemble > 1 else ""
        path = _free_path(folder, f"final-{len(ids)}-labels-seed-{plan.seed}{members_part}")
    training.save_checkpoint(model, path, cfg, {"project": project.name, "final": True, "labels": int(len(ids)),
                                                "recipe": plan.recipe, "ensemble": plan.ensemble},
                             input_shape=data.pool.input_shape, num_classes=data.pool.num_classes)
    return FinalReport(project.name, path, int(len(ids)), metrics, settings, seconds, plan.ensemble, members)
