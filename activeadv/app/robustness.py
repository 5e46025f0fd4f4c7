"""The robustness use case: evaluate any stored model with the robustness suite (``activeadv robustness``).

The model is a round of a project (its checkpoint, evaluated on the project's
test split, with the earlier rounds' checkpoints as transfer surrogates, as the
round itself did) or a checkpoint file with a dataset spec.  The suite's
settings are the project's (``eval_*`` training settings) for a round, the
defaults for a file, overridden by what the caller typed; the subset is
``DEFAULT_SUBSET`` test items where neither sets one (rounds run without the
suite by default).  Nothing is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activeadv.app.workspace import Workspace
from activeadv.errors import ConfigError, NotFoundError
from activeadv.records import ProjectInfo, RobustnessRow, RoundInfo, robustness_at, worst_case

if TYPE_CHECKING:
    from activeadv.data import Pool

_ROUND = re.compile(r"\d+")
DEFAULT_SUBSET = 1000  # test items attacked when neither the project nor the caller says (rounds default to 0: off)


@dataclass(frozen=True)
class RobustnessPlan:
    """What to evaluate and how.

    ``checkpoint``: a round number of the project, or a checkpoint file;
    ``dataset``: a dataset spec (required for a file unless ``project`` is
    named; for a round, another test set than the project's); ``surrogates``:
    round numbers or checkpoint files whose examples are transferred [a round:
    the last ``eval_surrogates`` earlier rounds; a file: none];
    ``eval_overrides``: ``eval_*`` TrainConfig fields typed by the caller.
    """

    checkpoint: str
    dataset: str | None = None
    project: str | None = None
    surrogates: tuple[str, ...] = ()
    eval_overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"


@dataclass(frozen=True)
class RobustnessReport:
    """The suite's rows for one model, with what was evaluated and how."""

    model: str  # the checkpoint file
    round: int | None
    project: str | None
    dataset: str
    test_split: str  # "test" or "held-out 20% of the pool" (datasets without a test split)
    surrogates: tuple[str, ...]
    trained_with: dict[str, Any]  # the checkpoint's training settings that matter here (adv, epsilon, ...)
    labels: int | None
    eps: tuple[float, ...]
    steps: int
    rows: tuple[RobustnessRow, ...]
    seconds: float  # the whole evaluation's wall time

    @property
    def n(self) -> int:
        return max((r.n for r in self.rows), default=0)

    def table(self) -> dict[str, dict[float, float]]:
        """``{attack: {eps: accuracy}}`` in the order measured (``clean`` at eps 0)."""
        out: dict[str, dict[float, float]] = {}
        for r in self.rows:
            out.setdefault(r.attack, {})[r.eps] = r.accuracy
        return out

    def headline(self) -> dict[str, Any]:
        """The worst attack at the sweep's eps nearest to the training eps."""
        epsilon = self.trained_with.get("epsilon")
        near, at_eps = robustness_at(self.rows, float(epsilon) if isinstance(epsilon, (int, float)) else 0.1)
        attack, worst = worst_case(at_eps)
        return {"eps": near, "worst_attack": attack, "worst": worst}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "round": self.round, "project": self.project, "dataset": self.dataset,
                "test_split": self.test_split, "surrogates": list(self.surrogates),
                "trained_with": self.trained_with, "labels": self.labels, "eps": list(self.eps),
                "steps": self.steps, "n": self.n, "seconds": round(self.seconds, 3), "headline": self.headline(),
                "accuracy": {a: {f"{e:g}": v for e, v in by_eps.items()} for a, by_eps in self.table().items()},
                "rows": [{"attack": r.attack, "eps": r.eps, "norm": r.norm, "radius": r.radius,
                          "accuracy": r.accuracy, "n": r.n, "seconds": round(r.seconds, 4)} for r in self.rows]}


def _round(rounds: list[RoundInfo], number: int, project: ProjectInfo) -> RoundInfo:
    for r in rounds:
        if r.number == number:
            if r.model_path is None:
                raise NotFoundError(f"round {number} of project '{project.name}' trained no model "
                                    f"(a seed round, or not trained yet)")
            return r
    known = ", ".join(str(r.number) for r in rounds if r.model_path is not None) or "none"
    raise NotFoundError(f"project '{project.name}' has no round {number} (rounds with a model: {known})")


def _test_split(data) -> tuple[Pool, str]:
    from activeadv.simulation import held_out_split

    if data.test is not None:
        if not data.test.has_targets:
            raise ConfigError(f"the test split of {data.spec} has no labels: robustness needs them")
        return data.test, "test"
    return held_out_split(data)[1], "held-out 20% of the pool (seed 0, as simulate)"


def evaluate_checkpoint(ws: Workspace, plan: RobustnessPlan, *, progress: bool = False) -> RobustnessReport:
    """Run the robustness suite on the model of ``plan.checkpoint`` (module docstring); nothing is stored."""
    import time

    from activeadv import training
    from activeadv.data import load_dataset
    from activeadv.loop import earlier_model_paths, train_config_for
    from activeadv.robustness import evaluate_robustness

    training.resolve_device(plan.device)  # a bad --device fails first
    is_round = _ROUND.fullmatch(plan.checkpoint.strip()) is not None and not Path(plan.checkpoint).exists()
    project = ws.project(plan.project) if is_round or plan.project is not None else None
    rounds = ws.store.rounds(project.id) if project is not None else []
    rnd = _round(rounds, int(plan.checkpoint), project) if is_round and project is not None else None
    path = Path(rnd.model_path) if rnd is not None and rnd.model_path else Path(plan.checkpoint).expanduser()
    if rnd is not None and not path.exists():
        raise NotFoundError(f"the checkpoint of round {rnd.number} is missing: {path}")
    payload = training.read_checkpoint(path)
    if project is not None:
        cfg = train_config_for(project, **plan.eval_overrides, device=plan.device)
    else:
        cfg = training.TrainConfig(**plan.eval_overrides, device=plan.device)
    if cfg.eval_subset == 0 and "eval_subset" not in plan.eval_overrides:  # the suite is off for rounds by default
        cfg = replace(cfg, eval_subset=DEFAULT_SUBSET)
    suite = cfg.robustness_config()
    if suite is None:
        raise ConfigError("--eval-subset 0 turns the suite off: give the number of test items to attack")
    if plan.dataset is not None:
        data = load_dataset(plan.dataset)
    elif project is not None:
        data = ws.dataset(project)
    else:
        raise ConfigError("a checkpoint file needs --dataset SPEC (or -p PROJECT for the project's dataset)")
    test, split = _test_split(data)
    shape, classes = tuple(payload["input_shape"]), int(payload["num_classes"])
    if shape != tuple(test.input_shape) or classes != test.num_classes:
        raise ConfigError(f"the model takes inputs of shape {shape} with {classes} classes; {data.spec} has "
                          f"{tuple(test.input_shape)} with {test.num_classes}")
    if plan.surrogates:
        surrogate_paths = [_surrogate_path(s, rounds, project) for s in plan.surrogates]
    elif rnd is not None:
        surrogate_paths = earlier_model_paths(rounds, rnd.number, cfg.eval_surrogates)
    else:
        surrogate_paths = []
    start = time.perf_counter()
    model = training.load_checkpoint(path, plan.device, payload=payload)
    surrogates = []
    for p in surrogate_paths:
        other = training.read_checkpoint(p)
        if tuple(other["input_shape"]) != shape or int(other["num_classes"]) != classes:
            raise ConfigError(f"surrogate {p} takes inputs of shape {tuple(other['input_shape'])} with "
                              f"{other['num_classes']} classes, not {shape} with {classes}")
        surrogates.append(training.load_checkpoint(p, plan.device, payload=other))
    result = evaluate_robustness(model, test, suite, surrogates=surrogates, progress=progress)
    seconds = time.perf_counter() - start
    config, meta = payload.get("config") or {}, payload.get("meta") or {}
    trained = {k: config[k] for k in ("adv", "epsilon", "adv_target", "adv_steps", "adv_ensemble", "alpha")
               if k in config}
    return RobustnessReport(model=str(path.resolve()), round=None if rnd is None else rnd.number,
                            project=None if project is None else project.name, dataset=data.spec, test_split=split,
                            surrogates=tuple(str(Path(p).resolve()) for p in surrogate_paths), trained_with=trained,
                            labels=meta.get("labels") if isinstance(meta.get("labels"), int) else None,
                            eps=suite.eps, steps=suite.steps, rows=result.rows, seconds=seconds)


def _surrogate_path(given: str, rounds: list[RoundInfo], project: ProjectInfo | None) -> Path:
    """``--surrogate``: a round number of the project, or a checkpoint file."""
    if _ROUND.fullmatch(given.strip()) and not Path(given).exists():
        if project is None:
            raise ConfigError(f"--surrogate {given}: a round number needs a project (-p NAME)")
        rnd = _round(rounds, int(given), project)
        assert rnd.model_path is not None
        return Path(rnd.model_path)
    path = Path(given).expanduser()
    if not path.is_file():
        raise ConfigError(f"--surrogate {given}: no such checkpoint file")
    return path
