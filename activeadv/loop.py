"""One active-learning round, and the glue between a project's database and its dataset.

``run_round`` is the only place that knows every step::

    collect answers -> train -> evaluate [-> robustness suite] -> select -> request -> collect

Every step reads its input from the store and writes its output there before
the next one starts, and the round's ``state`` column records how far it got
(open -> trained -> selected -> requested -> done).  Killing the process at any
point and calling ``run_round`` again therefore finishes the same round: a
trained model is reloaded from its checkpoint, a saved selection is re-sent,
and labels are keyed so that nothing is stored twice.

The robustness suite (``TrainConfig.robustness_config``, off unless
``--eval-subset`` > 0) runs after ``evaluate``, with the last
``eval_surrogates`` earlier rounds' checkpoints as transfer surrogates, and is
stored with the model in one transaction.  With ``adv_ensemble = K`` the
frozen checkpoints of the last K earlier rounds are the static models of
ensemble adversarial training (none yet: ``train`` trains K surrogates).
Each checkpoint file is loaded once per round, whatever it serves as.

A project with no labels yet starts with a *seed* round (number 0): a random
``initial`` set is requested and nothing is trained.  With the simulated
oracle those answers arrive at once and the next round trains on them.

``on_phase(phase)`` is called after each phase (``PHASES``) has reached the
database: progress reporting, and the tests' crash injection (they end the
process there, see tests/crashing_cli.py).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from activeadv import acquisition, stopping, training
from activeadv.data import Dataset, load_dataset
from activeadv.errors import ConfigError, WaitTimeoutError
from activeadv.execution import Execution
from activeadv.oracle import Oracle
from activeadv.progress import bar as progress_bar
from activeadv.records import (
    EvalMetrics,
    ProjectInfo,
    ProjectStatus,
    RegisterResult,
    RoundInfo,
    RoundResult,
    Selection,
)
from activeadv.store import Store

log = logging.getLogger(__name__)

PHASES = ("collected", "trained", "selected", "requested", "done")
SEED_STRATEGY = "seed"


@dataclass(frozen=True)
class RoundOptions:
    """How a round selects: strategy by registry name, query size, the seed set for a fresh project."""

    strategy: str = "dfal"
    query_size: int = 20
    initial: int | None = None  # seed round size; default query_size
    subsample: int | None = None  # score only this many random candidates (large pools)
    seed: int = 0
    strategy_params: dict = field(default_factory=dict)
    execution: Execution = field(default_factory=Execution)  # where the pool is scored and the model trained
    # cold start: rounds pick at random while the project holds fewer labels; None: the first round after the
    # seed round (or after imported labels) is random unless 10 labels a class are held, then the strategy
    # (docs/results.md: dfal's first pick by a model of 20 MNIST labels costs more than a random round)
    random_until: int | None = None

    def __post_init__(self) -> None:
        if self.query_size < 1:
            raise ConfigError(f"--query-size must be >= 1, got {self.query_size}")
        if self.initial is not None and self.initial < 1:
            raise ConfigError(f"--initial must be >= 1, got {self.initial}")
        if self.subsample is not None and self.subsample < 1:
            raise ConfigError(f"--subsample must be >= 1, got {self.subsample}")


# ----------------------------------------------------------------- dataset glue
def register_dataset(store: Store, project: ProjectInfo, data: Dataset, *,
                     progress: bool = False) -> dict[str, RegisterResult]:
    """Hash every item and register the pool (and test split); only new content is added."""
    out = {}
    for split, pool in (("pool", data.pool), ("test", data.test)):
        if pool is None:
            continue
        hashes = [pool.fingerprint(int(i)) for i in progress_bar(progress, pool.ids, desc=f"hash {split}",
                                                                  unit="item", leave=False)]
        out[split] = store.register_items(project.id, pool.keys, hashes, split)
        log.info("%s: %d items, %d new", split, len(pool), out[split].added)
    return out


def project_dataset(store: Store, project: ProjectInfo) -> Dataset:
    """The project's dataset with pool ids replaced by database item ids (one id space)."""
    data = load_dataset(project.dataset, class_names=list(project.class_names))
    if tuple(data.class_names) != tuple(project.class_names):
        raise ConfigError(f"dataset classes {data.class_names} differ from the project's {list(project.class_names)}")
    ids = store.item_ids(project.id, data.pool.keys, "pool")
    missing = int((ids < 0).sum())
    if missing:
        raise ConfigError(f"{missing} item(s) of {project.dataset} are not registered yet: run "
                          f"`activeadv init {project.name} --dataset {project.dataset}` again")
    test = data.test
    if test is not None:
        test_ids = store.item_ids(project.id, test.keys, "test")
        if not (test_ids < 0).any():
            test = test.with_ids(test_ids)
    return Dataset(data.spec, data.pool.with_ids(ids), test)


def project_checkpoint_dir(checkpoint_dir: Path, project: ProjectInfo) -> Path:
    """One folder per project under ``checkpoint_dir`` (id first: two databases may hold a project of one name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", project.name)
    return Path(checkpoint_dir).resolve() / f"{project.id}-{safe}"


def checkpoint_path(checkpoint_dir: Path, project: ProjectInfo, number: int) -> Path:
    return project_checkpoint_dir(checkpoint_dir, project) / f"round-{number:04d}.pt"


# ------------------------------------------------------------------- the round
def run_round(store: Store, project: ProjectInfo, data: Dataset, oracle: Oracle, cfg: training.TrainConfig,
              opts: RoundOptions, checkpoint_dir: Path, *, progress: bool = False,
              force_unlock: bool = False, on_phase: Callable[[str], None] | None = None) -> RoundResult:
    """Run (or finish an interrupted) round under the project's lock; see the module docstring.

    ``data`` must come from ``project_dataset`` (database ids).  The result's
    ``metrics`` is None for the seed round and when the dataset has no test split.
    """
    strategy = acquisition.make_strategy(opts.strategy, **opts.strategy_params)
    phase_done = on_phase or (lambda phase: None)
    with store.lock(project.id, force=force_unlock):
        timings: dict[str, float] = {}
        rnd = store.unfinished_round(project.id)
        with _timed(timings, "collect"):
            _collect(store, project, oracle, skip_round=rnd.id if rnd and rnd.state == "selected" else None)
        phase_done("collected")
        if rnd is None:
            rnd, strategy = _start(store, project, opts, strategy)
        else:
            log.info("resuming round %d (%s)", rnd.number, rnd.state)
            strategy = _resumed_strategy(rnd, strategy)
        seed_round = rnd.strategy == SEED_STRATEGY
        model, metrics = None, rnd.metrics
        if rnd.state == "open" and not seed_round:
            model, metrics = _train(store, project, data, cfg, rnd, checkpoint_dir, timings, progress,
                                    opts.execution)
            phase_done("trained")
        if rnd.state in ("open", "trained"):
            with _timed(timings, "select"):
                selection = _select(store, project, data, rnd, strategy, opts, cfg, model, seed_round, progress)
                store.add_selection(rnd.id, selection)
            phase_done("selected")
        if rnd.state in ("open", "trained", "selected"):
            with _timed(timings, "request"):
                oracle.request(store.selection(rnd.id, state="requested"), rnd.id)
                store.set_round_state(rnd.id, "requested", timings=timings)
            phase_done("requested")
        with _timed(timings, "collect"):
            counts = store.add_labels(project.id, oracle.collect())
            oracle.commit()
        store.finish_round(rnd.id, timings)
        phase_done("done")
    if counts.added:
        log.info("%d label(s) collected", counts.added)
    done = store.get_round(rnd.id)
    return RoundResult(round=done.number, labels=done.labels_used or 0, metrics=metrics,  # type: ignore[arg-type]
                       selection=store.selection(rnd.id), timings=done.timings,
                       robustness=store.round_robustness(rnd.id))


# ------------------------------------------------------- several rounds, waiting for people
@dataclass(frozen=True)
class WaitResult:
    """How a wait for labels ended: ``new_labels`` of ``target`` arrived, ``pending`` still requested."""

    new_labels: int
    target: int
    pending: int
    seconds: float
    polls: int


def new_labels(store: Store, project: ProjectInfo, status: ProjectStatus | None = None) -> int:
    """Labels in the store that the latest trained round did not use (0 before any training).

    Computed from the database alone, so a wait interrupted by Ctrl-C (or a
    crash) and started again counts the labels that already arrived.
    ``status``: the project's status when the caller has just read it.
    """
    status = status or store.status(project.id)
    used = next((r.labels_used for r in reversed(status.rounds) if r.labels_used is not None), 0)
    return max(0, status.labeled - used)


def wait_for_labels(store: Store, project: ProjectInfo, oracle: Oracle, min_new: int, *,
                    poll_seconds: float = 10.0, timeout: float | None = None,
                    before_poll: Callable[[], object] | None = None, progress: bool = False,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> WaitResult:
    """Poll ``oracle`` (e.g. Label Studio) until ``min_new`` labels beyond the last training set are stored.

    Every poll stores what arrived (``oracle.collect`` then ``store.add_labels``),
    so stopping at any moment loses nothing.  The wait also ends when no request
    is pending any more (annotators answered or skipped everything asked: more
    labels cannot come).  ``before_poll`` runs before each poll (a simulated
    annotator answering open tasks).  Raises ``WaitTimeoutError`` after
    ``timeout`` seconds.  Requests not sent yet (e.g. made before the project was
    linked to Label Studio) are sent first, as ``run_round`` does.
    """
    if min_new < 1:
        raise ConfigError(f"--min-new-labels must be >= 1, got {min_new}")
    if poll_seconds <= 0:
        raise ConfigError(f"--poll-seconds must be > 0, got {poll_seconds}")
    start = clock()
    polls = 0
    with progress_bar(progress, total=min_new, desc="labels arrived", unit="label", leave=False) as bar:
        while True:
            if before_poll is not None:
                before_poll()
            if polls == 0:
                _collect(store, project, oracle, skip_round=None)
            else:
                store.add_labels(project.id, oracle.collect())
                oracle.commit()
            polls += 1
            status = store.status(project.id)
            arrived, pending = new_labels(store, project, status), status.pending
            bar.n = min(arrived, min_new)
            bar.set_postfix(pending=pending)
            bar.refresh()
            elapsed = clock() - start
            if arrived >= min_new or pending == 0:
                if arrived < min_new:
                    log.warning("only %d new label(s) but nothing is waiting for annotators any more", arrived)
                return WaitResult(arrived, min_new, pending, elapsed, polls)
            if timeout is not None and elapsed >= timeout:
                raise WaitTimeoutError(
                    f"timed out after {timeout:g} s waiting for labels: {arrived} of {min_new} new label(s) "
                    f"arrived (all stored), {pending} item(s) still with annotators; run again to keep waiting")
            left = poll_seconds if timeout is None else min(poll_seconds, max(0.0, timeout - elapsed))
            sleep(left)


def run_rounds(store: Store, project: ProjectInfo, data: Dataset, oracle: Oracle, cfg: training.TrainConfig,
               opts: RoundOptions, checkpoint_dir: Path, *, rounds: int, min_new_labels: int,
               poll_seconds: float = 10.0, timeout: float | None = None,
               before_poll: Callable[[], object] | None = None, progress: bool = False,
               on_round: Callable[[RoundResult], None] | None = None,
               on_wait: Callable[[WaitResult], None] | None = None,
               force_unlock: bool = False, on_phase: Callable[[str], None] | None = None,
               until_stable: stopping.StabilizingPredictions | None = None) -> list[RoundResult]:
    """``rounds`` rounds of ``run_round``, each (but a fresh project's seed round) after ``wait_for_labels``.

    A round waits only when something was asked before it: a project without
    rounds starts with its seed round at once, and an interrupted round is
    finished at once.  All state is in the store, so a stopped run is continued
    by running it again.  With ``until_stable`` no further round starts once
    the stopping rule holds (``stopping``); the last round's requests stay open.
    """
    if rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, got {rounds}")
    results: list[RoundResult] = []
    for _ in range(rounds):
        if until_stable is not None and stopping_state(store.rounds(project.id), until_stable)[0]:
            log.info("stopping rule holds (predictions stable): no further round")
            break
        if store.rounds(project.id) and store.unfinished_round(project.id) is None:
            waited = wait_for_labels(store, project, oracle, min_new_labels, poll_seconds=poll_seconds,
                                     timeout=timeout, before_poll=before_poll, progress=progress)
            if on_wait is not None:
                on_wait(waited)
        result = run_round(store, project, data, oracle, cfg, opts, checkpoint_dir, progress=progress,
                           force_unlock=force_unlock, on_phase=on_phase)
        results.append(result)
        if on_round is not None:
            on_round(result)
    return results


def _resumed_strategy(rnd: RoundInfo, asked: acquisition.Strategy) -> acquisition.Strategy:
    """An interrupted round is finished with the strategy (name and parameters) it started with, whatever
    --strategy says now: ``make_strategy(rnd.strategy, **rnd.strategy_params)``."""
    if rnd.strategy == SEED_STRATEGY:
        return asked
    try:
        own = acquisition.make_strategy(rnd.strategy, **rnd.strategy_params)
    except ConfigError:  # written by a version with other strategies or parameters
        log.warning("round %d started with %s, which this version cannot rebuild; finishing it with %r",
                    rnd.number, rnd.strategy_text, asked)
        return asked
    if (own.name, own.params()) == (asked.name, asked.params()):
        return asked
    log.warning("finishing round %d with its own strategy %r (not %r)", rnd.number, own, asked)
    return own


COLD_START_PER_CLASS = 10  # by default no random round once the project holds this many labels per class


def _cold(store: Store, project: ProjectInfo, opts: RoundOptions, labels: int) -> bool:
    """Whether a new round with ``labels`` held picks at random: under ``--random-until``; by default when no
    round but the seed round has picked yet and the labels are few (a project that imported hundreds of labels
    has a model worth asking from the first round)."""
    if opts.random_until is not None:
        return labels < opts.random_until
    return (labels < COLD_START_PER_CLASS * len(project.class_names)
            and all(r.strategy == SEED_STRATEGY for r in store.rounds(project.id)))


def _start(store: Store, project: ProjectInfo, opts: RoundOptions, strategy: acquisition.Strategy
           ) -> tuple[RoundInfo, acquisition.Strategy]:
    """A new round and the strategy it selects with (random under ``--random-until``)."""
    labeled, _ = store.labels(project.id)
    waiting = sum(len(sel) for _, sel in store.pending(project.id))
    if len(labeled):
        if waiting:
            log.warning("%d requested item(s) are still unanswered; training on the %d labels there are",
                        waiting, len(labeled))
        if _cold(store, project, opts, len(labeled)):
            log.info("%d labels, a cold start (--random-until): this round picks at random", len(labeled))
            strategy = acquisition.make_strategy("random")
        return store.start_round(project.id, strategy.name, opts.query_size, params=strategy.params()), strategy
    if waiting:
        raise ConfigError(f"no labels yet: {waiting} requested item(s) are still waiting for annotators")
    if store.rounds(project.id):
        raise ConfigError("no labels and nothing requested: every request was skipped; "
                          "import labels with `activeadv labels import`")
    size = opts.initial or opts.query_size
    log.info("no labels yet: seed round requests %d random items", size)
    return store.start_round(project.id, SEED_STRATEGY, size), strategy


def _collect(store: Store, project: ProjectInfo, oracle: Oracle, skip_round: int | None) -> None:
    """Re-send what is still pending (a new oracle knows nothing of earlier processes), then store answers.

    The round being resumed from ``selected`` is left out: its requests were
    never sent, and sending them is that round's next step.
    """
    for round_id, selection in store.pending(project.id):
        if round_id != skip_round and len(selection):
            oracle.request(selection, round_id)
    counts = store.add_labels(project.id, oracle.collect())
    oracle.commit()
    if counts.added or counts.rejected:
        log.info("collected %d label(s), %d rejected", counts.added, counts.rejected)


def training_labels(store: Store, project: ProjectInfo, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The project's labeled pool items and their labels, in the order they were asked for (what a round and the
    final model train on: the same order gives the same batches for the same seed)."""
    ids, labels = store.labels(project.id)
    ids_in_pool = np.isin(ids, data.pool.ids)
    ids, labels = ids[ids_in_pool], labels[ids_in_pool]  # items whose file vanished are not trained on
    return in_request_order(store, project, ids, labels)


def _train(store: Store, project: ProjectInfo, data: Dataset, cfg: training.TrainConfig, rnd: RoundInfo,
           checkpoint_dir: Path, timings: dict[str, float], progress: bool, execution: Execution):
    ids, labels = training_labels(store, project, data)
    rounds = store.rounds(project.id)
    cfg = replace(cfg, seed=round_train_seed(cfg.seed, rounds, rnd.number))
    suite = cfg.robustness_config() if data.test is not None and data.test.has_targets else None
    checkpoints = _Checkpoints(cfg.device)  # each earlier checkpoint loaded once, whatever it serves as
    path_before = previous_model_path(rounds, rnd.number)
    # the warm start's weights and the stopping rule's comparison model
    before = None if path_before is None else checkpoints.load(path_before)
    init_state = before.state_dict() if cfg.warm_start and before is not None else None
    # ensemble adversarial training: the frozen models of the last K earlier rounds (none yet: train() trains K)
    statics = [checkpoints.load(p) for p in earlier_model_paths(rounds, rnd.number, cfg.adv_ensemble)]
    with _timed(timings, "train"):
        model = execution.trainer()(data.pool, ids, labels, cfg, progress=progress, init_state=init_state,
                                    unlabeled_ids=np.setdiff1d(data.pool.ids, ids) if cfg.unlabeled != "none"
                                    else None, static_models=statics)
    metrics: EvalMetrics | None = None
    if data.test is not None and data.test.has_targets:
        with _timed(timings, "evaluate"):
            metrics = training.evaluate(model, data.test, cfg, progress=progress)
    rows = None
    if suite is not None and data.test is not None:
        from activeadv.robustness import evaluate_robustness

        # black-box transfer from the last K earlier rounds' models (none for a project's first model)
        surrogates = [checkpoints.load(p) for p in earlier_model_paths(rounds, rnd.number, cfg.eval_surrogates)]
        with _timed(timings, "robustness"):
            rows = evaluate_robustness(model, data.test, suite, surrogates=surrogates, progress=progress).rows
    with _timed(timings, "evaluate"):
        agreement = stop_agreement(model, before, data, cfg)
    path = checkpoint_path(checkpoint_dir, project, rnd.number)
    training.save_checkpoint(model, path, cfg, {"project": project.name, "round": rnd.number,
                                                "labels": int(len(ids))},
                             input_shape=data.pool.input_shape, num_classes=data.pool.num_classes)
    store.record_model(rnd.id, path, metrics, labels_used=len(ids), stop_agreement=agreement,
                       robustness=rows if rows is not None else ())
    return model, metrics


class _Checkpoints:
    """Earlier rounds' models, each file loaded once (in eval mode, on ``device``) and shared by its uses."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.loaded: dict[Path, object] = {}

    def load(self, path: Path):
        path = Path(path)
        if path not in self.loaded:
            self.loaded[path] = training.load_checkpoint(path, self.device)
        return self.loaded[path]


def earlier_model_paths(rounds: list[RoundInfo], number: int, k: int) -> list[Path]:
    """The checkpoints of the last ``k`` rounds before ``number`` that trained a model, oldest first.

    Static models of ensemble adversarial training and transfer surrogates;
    a checkpoint whose file is gone is skipped (with a warning).
    """
    if k <= 0:
        return []
    found: list[Path] = []
    for r in sorted(rounds, key=lambda r: r.number, reverse=True):
        if r.number < number and r.model_path is not None:
            path = Path(r.model_path)
            if not path.exists():
                log.warning("checkpoint of round %d is missing (%s): not used as a static model or surrogate",
                            r.number, path)
                continue
            found.append(path)
            if len(found) == k:
                break
    return found[::-1]


def previous_model_path(rounds: list[RoundInfo], number: int) -> Path | None:
    """The checkpoint of the last round before ``number`` that trained a model (None: first model, or it is gone)."""
    for r in sorted(rounds, key=lambda r: r.number, reverse=True):
        if r.number < number and r.model_path is not None:
            path = Path(r.model_path)
            if path.exists():
                return path
            log.warning("checkpoint of round %d is missing (%s): no warm start or agreement for this round",
                        r.number, path)
            return None
    return None


def stop_agreement(model, before, data: Dataset, cfg: training.TrainConfig) -> float | None:
    """Cohen's kappa between this model's and the previous round's model's (``before``) predictions on the
    project's stop set; None for the first model."""
    if before is None:
        return None
    ids = stopping.stop_set(data.pool.ids)
    now = training.predict_proba(model, data.pool, ids, batch_size=cfg.eval_batch_size).argmax(1)
    then = training.predict_proba(before, data.pool, ids, batch_size=cfg.eval_batch_size).argmax(1)
    return stopping.cohen_kappa(then, now, data.pool.num_classes)


def stopping_state(rounds: list[RoundInfo], rule: stopping.StabilizingPredictions) -> tuple[bool, int | None]:
    """``(fired now, number of the first round after which it fired)`` from the rounds' stored agreements."""
    trained = [r for r in sorted(rounds, key=lambda r: r.number) if r.labels_used is not None]
    agreements = [r.stop_agreement for r in trained]
    first = rule.first_fired(agreements)
    return rule.fired(agreements), None if first is None else trained[first].number


def in_request_order(store: Store, project: ProjectInfo, ids: np.ndarray, labels: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The labels in the order they were asked for (round by round, best first); others (imported) after, by id.

    Training shuffles with a fixed seed, so the order of the training set
    decides the model; this is the order ``simulation.simulate`` trains in
    (initial set, then each selection best first), which lets a project answered
    by a perfect annotator retrace simulate's curve exactly.
    """
    rank: dict[int, int] = {}
    for r in store.rounds(project.id):
        for item in store.selection(r.id).item_ids:
            rank.setdefault(int(item), len(rank))
    order = sorted(range(len(ids)), key=lambda k: (rank.get(int(ids[k]), len(rank)), int(ids[k])))
    return ids[order], labels[order]


def round_train_seed(seed: int, rounds: list[RoundInfo], number: int) -> int:
    """The model seed of round ``number``: ``seed * 1000 + k`` for the k-th trained round (k from 0).

    The same rule as ``simulation.simulate`` (its round k trains with
    ``seed * 1000 + k``), so that a project answered by a perfect annotator
    retraces simulate's learning curve for the same seed and settings; the
    seed round, which trains nothing, does not count.  A round redone after a
    crash gets the same seed (only earlier rounds count).
    """
    trained_before = sum(1 for r in rounds if r.number < number and r.labels_used is not None)
    return int(seed) * 1000 + trained_before


def _select(store: Store, project: ProjectInfo, data: Dataset, rnd: RoundInfo, strategy: acquisition.Strategy,
            opts: RoundOptions, cfg: training.TrainConfig, model, seed_round: bool, progress: bool) -> Selection:
    candidates = store.candidates(project.id)
    candidates = candidates[np.isin(candidates, data.pool.ids)]
    rng = np.random.default_rng([opts.seed, rnd.number])  # the same choice when a crashed round is redone
    if seed_round:
        chosen = np.sort(rng.choice(candidates, size=min(rnd.query_size, len(candidates)), replace=False))
        return Selection(chosen.astype(np.int64), np.zeros(len(chosen)), SEED_STRATEGY)
    if model is None:  # resumed after training: reload the round's model
        if rnd.model_path is None or not Path(rnd.model_path).exists():
            raise ConfigError(f"checkpoint of round {rnd.number} is missing ({rnd.model_path})")
        model = training.load_checkpoint(Path(rnd.model_path), cfg.device)
    labeled, _ = store.labels(project.id)
    if len(candidates) == 0:
        log.warning("every pool item is labeled or requested: nothing left to select")
    ranker = opts.execution.ranker(cfg.arch)
    return acquisition.select(strategy, model, data.pool, candidates, rnd.query_size, rng=rng,
                              labeled_ids=labeled, subsample=opts.subsample, batch_size=cfg.eval_batch_size,
                              progress=progress, ranker=ranker)


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def train_config_for(project: ProjectInfo, **overrides: object) -> training.TrainConfig:
    """The project's stored training settings with the given overrides (e.g. device, seed)."""
    values = training.stored_settings(project.train_settings)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return training.TrainConfig(**values)
