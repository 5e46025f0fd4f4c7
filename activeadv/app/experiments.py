"""Experiment use cases: label efficiency by simulation (``simulate``) and speed/memory (``bench``).

Neither needs a project; ``simulate`` stores its curves in the project
database when one is named (or the default SQLite file exists), so that
``report`` draws them beside the real rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activeadv.app.workspace import Workspace
from activeadv.errors import ConfigError
from activeadv.execution import Execution
from activeadv.settings import DEFAULT_DB_FILE

if TYPE_CHECKING:
    from activeadv.training import TrainConfig


def train_config(values: dict[str, Any], **extra: Any) -> TrainConfig:
    """A validated ``TrainConfig`` from option values (``ConfigError`` on a bad value or ``--device``)."""
    from activeadv.training import TrainConfig, resolve_device

    cfg = TrainConfig(**values, **extra)
    resolve_device(cfg.device)
    return cfg


@dataclass(frozen=True)
class SimulatePlan:
    dataset: str
    strategies: tuple[str, ...]
    initial: int
    query_size: int
    budget: int
    seeds: int
    seed: int
    train: dict[str, Any]  # TrainConfig fields
    classes: list[str] | None = None
    subsample: int | None = None
    dfal_add_adversarial: bool = False
    dfal_mode: str = "fast"
    target_accuracy: float | None = None
    oracle_error: float = 0.0
    stop_window: int = 3
    stop_threshold: float = 0.99
    device: str = "auto"
    execution: Execution = field(default_factory=Execution)  # where rounds train and score (--executor)
    jobs: int = 1  # curves side by side in this many local processes
    final_model: bool = False  # then each curve's labels get one long training (training.FINAL_RECIPE)
    random_until: int | None = None  # None: one random round after the initial set
    final_steps: int = 3000
    final_ensemble: int = 1  # each final model an ensemble of this many model seeds


@dataclass(frozen=True)
class SimulateOutcome:
    summary: dict[str, Any]
    files: list[Path]
    stored_run: int | None  # simulation run id in the project database


def simulate(plan: SimulatePlan, out_dir: Path, *, database_url: str | None = None, resume: bool = False,
             progress: bool = False) -> SimulateOutcome:
    """Strategies x seeds on data with known labels; curves.csv, summary.json, learning_curves.png (and the
    per-round robustness suite, robustness.csv, unless it is off) in ``out_dir``.

    A database named by ``database_url`` is checked before the first model is
    trained (a wrong URL or stale schema fails now, not after hours) and gets
    the run; without one the run goes to the default SQLite file only when it
    already exists: a simulation never creates a database.
    """
    from activeadv.data import load_dataset
    from activeadv.simulation import (
        FINAL_FILE,
        SimulationConfig,
        final_log,
        held_out_split,
        point_log,
        train_final_models,
        write_outputs,
    )
    from activeadv.simulation import simulate as run_simulation
    from activeadv.stopping import StabilizingPredictions

    if plan.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    cfg = SimulationConfig(strategies=plan.strategies, initial=plan.initial, query_size=plan.query_size,
                           budget=plan.budget, seeds=tuple(range(plan.seed, plan.seed + plan.seeds)),
                           subsample=plan.subsample, dfal_add_adversarial=plan.dfal_add_adversarial,
                           dfal_mode=plan.dfal_mode, target_accuracy=plan.target_accuracy,
                           oracle_error=plan.oracle_error,
                           stopping=StabilizingPredictions(plan.stop_window, plan.stop_threshold),
                           random_until=plan.random_until,
                           train=train_config(plan.train, seed=plan.seed, device=plan.device))
    data = load_dataset(plan.dataset, class_names=plan.classes)
    if database_url is not None:
        Workspace(database_url).store.close()  # opens (schema checked) and closes
    done, log_point = point_log(out_dir, cfg, resume=resume)
    result = run_simulation(data, cfg, progress=progress, on_point=log_point, done=done, execution=plan.execution,
                            jobs=plan.jobs)
    finals = []
    if plan.final_model:
        pool, test = held_out_split(data)
        done_finals, log_final = final_log(out_dir, cfg, plan.final_steps, resume=resume,
                                           members=plan.final_ensemble)
        finals = train_final_models(pool, test, result.points, cfg, plan.final_steps, done=done_finals,
                                    on_model=log_final, execution=plan.execution, progress=progress,
                                    jobs=plan.jobs, members=plan.final_ensemble)
    summary = write_outputs(result, out_dir, finals, plan.final_steps)
    files = [out_dir / name for name in ("curves.csv", "robustness.csv", "summary.json", "learning_curves.png")
             if name != "robustness.csv" or any(p.robustness for p in result.points)]
    if finals:
        files.append(out_dir / FINAL_FILE)
    if database_url is None:
        if not Path(DEFAULT_DB_FILE).exists():
            return SimulateOutcome(summary, files, None)
        database_url = f"sqlite:///{DEFAULT_DB_FILE}"
    with Workspace(database_url) as ws:  # a stale schema is a one-line error, after the files are written
        run_id = ws.store.save_simulation(result.dataset, summary.get("settings", {}), result.points, summary)
    return SimulateOutcome(summary, files, run_id)


# ------------------------------------------------------------------------ bench
Report = Callable[[str], None] | None


def bench_scoring(*, train_steps: int, methods: tuple[str, ...] | None, progress: bool, report: Report,
                  **config: Any) -> dict[str, Any]:
    """``activeadv bench scoring``: images/s of every scoring method on one model and pool."""
    from activeadv.perfbench import METHODS, ScoringBenchConfig, scoring_bench
    from activeadv.training import TrainConfig

    cfg = ScoringBenchConfig(**config, methods=methods or METHODS,
                             train=TrainConfig(epochs=10, min_steps=train_steps, max_steps=train_steps))
    return scoring_bench(cfg, progress=progress, report=report)


def bench_round(*, train: dict[str, Any], progress: bool, report: Report, **config: Any) -> dict[str, Any]:
    """``activeadv bench round``: round latency by phase on a simulated project (no database, no Label Studio)."""
    from activeadv.perfbench import RoundBenchConfig, round_bench

    cfg = RoundBenchConfig(**config, train=train_config(train, seed=config["seed"], device=config["device"]))
    return round_bench(cfg, progress=progress, report=report)


def bench_rank(dataset: str, strategy: str, *, exact: bool, train_steps: int, progress: bool, report: Report,
               **options: Any) -> dict[str, Any]:
    """``activeadv bench rank``: rank a whole pool streamed from its source; images/s and peak RSS."""
    from activeadv.perfbench import rank_pool
    from activeadv.training import TrainConfig

    params = {"mode": "exact"} if exact and strategy == "dfal" else None
    return rank_pool(dataset, strategy, progress=progress, report=report, strategy_params=params,
                     train_cfg=TrainConfig(epochs=5, min_steps=train_steps, max_steps=train_steps), **options)
