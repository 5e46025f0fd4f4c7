"""Label efficiency by simulation: strategies x seeds on data with known labels.

Protocol (../shared/benchmarks.md): the pool's labels are hidden and revealed by
a ``SimulatedOracle`` on request; every strategy of a seed starts from the same
random initial set; each round retrains from scratch with the same training
settings for every strategy and records test accuracy (clean and FGSM) and, unless
``--eval-subset 0``, the robustness suite (``robustness.py``; transfer from the
curve's earlier rounds' models, as a project's checkpoints).  The
summary gives the normalised area under the learning curve (AULC), the labels
needed to reach a target accuracy and the saving against random.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activeadv.acquisition import DFAL, make_strategy, select
from activeadv.comparison import paired_difference
from activeadv.data import Dataset, Pool
from activeadv.errors import ConfigError
from activeadv.execution import Execution
from activeadv.oracle import SimulatedOracle
from activeadv.progress import bar as progress_bar
from activeadv.records import CurvePoint, RobustnessRow, robustness_at, worst_case
from activeadv.robustness import evaluate_robustness
from activeadv.stopping import StabilizingPredictions, cohen_kappa, stop_set
from activeadv.training import FINAL_RECIPE, TrainConfig, evaluate, predict_proba, stored_settings, train_ensemble

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    strategies: tuple[str, ...] = ("random", "entropy", "dfal")
    initial: int = 20
    query_size: int = 20
    budget: int = 300
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    subsample: int | None = None  # score a random subset of the unlabeled pool each round
    dfal_add_adversarial: bool = False
    target_accuracy: float | None = None  # default: 95% of the full-pool accuracy
    oracle_error: float = 0.0
    dfal_mode: str = "fast"  # "exact": full DeepFool on every candidate
    stopping: StabilizingPredictions = field(default_factory=StabilizingPredictions)
    train: TrainConfig = field(default_factory=TrainConfig)
    # cold start: rounds pick at random while a curve holds fewer labels; None: initial + query_size, one random
    # round after the initial set (what `round` does by default); 0: the strategy from the first round
    random_until: int | None = None

    def strategy_params(self, name: str) -> dict[str, object]:
        return {"mode": self.dfal_mode} if name.partition("+")[0] == "dfal" else {}

    def __post_init__(self) -> None:
        if self.initial < 1 or self.query_size < 1:
            raise ConfigError("--initial and --query-size must be >= 1")
        if self.budget < self.initial:
            raise ConfigError(f"--budget ({self.budget}) is smaller than --initial ({self.initial})")
        if not self.strategies:
            raise ConfigError("no strategies given")
        for name in self.strategies:
            make_strategy(name, **self.strategy_params(name))  # ConfigError on an unknown name or mode
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ConfigError("--target-accuracy must be in (0, 1]")

    @property
    def cold_start(self) -> int:
        """Labels under which a curve picks at random: ``random_until`` settled (what the log records)."""
        return self.initial + self.query_size if self.random_until is None else self.random_until


@dataclass
class SimulationResult:
    dataset: str
    config: SimulationConfig
    points: list[CurvePoint]
    reference_accuracy: float | None
    target_accuracy: float
    phase_seconds: dict[str, dict[str, float]]  # strategy -> phase -> mean seconds per round


def held_out_split(dataset: Dataset, fraction: float = 0.2, seed: int = 0) -> tuple[Pool, Pool]:
    """Pool and test split; datasets without one lose a fixed random ``fraction`` of the pool to testing."""
    if dataset.test is not None:
        return dataset.pool, dataset.test
    pool = dataset.pool
    if not pool.has_targets:
        raise ConfigError("simulation needs known labels (a labelled dataset)")
    ids = np.random.default_rng(seed).permutation(pool.ids)
    cut = max(1, int(len(ids) * fraction))
    test_ids, pool_ids = np.sort(ids[:cut]), np.sort(ids[cut:])
    return pool.subset(pool_ids), pool.subset(test_ids)


def simulate(dataset: Dataset, cfg: SimulationConfig, *, progress: bool = True,
             on_point: Callable[[CurvePoint, dict[str, float]], None] | None = None,
             done: Sequence[tuple[CurvePoint, dict[str, float]]] = (),
             execution: Execution = Execution(), jobs: int = 1) -> SimulationResult:
    """Run every strategy on every seed; returns all curve points and the target accuracy.

    ``execution``: where each round trains and scores the pool (``--executor``);
    ``jobs``: curves run side by side in that many worker processes (each
    with its share of the torch threads, or its own CUDA context).  Neither is
    part of ``cfg``: they change how fast, not what is measured; a curve's
    points do not depend on which process ran it.

    ``done``: ``(point, {phase: seconds})`` of an earlier, interrupted run with
    the same settings; each (strategy, seed) curve complete there is taken as
    it is (timings included), not rerun.  ``on_point`` gets each new point
    with its phase timings as its round ends, in whichever process.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 and execution.on_ray:
        raise ConfigError("--jobs runs curves in local processes; with --executor ray use --ray-workers")
    pool, test = held_out_split(dataset)
    if not pool.has_targets:
        raise ConfigError("simulation needs known labels for the pool")
    if cfg.budget > len(pool):
        raise ConfigError(f"--budget {cfg.budget} is larger than the pool ({len(pool)} items)")
    rounds = 1 + math.ceil((cfg.budget - cfg.initial) / cfg.query_size)
    finished = _complete_curves([p for p, _ in done], rounds)
    earlier = {(p.strategy, p.seed, p.round): phases for p, phases in done}
    reference = None
    target = cfg.target_accuracy
    if target is None:
        log.info("training once on all %d pool labels for the reference accuracy", len(pool))
        model = execution.trainer()(pool, pool.ids, pool.targets(pool.ids),
                                    replace(cfg.train, unlabeled="none", warm_start=False), progress=progress)
        reference = evaluate(model, test, replace(cfg.train, epsilon=0.0)).accuracy
        target = 0.95 * reference
    curves: dict[tuple[int, str], list[tuple[CurvePoint, dict[str, float]]]] = {}
    bar = progress_bar(progress, total=len(cfg.seeds) * len(cfg.strategies) * rounds, desc="simulate",
                       unit="round")
    pending = []
    for seed in cfg.seeds:
        for name in cfg.strategies:
            if (name, seed) in finished:
                curves[(seed, name)] = [(p, earlier.get((p.strategy, p.seed, p.round), {}))
                                        for p in finished[(name, seed)]]
                bar.update(rounds)
            else:
                pending.append((seed, name))

    def arrived(key: tuple[int, str], point: CurvePoint, phases: dict[str, float]) -> None:
        curves.setdefault(key, []).append((point, phases))
        if on_point:
            on_point(point, phases)
        bar.set_postfix(strategy=point.strategy, seed=point.seed, labels=point.labels, acc=f"{point.accuracy:.3f}")
        bar.update(1)

    if jobs == 1 or len(pending) <= 1:
        for seed, name in pending:
            for point, phases in _run_curve(pool, test, name, seed, _initial_set(pool, cfg, seed), cfg, rounds,
                                            execution):
                arrived((seed, name), point, phases)
    else:
        _run_in_processes(_curve_job, (pool, test, cfg, rounds), pending, min(jobs, len(pending)),
                          lambda key, item: arrived(key, *item), saved="the rounds finished so far are in points.jsonl",
                          describe=lambda key: f"curve {key[1]}, seed {key[0]}")
    bar.close()
    # the order of a sequential run, whichever process finished first
    order = {(seed, name): i for i, (seed, name) in enumerate((s, n) for s in cfg.seeds for n in cfg.strategies)}
    points: list[CurvePoint] = []
    seconds: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key in sorted(curves, key=order.__getitem__):
        for point, phases in curves[key]:
            points.append(point)
            for phase, sec in phases.items():
                seconds[point.strategy][phase].append(sec)
    phase_means = {s: {p: float(np.mean(v)) for p, v in phases.items()} for s, phases in seconds.items()}
    return SimulationResult(dataset.spec, cfg, points, reference, float(target), phase_means)


def _initial_set(pool: Pool, cfg: SimulationConfig, seed: int) -> np.ndarray:
    """A seed's random initial labels: the same for every strategy of that seed."""
    return np.sort(np.random.default_rng(seed).choice(pool.ids, cfg.initial, replace=False))


def _curve_job(pool: Pool, test: Pool, cfg: SimulationConfig, rounds: int,
               key: tuple[int, str]) -> Iterator[tuple[CurvePoint, dict[str, float]]]:
    """One (seed, strategy) curve in a worker process: its rounds' points, as they end."""
    seed, name = key
    yield from _run_curve(pool, test, name, seed, _initial_set(pool, cfg, seed), cfg, rounds, Execution())


def _worker_main(job: Callable[..., Iterator[Any]], args: tuple[Any, ...], threads: int, channel: Any) -> None:
    """One process of ``_run_in_processes``: receives keys until ``None``, sends each item ``job(*args, key)``
    yields, then ``done`` (or ``error``) for the key."""
    import traceback

    torch.set_num_threads(threads)
    try:
        while (key := channel.recv()) is not None:
            try:
                for item in job(*args, key):
                    channel.send(("item", key, item))
            except ConfigError as exc:
                channel.send(("error", key, str(exc)))
                return
            except Exception as exc:  # the parent reports it in one line; the traceback goes to this stderr
                traceback.print_exc()
                channel.send(("error", key, f"{type(exc).__name__}: {exc}"))
                return
            channel.send(("done", key, None))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):  # Ctrl-C (the parent reports it) or the parent is gone
        return


def _run_in_processes(job: Callable[..., Iterator[Any]], args: tuple[Any, ...], keys: Sequence[Any], jobs: int,
                      arrived: Callable[[Any, Any], None], *, saved: str, describe: Callable[[Any], str]) -> None:
    """Run ``job(*args, key)`` for every key in ``jobs`` spawned processes; ``arrived(key, item)`` gets each item
    as it is yielded (so the log keeps every finished round of a run stopped at a deadline).

    Spawned, not forked: a fork of a process that has started torch's thread
    pools or CUDA can deadlock.  ``args`` (the pools) travel once per
    process, not once per key; each process has a pipe to this one and gets
    its next key when it finishes one.  The torch threads of this process
    are shared out, so N processes do not oversubscribe the cores.  A process
    that dies (killed, out of memory) is a one-line error naming where the
    finished work is (``saved``), a job's error names its key (``describe``),
    and an error, Ctrl-C or SIGTERM here (``timeout``, ``kill``) stops every
    process: none goes on with the next key, or with the key it holds.
    """
    import multiprocessing
    import signal
    import threading
    from multiprocessing.connection import wait

    def _terminated(signum: int, frame: Any) -> None:  # unwinds through ``finally``, which stops the workers
        raise SystemExit(128 + signum)

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main else None

    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")
    todo = list(keys)
    workers = []
    active = []  # the pipes of processes working on a key; one told to stop is never read again
    try:
        for i in range(jobs):
            mine, theirs = context.Pipe()
            proc = context.Process(target=_worker_main, args=(job, args, threads, theirs),
                                   name=f"activeadv-simulate-{i}", daemon=True)
            proc.start()
            theirs.close()  # only the worker's copy stays open: its death closes the pipe
            workers.append((proc, mine))
        for _, channel in workers:
            if todo:
                channel.send(todo.pop(0))
                active.append(channel)
            else:
                channel.send(None)
        finished = 0
        while finished < len(keys):
            for ready in wait(active):
                channel = next(c for c in active if c is ready)
                try:
                    kind, key, payload = channel.recv()
                except EOFError:
                    raise ConfigError(f"a simulate worker process died (killed, or out of memory); {saved}: "
                                      "run again with --resume") from None
                if kind == "item":
                    arrived(key, payload)
                elif kind == "done":
                    finished += 1
                    if todo:
                        channel.send(todo.pop(0))
                    else:
                        channel.send(None)
                        active.remove(channel)
                else:
                    raise ConfigError(f"{payload} ({describe(key)})")
        for proc, _ in workers:
            proc.join()
    finally:
        for proc, channel in workers:
            if proc.is_alive():
                proc.terminate()
            proc.join()
            channel.close()
        if on_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _complete_curves(points: Sequence[CurvePoint], rounds: int) -> dict[tuple[str, int], list[CurvePoint]]:
    by_curve: dict[tuple[str, int], dict[int, CurvePoint]] = defaultdict(dict)
    for p in points:
        by_curve[(p.strategy, p.seed)][p.round] = p
    return {key: [pts[r] for r in range(rounds)] for key, pts in by_curve.items()
            if all(r in pts for r in range(rounds))}


def _run_curve(pool: Pool, test: Pool, name: str, seed: int, initial: np.ndarray, cfg: SimulationConfig,
               rounds: int, execution: Execution):
    """One learning curve: yields ``(CurvePoint, {phase: seconds})`` after each round."""
    strategy = make_strategy(name, **cfg.strategy_params(name))
    cold_start = make_strategy("random")  # while the curve holds fewer than cfg.cold_start labels
    oracle = SimulatedOracle(pool, error_rate=cfg.oracle_error, seed=seed)
    rng = np.random.default_rng([seed, 1])  # selection randomness, independent of the initial set
    names = {n: i for i, n in enumerate(pool.class_names)}
    labeled = initial.copy()
    labels = oracle.answer(labeled)
    added = labeled  # labeled since the previous round's training
    extra_x: list[torch.Tensor] = []
    extra_y: list[np.ndarray] = []
    stop_ids = stop_set(pool.ids)
    previous: np.ndarray | None = None  # the last round's predictions on the stop set
    state = None  # the last round's weights (warm start)
    suite = cfg.train.robustness_config() if test.has_targets else None
    # earlier rounds' models, as a project keeps their checkpoints: ensemble static models and transfer surrogates
    keep = max(cfg.train.adv_ensemble, cfg.train.eval_surrogates if suite is not None else 0)
    earlier: list[torch.nn.Module] = []
    train, ranker = execution.trainer(), execution.ranker(cfg.train.arch)  # once per curve, not per round
    for round_no in range(rounds):
        tcfg = replace(cfg.train, seed=seed * 1000 + round_no)  # same model seed for every strategy
        t0 = time.perf_counter()
        model = train(pool, labeled, labels, tcfg,
                      extra_x=torch.cat(extra_x) if extra_x else None,
                      extra_y=np.concatenate(extra_y) if extra_y else None,
                      unlabeled_ids=np.setdiff1d(pool.ids, labeled) if tcfg.unlabeled != "none" else None,
                      init_state=state if tcfg.warm_start else None,
                      static_models=_last(earlier, tcfg.adv_ensemble))
        if tcfg.warm_start:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        t1 = time.perf_counter()
        metrics = evaluate(model, test, tcfg)
        predicted = predict_proba(model, pool, stop_ids, batch_size=tcfg.eval_batch_size).argmax(1)
        agreement = None if previous is None else cohen_kappa(previous, predicted, pool.num_classes)
        previous = predicted
        t2 = time.perf_counter()
        phases = {"train": t1 - t0, "evaluate": t2 - t1}
        suite_rows: tuple[RobustnessRow, ...] = ()
        if suite is not None:
            suite_rows = evaluate_robustness(model, test, suite, surrogates=_last(earlier, tcfg.eval_surrogates)).rows
            phases["robustness"] = time.perf_counter() - t2
            t2 = time.perf_counter()
        if keep:
            earlier = [*earlier, model][-keep:]
        point = CurvePoint(name, seed, round_no, int(len(labeled)), metrics.accuracy, metrics.fgsm_accuracy,
                           agreement, suite_rows, tuple(int(i) for i in added))
        remaining = cfg.budget - len(labeled)
        if remaining <= 0 or round_no == rounds - 1:
            yield point, phases
            return
        chooser = cold_start if len(labeled) < cfg.cold_start else strategy
        selection = select(chooser, model, pool, pool.ids, min(cfg.query_size, remaining), rng=rng,
                           labeled_ids=labeled, subsample=cfg.subsample, ranker=ranker)
        phases["select"] = time.perf_counter() - t2
        oracle.request(selection, round_no)
        answers = oracle.collect()
        new_ids = np.array([a.item_id for a in answers], dtype=np.int64)
        new_labels = np.array([names[str(a.label)] for a in answers], dtype=np.int64)  # the oracle always answers
        # DFAL's copies are of the points DFAL itself asked for: near its boundary, so DeepFool's copy stays the
        # same digit.  A cold-start random pick may lie far from it, and its copy is then another class's image
        # under this label (measured on MNIST: 68% instead of 88% after the random round at 60 labels, one seed).
        if cfg.dfal_add_adversarial and chooser is strategy and isinstance(strategy, DFAL) and len(new_ids):
            extra_x.append(strategy.adversarial_examples(model, pool, new_ids))
            extra_y.append(new_labels)
        labeled = np.concatenate([labeled, new_ids])
        labels = np.concatenate([labels, new_labels])
        added = new_ids
        yield point, phases


def _last(models: list[torch.nn.Module], k: int) -> list[torch.nn.Module]:
    return models[-k:] if k > 0 else []


# ---------------------------------------------------------------- summaries
def aulc(labels: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under accuracy-vs-labels, normalised by the label range to [0, 1]."""
    x, y = np.asarray(labels, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean()) if len(y) else float("nan")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def labels_to_target(labels: Sequence[int], accuracy: Sequence[float], target: float) -> int | None:
    """Labels spent when the curve first reaches ``target`` (None if it never does)."""
    for n, acc in zip(labels, accuracy):
        if acc >= target:
            return int(n)
    return None


def summarize(points: Sequence[CurvePoint], target: float, dataset: str = "",
              reference_accuracy: float | None = None,
              stopping: StabilizingPredictions | None = None, epsilon: float | None = None) -> dict[str, Any]:
    """The ``summary.json`` payload: per strategy AULC, final accuracy, labels to target, saving vs random,
    where the stopping rule fired (labels, and the accuracy reached there), the paired AULC difference to every
    other strategy (``versus``: mean over shared seeds, 95% CI, seeds ahead, sign-flip p) and, with the suite on,
    the last round's robustness (``last_round_robustness``; headline at ``epsilon``, the training eps)."""
    stopping = stopping or StabilizingPredictions()
    curves: dict[str, dict[int, list[CurvePoint]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        curves[p.strategy][p.seed].append(p)
    out: dict[str, Any] = {"dataset": dataset, "target_accuracy": target,
                           "reference_accuracy": reference_accuracy, "strategies": {}}
    seed_aulc: dict[str, dict[int, float]] = defaultdict(dict)
    for name, by_seed in curves.items():
        aulcs, finals, reach, fgsm_finals, stops, stop_accs = [], [], [], [], [], []
        goals: dict[float, list[int | None]] = defaultdict(list)
        for seed, seed_points in by_seed.items():
            seed_points.sort(key=lambda p: p.round)
            labels = [p.labels for p in seed_points]
            accs = [p.accuracy for p in seed_points]
            seed_aulc[name][seed] = aulc(labels, accs)
            fired = stopping.first_fired([p.agreement for p in seed_points])
            if fired is not None:
                stops.append(labels[fired])
                stop_accs.append(accs[fired])
            aulcs.append(seed_aulc[name][seed])
            finals.append(accs[-1])
            if seed_points[-1].fgsm_accuracy is not None:
                fgsm_finals.append(seed_points[-1].fgsm_accuracy)
            reach.append(labels_to_target(labels, accs, target))
            for goal in ACCURACY_GOALS:
                goals[goal].append(labels_to_target(labels, accs, goal))
        reached = [r for r in reach if r is not None]
        out["strategies"][name] = {
            "seeds": len(by_seed),
            "aulc_mean": float(np.mean(aulcs)),
            "aulc_std": float(np.std(aulcs)),
            "final_accuracy_mean": float(np.mean(finals)),
            "final_accuracy_std": float(np.std(finals)),
            "final_fgsm_accuracy_mean": float(np.mean(fgsm_finals)) if fgsm_finals else None,
            # mean over the seeds that reached the target; `target_reached` says how many did
            "labels_to_target_mean": float(np.mean(reached)) if reached else None,
            "labels_to_target_std": float(np.std(reached)) if reached else None,
            "target_reached": f"{len(reached)}/{len(reach)}",
            "saving_vs_random": None,
            # stabilizing predictions: mean over the seeds where the rule fired; `stopped` says how many did
            "stop_labels_mean": float(np.mean(stops)) if stops else None,
            "stop_accuracy_mean": float(np.mean(stop_accs)) if stop_accs else None,
            "stopped": f"{len(stops)}/{len(by_seed)}",
            # labels to fixed accuracies: one entry per seed, null where the curve never got there
            "labels_to": {f"{goal:.2f}": values for goal, values in goals.items()},
        }
    for name, by_seed in curves.items():
        suite = last_round_robustness([max(pts, key=lambda p: p.round) for pts in by_seed.values()], epsilon)
        if suite is not None:
            out["strategies"][name]["robustness"] = suite
    for name, stats in out["strategies"].items():
        # AULC minus each other strategy's, seed by seed: is a lead in the mean more than shared seed noise?
        stats["versus"] = {other: diff.as_dict() for other in curves if other != name
                           and (diff := paired_difference(seed_aulc[name], seed_aulc[other])) is not None}
    base = out["strategies"].get("random", {}).get("labels_to_target_mean")
    for stats in out["strategies"].values():
        if base and stats["labels_to_target_mean"] is not None:
            stats["saving_vs_random"] = 1.0 - stats["labels_to_target_mean"] / base
    return out


def eps_key(eps: float) -> str:
    """An eps as a JSON key: ``0.1``, ``0.05``, ``0`` (clean)."""
    return f"{eps:g}"


def last_round_robustness(last_points: Sequence[CurvePoint], eps: float | None = None) -> dict[str, Any] | None:
    """``summary.json``'s suite of a strategy: its last round's accuracy per attack and eps, mean over seeds.

    ``{"accuracy": {attack: {eps: mean}}, "seconds": mean seconds of the suite, "seeds": n, "headline": {"eps",
    "worst_attack", "worst_accuracy"}}`` at ``eps`` (the training eps, or the sweep's nearest); None when the
    suite was off.  ``last_points``: one curve's last point per seed (sorted by round).
    """
    with_suite = [p for p in last_points if p.robustness]
    if not with_suite:
        return None
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in with_suite:
        for row in p.robustness:
            values[row.attack][eps_key(row.eps)].append(row.accuracy)
    rows = [RobustnessRow(a, float(e), float(np.mean(v)), 0) for a, by_eps in values.items() for e, v in by_eps.items()]
    near, at_eps = robustness_at(rows, eps if eps is not None else 0.1)
    attack, worst = worst_case(at_eps)
    return {"seeds": len(with_suite),
            "accuracy": {a: {e: float(np.mean(v)) for e, v in by_eps.items()} for a, by_eps in values.items()},
            "seconds": float(np.mean([sum(r.seconds for r in p.robustness if r.attack not in
                                          ("fgsm_true", "transfer")) for p in with_suite])),
            "headline": {"eps": near, "worst_attack": attack, "worst_accuracy": worst}}


ROBUSTNESS_FIELDS = ("strategy", "seed", "round", "labels", "attack", "eps", "norm", "radius", "accuracy", "n",
                     "seconds")


def write_robustness(points: Sequence[CurvePoint], path: Path) -> bool:
    """``robustness.csv``: every round's suite, one line per (strategy, seed, round, attack, eps); False (nothing
    written) when the suite was off."""
    if not any(p.robustness for p in points):
        return False
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ROBUSTNESS_FIELDS)
        for p in points:
            for r in p.robustness:
                writer.writerow([p.strategy, p.seed, p.round, p.labels, r.attack, f"{r.eps:g}", r.norm,
                                 f"{r.radius:.6g}", f"{r.accuracy:.6f}", r.n, f"{r.seconds:.4f}"])
    return True


ACCURACY_GOALS = (0.97, 0.98, 0.99)  # labels-to-accuracy columns of the MNIST study (docs/results.md)
CURVE_FIELDS = ("strategy", "seed", "round", "labels", "accuracy", "fgsm_accuracy", "agreement")


def write_curves(points: Sequence[CurvePoint], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CURVE_FIELDS)
        for p in points:
            writer.writerow([p.strategy, p.seed, p.round, p.labels, f"{p.accuracy:.6f}",
                             "" if p.fgsm_accuracy is None else f"{p.fgsm_accuracy:.6f}",
                             "" if p.agreement is None else f"{p.agreement:.6f}"])


POINTS_FILE = "points.jsonl"


def settings_of(cfg: SimulationConfig) -> dict[str, Any]:
    """What decides a simulation's points (``summary.json``'s settings; ``resume`` requires the same)."""
    return {"initial": cfg.initial, "query_size": cfg.query_size, "budget": cfg.budget,
            "subsample": cfg.subsample, "dfal_add_adversarial": cfg.dfal_add_adversarial,
            "dfal_mode": cfg.dfal_mode, "oracle_error": cfg.oracle_error,
            "stopping": {"window": cfg.stopping.window, "threshold": cfg.stopping.threshold},
            "random_until": cfg.cold_start, "train": cfg.train.to_dict()}


# settings renamed since logs were first written: old name -> today's
RENAMED_SETTINGS = {"candidates": "subsample"}


def normalized_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A log's settings in today's names, with what the older version did for every training option it
    predates (``training.stored_settings``).

    So ``--resume`` (and scripts/merge_runs.py) accept a log written before
    an option existed, when the run did not use it.
    """
    out = {RENAMED_SETTINGS.get(k, k): v for k, v in settings.items()}
    out.setdefault("random_until", 0)  # logs from before --random-until never picked at random after the start
    out["train"] = json.loads(json.dumps(stored_settings(out.get("train", {}))))
    return out


def read_point_log(path: Path) -> tuple[dict[str, Any], list[tuple[CurvePoint, dict[str, float]]]]:
    """A ``points.jsonl``'s settings (as written) and its ``(point, {phase: seconds})`` lines, in order."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the simulate log {path}: {exc.strerror or exc}") from None
    try:
        settings = json.loads(lines[0]).get("settings", {}) if lines else {}
        done = []
        for line in lines[1:]:
            if line.strip():
                row = json.loads(line)
                phases = row.pop("seconds", {})
                row["robustness"] = tuple(RobustnessRow(**r) for r in row.get("robustness") or ())
                row["added"] = tuple(int(i) for i in row.get("added") or ())  # absent in older logs
                done.append((CurvePoint(**row), phases))
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a simulate log ({exc}); use a new --out") from None
    return settings, done


def labeled_at(points: Sequence[CurvePoint], strategy: str, seed: int, labels: int) -> np.ndarray:
    """The ids one curve had labeled when it trained on ``labels`` labels, rebuilt from its points' ``added``.

    For a final, longer training on what a strategy chose (scripts/train_probe.py --labels-from).
    """
    curve = sorted((p for p in points if p.strategy == strategy and p.seed == seed), key=lambda p: p.round)
    ids: list[int] = []
    for point in curve:
        if len(point.added) != point.labels - len(ids):
            raise ConfigError(f"the log does not hold the ids {strategy} (seed {seed}) chose: it was written "
                              "before simulate logged them")
        ids.extend(point.added)
        if point.labels == labels:
            return np.array(ids, dtype=np.int64)
    reached = ", ".join(str(p.labels) for p in curve) or "none"
    raise ConfigError(f"{strategy} (seed {seed}) has no point at {labels} labels (it has: {reached})")


# ------------------------------------------------------------- the final model of each curve
FINAL_FILE = "final.jsonl"


@dataclass(frozen=True)
class FinalModel:
    """One long training (``training.FINAL_RECIPE``) on the labels a curve had at its last round."""

    strategy: str
    seed: int
    labels: int
    accuracy: float
    fgsm_accuracy: float | None
    train_seconds: float
    members: int = 1  # an ensemble of this many model seeds (--final-ensemble); logs before it held one


def final_config(cfg: SimulationConfig, steps: int) -> TrainConfig:
    """The run's training settings under the final recipe, ``steps`` long (the recipe's 3,000 unless told)."""
    return replace(cfg.train, **{**FINAL_RECIPE, "unlabeled_min_steps": steps})


def train_final_models(pool: Pool, test: Pool, points: Sequence[CurvePoint], cfg: SimulationConfig, steps: int, *,
                       done: Sequence[FinalModel] = (), on_model: Callable[[FinalModel], None] | None = None,
                       execution: Execution = Execution(), progress: bool = False, jobs: int = 1,
                       members: int = 1) -> list[FinalModel]:
    """What each curve's labels are worth once labeling stops: the model ``activeadv final-model`` would ship.

    The curves' rounds train briefly so that a study fits in hours; the final
    model is where the choice of labels shows at its best (docs/results.md).
    One model per (strategy, seed), returned in the run's order; ``done`` (an
    interrupted run's) are kept, not retrained.  The model seed is the
    curve's seed, so every strategy of a seed trains from the same start;
    ``members`` > 1 trains an ensemble of model seeds seed, seed+1, ...
    (``final-model --ensemble``).  ``jobs`` > 1 trains that many side by side in local processes (as the
    curves' ``--jobs``); ``on_model`` gets each as it finishes, in any order.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if members < 1:
        raise ConfigError(f"--final-ensemble must be >= 1, got {members}")
    fcfg = final_config(cfg, steps)
    earlier = {(m.strategy, m.seed, m.labels): m for m in done}
    curves: dict[tuple[str, int], int] = {}
    for p in points:
        curves[(p.strategy, p.seed)] = max(p.labels, curves.get((p.strategy, p.seed), 0))
    keys = [(name, seed, labels) for (name, seed), labels in curves.items()]
    for key in keys:  # a log without the chosen ids fails now, not after hours of the other trainings
        if key not in earlier:
            labeled_at(points, *key)
    models = {key: earlier[key] for key in keys if key in earlier}
    todo = [key for key in keys if key not in models]

    def arrived(key: tuple[str, int, int], model: FinalModel) -> None:
        models[key] = model
        if on_model is not None:
            on_model(model)

    if jobs == 1 or len(todo) <= 1 or execution.on_ray:
        for key in todo:
            arrived(key, _train_final(pool, test, fcfg, points, key, execution, progress, members))
    else:
        _run_in_processes(_final_job, (pool, test, fcfg, list(points), members), todo, min(jobs, len(todo)), arrived,
                          saved=f"the final models trained so far are in {FINAL_FILE}",
                          describe=lambda key: f"final model of {key[0]}, seed {key[1]}")
    return [models[key] for key in keys]


def _train_final(pool: Pool, test: Pool, fcfg: TrainConfig, points: Sequence[CurvePoint],
                 key: tuple[str, int, int], execution: Execution, progress: bool, members: int = 1) -> FinalModel:
    name, seed, labels = key
    ids = labeled_at(points, name, seed, labels)
    tcfg = replace(fcfg, seed=seed)
    log.info("final model of %s (seed %d) on its %d labels, %d steps%s", name, seed, labels,
             fcfg.unlabeled_min_steps, f", {members} model seeds" if members > 1 else "")
    start = time.perf_counter()
    model = train_ensemble(pool, ids, pool.targets(ids), tcfg, members, trainer=execution.trainer(),
                           progress=progress, unlabeled_ids=np.setdiff1d(pool.ids, ids))
    seconds = time.perf_counter() - start
    metrics = evaluate(model, test, tcfg)
    return FinalModel(name, seed, labels, metrics.accuracy, metrics.fgsm_accuracy, seconds, members)


def _final_job(pool: Pool, test: Pool, fcfg: TrainConfig, points: Sequence[CurvePoint], members: int,
               key: tuple[str, int, int]) -> Iterator[FinalModel]:
    """One curve's final model in a worker process."""
    yield _train_final(pool, test, fcfg, points, key, Execution(), False, members)


def final_log(out_dir: Path, cfg: SimulationConfig, steps: int, *, resume: bool, members: int = 1
              ) -> tuple[list[FinalModel], Callable[[FinalModel], None]]:
    """``(final models already logged, append)`` for ``out_dir/final.jsonl``; the first line holds the final
    training's settings, and a log written with others is started afresh (its models measure something else)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FINAL_FILE
    first: dict[str, Any] = {"settings": settings_of(cfg), "final": final_config(cfg, steps).to_dict()}
    if members > 1:  # a log of single models stays valid for single models
        first["ensemble"] = members
    settings = json.loads(json.dumps(first))
    done: list[FinalModel] = []
    if resume and path.exists():
        try:
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if lines and lines[0] == settings:
                done = [FinalModel(**row) for row in lines[1:]]
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            log.warning("%s is unreadable (%s): its final models are trained again", path, exc)
    if not done:
        path.write_text(json.dumps(settings) + "\n")

    def append(model: FinalModel) -> None:
        with open(path, "a") as fh:
            fh.write(json.dumps(asdict(model)) + "\n")

    return done, append


def summarize_final(models: Sequence[FinalModel]) -> dict[str, dict[str, Any]]:
    """Per strategy: the final models' accuracy (mean, std, per seed) and FGSM accuracy."""
    by_strategy: dict[str, list[FinalModel]] = defaultdict(list)
    for m in models:
        by_strategy[m.strategy].append(m)
    out = {}
    for name, ms in by_strategy.items():
        fgsm = [m.fgsm_accuracy for m in ms if m.fgsm_accuracy is not None]
        out[name] = {"seeds": len(ms), "labels": sorted({m.labels for m in ms}), "members": max(m.members for m in ms),
                     "accuracy_mean": float(np.mean([m.accuracy for m in ms])),
                     "accuracy_std": float(np.std([m.accuracy for m in ms])),
                     "accuracy": [m.accuracy for m in ms],
                     "fgsm_accuracy_mean": float(np.mean(fgsm)) if fgsm else None,
                     "train_seconds_mean": float(np.mean([m.train_seconds for m in ms]))}
    return out


def point_log(out_dir: Path, cfg: SimulationConfig, *, resume: bool
              ) -> tuple[list[tuple[CurvePoint, dict[str, float]]], Callable[[CurvePoint, dict[str, float]], None]]:
    """``(points already logged, append)`` for ``out_dir/points.jsonl``.

    The first line holds the settings; ``resume`` refuses a log written with
    other settings (its points would not belong to this run).  Without
    ``resume`` the log starts afresh.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / POINTS_FILE
    settings = json.loads(json.dumps(settings_of(cfg)))
    done: list[tuple[CurvePoint, dict[str, float]]] = []
    if resume and path.exists():
        logged, done = read_point_log(path)
        if normalized_settings(logged) != normalized_settings(settings):
            raise ConfigError(f"{path} was written with other settings: --resume needs the same options "
                              "(or a new --out)")
    else:
        path.write_text(json.dumps({"settings": settings}) + "\n")

    def append(point: CurvePoint, phases: dict[str, float]) -> None:
        with open(path, "a") as fh:
            fh.write(json.dumps({**asdict(point), "seconds": phases}) + "\n")

    return done, append


def plot_curves(points: Sequence[CurvePoint], path: Path, *, target: float | None = None,
                title: str = "") -> None:
    """Mean accuracy against labels per strategy, with a +-1 std band across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    by_strategy: dict[str, list[CurvePoint]] = defaultdict(list)
    for p in points:
        by_strategy[p.strategy].append(p)
    for name, pts in by_strategy.items():
        grid = sorted({p.labels for p in pts})
        acc = [[p.accuracy for p in pts if p.labels == n] for n in grid]
        mean = np.array([np.mean(a) for a in acc])
        std = np.array([np.std(a) for a in acc])
        ax.plot(grid, mean, marker="o", markersize=3, label=name)
        ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
    if target:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(result: SimulationResult, out_dir: Path, finals: Sequence[FinalModel] = (),
                  final_steps: int | None = None) -> dict[str, Any]:
    """curves.csv, summary.json, learning_curves.png (and robustness.csv with the suite on) in ``out_dir``;
    returns the summary (with each strategy's ``final_model`` when ``finals`` are given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    summary = summarize(result.points, result.target_accuracy, result.dataset, result.reference_accuracy,
                        cfg.stopping, epsilon=cfg.train.epsilon)
    if finals:
        for name, stats in summarize_final(finals).items():
            summary["strategies"][name]["final_model"] = stats
        summary["final_model"] = final_config(cfg, final_steps or FINAL_RECIPE["unlabeled_min_steps"]).to_dict()
    summary["phase_seconds_per_round"] = result.phase_seconds
    summary["settings"] = {**settings_of(cfg), "seeds": list(cfg.seeds)}
    write_curves(result.points, out_dir / "curves.csv")
    write_robustness(result.points, out_dir / "robustness.csv")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_curves(result.points, out_dir / "learning_curves.png", target=result.target_accuracy,
                title=f"{result.dataset}: accuracy vs labels")
    return summary
