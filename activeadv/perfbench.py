"""What scoring the pool and one round cost, measured side by side with a baseline (docs/benchmarks.md).

Library code only (the click commands live in ``activeadv.cli.bench``):

``scoring_bench``
    On one trained model and one pool: forward-only and forward+backward
    images/s (the unit: one FGSM step), every scoring strategy's images/s, the
    exact and fast DFAL modes and cheaper shortcuts, the top-n overlap of each
    with exact DeepFool (n = 1% of the pool), and, when installed (the
    ``bench`` extra), torchattacks' and ART's DeepFool on a subset.  Each
    method is warmed up, then timed ``repeats`` times; every timing is paired
    with a forward+backward probe run just before it, so the ratio to the unit
    survives the load of a shared machine.  Medians, spread (min, max) and
    ratios are reported.
``round_bench``
    Round latency by phase (train / evaluate / score / select) on a simulated
    project, driving the engine directly (no SQL store, no Label Studio):
    labels come from the dataset's ground truth.
``rank_pool``
    Ranks a whole pool (e.g. 200,000 images streamed from a folder) and
    reports images/s and the process's peak RSS against the size of the pool
    as one float32 tensor.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activeadv import __version__, attacks
from activeadv.acquisition import DFAL, ScoringContext, Strategy, make_strategy, per_item, select
from activeadv.data import Pool, load_dataset, stream
from activeadv.errors import ConfigError
from activeadv.execution import Execution
from activeadv.networks import count_parameters, device_of
from activeadv.robustness import evaluate_robustness
from activeadv.training import TrainConfig, evaluate, resolve_device, train

log = logging.getLogger(__name__)

UNIT = "forward+backward"
#: every method ``scoring_bench`` knows, in table order
METHODS = (
    "forward", UNIT,
    "least-confidence", "margin", "entropy", "coreset", "fgsm-margin",
    "first-order-margin", "dfal-exact", "dfal-top3", "dfal-fast",
    "torchattacks-deepfool", "art-deepfool",
)
THIRD_PARTY = ("torchattacks-deepfool", "art-deepfool")
EXACT = "dfal-exact"


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "activeadv": __version__, "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _top(scores: np.ndarray, n: int) -> set[int]:
    """Positions of the n highest scores (ties by position, as a stable sort gives)."""
    return set(np.argsort(-scores, kind="stable")[:n].tolist())


def top_overlap(scores: np.ndarray, reference: np.ndarray, n: int) -> float:
    """|top-n(scores) & top-n(reference)| / n."""
    return len(_top(scores, n) & _top(reference, n)) / n if n else float("nan")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (ranks by stable sort; ties are rare for continuous scores)."""
    if len(a) < 2:
        return float("nan")
    ra = np.empty(len(a))
    ra[np.argsort(a, kind="stable")] = np.arange(len(a))
    rb = np.empty(len(b))
    rb[np.argsort(b, kind="stable")] = np.arange(len(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# ------------------------------------------------------------------ baselines
def forward_pass(model: nn.Module, pool: Pool, ids: np.ndarray, ctx: ScoringContext) -> None:
    """Forward only, inference mode: the floor of any model-based score (same row slices as the scores)."""
    with attacks.eval_mode(model), torch.inference_mode():
        for _, x in stream(pool, ids, ctx.batch_size, device=device_of(model), desc="forward"):
            for rows in ctx.slices(x):
                model(rows)


def forward_backward(model: nn.Module, pool: Pool, ids: np.ndarray, ctx: ScoringContext) -> None:
    """Forward plus the gradient of the loss w.r.t. the input (one FGSM step): the unit of cost.

    Run on the same row slices as the gradient-based scores (``ctx.slices``),
    so that their ratios to it compare work, not batch shapes.
    """
    with attacks.eval_mode(model):
        for _, batch in stream(pool, ids, ctx.batch_size, device=device_of(model), desc="forward+backward"):
            for rows in ctx.slices(batch):
                x = rows.requires_grad_(True)
                logits = model(x)
                loss = F.cross_entropy(logits, logits.detach().argmax(1), reduction="sum")
                torch.autograd.grad(loss, x)


# --------------------------------------------------------------- third party
def third_party_available() -> dict[str, bool]:
    import importlib.util

    return {"torchattacks-deepfool": importlib.util.find_spec("torchattacks") is not None,
            "art-deepfool": importlib.util.find_spec("art") is not None}


def torchattacks_deepfool(model: nn.Module, x: torch.Tensor, *, steps: int = 50,
                          overshoot: float = 0.02) -> np.ndarray:
    """torchattacks 3.5.1 ``DeepFool`` (one image at a time inside); distance = ||x_adv - x||_2.

    torchattacks applies the overshoot at every step, so its points sit on
    the boundary rather than (1 + overshoot) past it; the ranking agrees.
    """
    import torchattacks

    with attacks.eval_mode(model):
        with torch.no_grad():
            pred = model(x).argmax(1)
        atk = torchattacks.DeepFool(model, steps=steps, overshoot=overshoot)
        adv = atk(x, pred)
    return (adv - x).flatten(1).norm(dim=1).cpu().numpy().astype(np.float64)


def art_deepfool(model: nn.Module, x: torch.Tensor, num_classes: int, *, steps: int = 50,
                 overshoot: float = 0.02, batch_size: int = 200) -> np.ndarray:
    """ART ``DeepFool`` (``nb_grads`` = all classes, batched); distance = ||x_adv - x||_2."""
    from art.attacks.evasion import DeepFool
    from art.estimators.classification import PyTorchClassifier

    device = device_of(model)
    clf = PyTorchClassifier(model=copy.deepcopy(model).eval(), loss=nn.CrossEntropyLoss(),
                            input_shape=tuple(x.shape[1:]), nb_classes=num_classes, clip_values=(0.0, 1.0),
                            device_type="gpu" if device.type == "cuda" else "cpu")
    atk = DeepFool(clf, max_iter=steps, epsilon=overshoot, nb_grads=num_classes, batch_size=batch_size,
                   verbose=False)
    x_np = x.detach().cpu().numpy()
    adv = atk.generate(x_np)
    return np.linalg.norm((adv - x_np).reshape(len(x_np), -1), axis=1).astype(np.float64)


# ------------------------------------------------------------------ scoring
@dataclass(frozen=True)
class ScoringBenchConfig:
    """One ``bench scoring`` run; every field is reported with the results."""

    dataset: str = "digits"
    pool: int = 10_000  # pool items ranked (random unlabeled items of the dataset's pool)
    labels: int = 1_000  # labeled items the model is trained on (a realistic boundary)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, min_steps=300, max_steps=300))
    repeats: int = 3
    batch_size: int = 512  # forward / forward+backward / probability strategies
    attack_batch_size: int = 512  # DeepFool, FGSM margin, first-order margin
    slice_rows: int | None = None  # rows per network pass (None: networks.CPU_ROWS on CPU, whole batch on GPU)
    top_fraction: float = 0.01  # n of the top-n overlap, as a fraction of the pool
    third_party: int = 200  # images given to torchattacks / ART (0: skip them)
    probe: int = 2_048  # images of the forward+backward probe paired with every timing
    warmup: int = 256  # images each method runs once before timing
    methods: tuple[str, ...] = METHODS
    threads: int | None = None
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown bench method(s) {', '.join(unknown)}: use {', '.join(METHODS)}")
        if self.repeats < 1 or self.pool < 1 or self.labels < 1:
            raise ConfigError("--repeats, --pool and --labels must be >= 1")
        if not 0 < self.top_fraction <= 1:
            raise ConfigError("--top must be a fraction in (0, 1]")


def _strategy_for(method: str) -> Strategy | None:
    return {
        "least-confidence": lambda: make_strategy("least-confidence"),
        "margin": lambda: make_strategy("margin"),
        "entropy": lambda: make_strategy("entropy"),
        "coreset": lambda: make_strategy("coreset"),
        "fgsm-margin": lambda: make_strategy("fgsm-margin"),
        "dfal-exact": lambda: DFAL(mode="exact"),
        "dfal-top3": lambda: DFAL(mode="exact", top_k=3),
        "dfal-fast": lambda: DFAL(mode="fast"),
    }.get(method, lambda: None)()


def _first_order_scores(model: nn.Module, pool: Pool, ids: np.ndarray, ctx: ScoringContext) -> np.ndarray:
    return -per_item(model, pool, ids, ctx, lambda rows: attacks.linear_margin(model, rows), "first-order margin")


def _median_spread(values: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.median(arr)), float(arr.min()), float(arr.max())


def prepare(dataset: str, pool_size: int, labels: int, cfg: TrainConfig, seed: int, *, progress: bool = False):
    """Train a model on ``labels`` random items and pick ``pool_size`` other items to rank.

    Returns ``(dataset, model, labeled_ids, pool_ids, info)``.
    """
    ds = load_dataset(dataset)
    pool = ds.pool
    if not pool.has_targets:
        raise ConfigError(f"{dataset} has no labels: the bench trains on known labels")
    rng = np.random.default_rng(seed)
    if labels >= len(pool):
        raise ConfigError(f"--labels {labels} leaves no pool to rank ({len(pool)} items)")
    labeled = np.sort(rng.choice(pool.ids, labels, replace=False))
    rest = np.setdiff1d(pool.ids, labeled)
    pool_ids = np.sort(rng.choice(rest, min(pool_size, len(rest)), replace=False))
    t0 = time.perf_counter()
    model = train(pool, labeled, pool.targets(labeled), cfg, progress=progress)
    info: dict[str, Any] = {"train_s": time.perf_counter() - t0, "parameters": count_parameters(model),
                            "labels": int(labels), "architecture": type(model).__name__}
    if ds.test is not None:
        info["test_accuracy"] = evaluate(model, ds.test, replace(cfg, epsilon=0.0)).accuracy
    return ds, model, labeled, pool_ids, info


def scoring_bench(cfg: ScoringBenchConfig, *, progress: bool = False,
                  report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every method in ``cfg.methods`` on one model and pool; returns a JSON-ready dict.

    ``report`` (e.g. ``click.echo`` to stderr) receives one line per finished timing.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = report or (lambda line: log.info("%s", line))
    device = resolve_device(cfg.device)
    train_cfg = replace(cfg.train, seed=cfg.seed, device=str(device))
    ds, model, labeled, ids, model_info = prepare(cfg.dataset, cfg.pool, cfg.labels, train_cfg, cfg.seed,
                                                  progress=progress)
    pool = ds.pool
    say(f"model: {model_info['parameters']:,} parameters trained on {cfg.labels} labels in "
        f"{model_info['train_s']:.1f}s; ranking {len(ids)} items")
    n_top = max(1, round(cfg.top_fraction * len(ids)))
    rng = np.random.default_rng(cfg.seed + 1)
    probe_ids = ids[: min(cfg.probe, len(ids))]
    warm_ids = ids[: min(cfg.warmup, len(ids))]
    available = third_party_available()
    methods = [m for m in METHODS if m in cfg.methods]
    skipped = {m: "not installed (pip install 'activeadv[bench]')" for m in methods
               if m in THIRD_PARTY and (not available[m] or cfg.third_party <= 0)}
    if cfg.third_party <= 0:
        skipped = {m: "--third-party 0" for m in skipped}
    methods = [m for m in methods if m not in skipped]
    sub_ids = np.sort(rng.choice(ids, min(cfg.third_party, len(ids)), replace=False)) if cfg.third_party else ids[:0]
    ctx = ScoringContext(labeled_ids=labeled, batch_size=cfg.attack_batch_size, progress=progress,
                         rows=cfg.slice_rows)
    prob_ctx = ScoringContext(labeled_ids=labeled, batch_size=cfg.batch_size, progress=progress, rows=cfg.slice_rows)

    def runner(method: str) -> tuple[Callable[[np.ndarray], np.ndarray | None], np.ndarray]:
        """(run(ids) -> scores or None, the ids it is timed on)."""
        if method == "forward":
            return lambda i: forward_pass(model, pool, i, prob_ctx), ids
        if method == UNIT:
            return lambda i: forward_backward(model, pool, i, ctx), ids
        if method == "first-order-margin":
            return lambda i: _first_order_scores(model, pool, i, ctx), ids
        if method == "torchattacks-deepfool":
            return lambda i: -torchattacks_deepfool(model, pool.load(i).to(device)), sub_ids
        if method == "art-deepfool":
            return lambda i: -art_deepfool(model, pool.load(i).to(device), pool.num_classes), sub_ids
        strategy = _strategy_for(method)
        assert strategy is not None
        use = prob_ctx if method in ("least-confidence", "margin", "entropy", "coreset") else ctx
        return lambda i: strategy.score(model, pool, i, use), ids

    # the exact reference on the third-party subset, for their rank correlation
    rows: list[dict[str, Any]] = []
    scores_of: dict[str, np.ndarray] = {}
    for method in methods:
        run, on = runner(method)
        run(warm_ids if on is ids else on[: min(len(on), 16)])  # warm-up (allocator, MKL-DNN kernels)
        rates, ratios, probes = [], [], []
        for r in range(cfg.repeats):
            _sync(device)
            t0 = time.perf_counter()
            forward_backward(model, pool, probe_ids, ctx)
            _sync(device)
            probe_rate = len(probe_ids) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            scores = run(on)
            _sync(device)
            rate = len(on) / (time.perf_counter() - t0)
            rates.append(rate)
            probes.append(probe_rate)
            ratios.append(rate / probe_rate)
            if r == 0 and scores is not None:
                scores_of[method] = np.asarray(scores, dtype=np.float64)
        med, lo, hi = _median_spread(rates)
        row = {"method": method, "images": int(len(on)), "runs": [round(v, 2) for v in rates],
               "images_per_s": med, "spread": [lo, hi], "ratio_to_unit": float(np.median(ratios)),
               "unit_probe_images_per_s": float(np.median(probes))}
        strategy = _strategy_for(method)
        if strategy is not None:
            row["strategy"] = repr(strategy)
        rows.append(row)
        say(f"{method:>22}: {med:9.1f} img/s (min {lo:.1f}, max {hi:.1f}); x{row['ratio_to_unit']:.3f} of {UNIT}")

    # agreement with exact DeepFool
    reference = scores_of.get(EXACT)
    position = {int(i): p for p, i in enumerate(ids)}
    for row in rows:
        scores = scores_of.get(str(row["method"]))
        if reference is None or scores is None:
            continue
        if row["images"] == len(ids):
            row["top_n_overlap"] = top_overlap(scores, reference, n_top)
            row["rank_correlation"] = rank_correlation(scores, reference)
        else:  # third party: rank correlation on its subset
            ref_sub = reference[[position[int(i)] for i in sub_ids]]
            row["rank_correlation"] = rank_correlation(scores, ref_sub)
    by_name = {row["method"]: row for row in rows}
    for row in rows:
        for other in THIRD_PARTY:
            if other in by_name and row["method"] not in (other, "forward", UNIT):
                row[f"x_{other.split('-')[0]}"] = row["images_per_s"] / by_name[other]["images_per_s"]
    if EXACT in by_name and "dfal-fast" in by_name:
        say(f"dfal-fast: top-{n_top} overlap with exact DeepFool {by_name['dfal-fast'].get('top_n_overlap', 0):.2f}, "
            f"{by_name['dfal-fast']['images_per_s'] / by_name[EXACT]['images_per_s']:.1f}x faster")
    config = asdict(cfg)
    config["train"] = train_cfg.to_dict()
    return {
        "benchmark": "scoring", "machine": machine_info(device), "config": config, "model": model_info,
        "pool": int(len(ids)), "top_n": int(n_top), "unit": UNIT, "reference": EXACT if reference is not None else None,
        "third_party_images": int(len(sub_ids)), "skipped": skipped, "rows": rows,
    }


# -------------------------------------------------------------------- round
@dataclass(frozen=True)
class RoundBenchConfig:
    dataset: str = "digits"
    strategy: str = "dfal"
    pool: int | None = None  # candidates ranked each round (None: the whole pool)
    initial: int = 100
    query: int = 40
    rounds: int = 3
    train: TrainConfig = field(default_factory=TrainConfig)
    threads: int | None = None
    device: str = "auto"
    seed: int = 0


class _TimedStrategy(Strategy):
    """Delegates scoring and choosing and records how long scoring took, so select()'s own work (the ranking,
    the strategy's choice of the batch, the predictions) can be told apart."""

    def __init__(self, inner: Strategy) -> None:
        self.inner, self.seconds = inner, 0.0
        self.name = inner.name  # type: ignore[misc]
        self.diversity, self.diversity_factor = inner.diversity, inner.diversity_factor

    def params(self):
        return self.inner.params()

    def score(self, model, pool, ids, ctx):
        t0 = time.perf_counter()
        try:
            return self.inner.score(model, pool, ids, ctx)
        finally:
            self.seconds += time.perf_counter() - t0

    def choose(self, model, pool, ids, scores, ranked, n, ctx, rng):
        return self.inner.choose(model, pool, ids, scores, ranked, n, ctx, rng)


def round_bench(cfg: RoundBenchConfig, *, progress: bool = False,
                report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time ``rounds`` store-less rounds (train, evaluate, score, select) with ground-truth labels."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = report or (lambda line: log.info("%s", line))
    device = resolve_device(cfg.device)
    train_cfg = replace(cfg.train, seed=cfg.seed, device=str(device))
    ds = load_dataset(cfg.dataset)
    pool = ds.pool
    if not pool.has_targets or ds.test is None:
        raise ConfigError(f"{cfg.dataset}: the round bench needs labels and a test split")
    rng = np.random.default_rng(cfg.seed)
    universe = pool.ids if cfg.pool is None else np.sort(rng.choice(pool.ids, min(cfg.pool, len(pool)),
                                                                     replace=False))
    labeled = np.sort(rng.choice(universe, min(cfg.initial, len(universe)), replace=False))
    strategy = make_strategy(cfg.strategy)
    rounds = []
    state = None  # the previous round's weights, for --warm-start
    suite = train_cfg.robustness_config()  # the per-round robustness suite (None: --eval-subset 0)
    earlier: list[nn.Module] = []
    for number in range(cfg.rounds):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        model = train(pool, labeled, pool.targets(labeled), train_cfg, progress=progress,
                      unlabeled_ids=np.setdiff1d(universe, labeled) if train_cfg.unlabeled != "none" else None,
                      init_state=state if train_cfg.warm_start else None)
        state = model.state_dict() if train_cfg.warm_start else None
        _sync(device)
        timings["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = evaluate(model, ds.test, train_cfg, progress=progress)
        timings["evaluate"] = time.perf_counter() - t0
        if suite is not None:  # as a project round: transfer from the previous rounds' models
            t0 = time.perf_counter()
            evaluate_robustness(model, ds.test, suite, surrogates=earlier[-train_cfg.eval_surrogates:]
                                if train_cfg.eval_surrogates else [], progress=progress)
            _sync(device)
            timings["robustness"] = time.perf_counter() - t0
            earlier = [*earlier, model][-max(train_cfg.eval_surrogates, 1):]
        candidates = np.setdiff1d(universe, labeled)
        timed = _TimedStrategy(strategy)
        t0 = time.perf_counter()
        selection = select(timed, model, pool, candidates, cfg.query, rng=rng, labeled_ids=labeled,
                           progress=progress)
        total = time.perf_counter() - t0
        timings["score"] = timed.seconds
        timings["select"] = total - timed.seconds
        timings["total"] = sum(timings.values())
        rounds.append({"round": number, "labels": int(len(labeled)), "candidates": int(len(candidates)),
                       "accuracy": metrics.accuracy, "fgsm_accuracy": metrics.fgsm_accuracy, "seconds": timings})
        say(f"round {number}: {len(labeled)} labels, acc {metrics.accuracy:.3f}, "
            + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
        labeled = np.union1d(labeled, selection.item_ids)  # the simulated annotators answer at once
    phases = ("train", "evaluate", *(("robustness",) if suite is not None else ()), "score", "select", "total")
    summary = {p: dict(zip(("median", "min", "max"), _median_spread([r["seconds"][p] for r in rounds])))  # type: ignore[index]
               for p in phases}
    config = asdict(cfg)
    config["train"] = train_cfg.to_dict()
    return {"benchmark": "round", "machine": machine_info(device), "config": config, "strategy": repr(strategy),
            "store": "none (engine only: train -> evaluate -> select, labels from ground truth)",
            "rounds": rounds, "phases": summary}


# ---------------------------------------------------------------- rank pool
def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def rank_pool(dataset: str, strategy_name: str = "dfal", *, labels: int = 200, train_cfg: TrainConfig | None = None,
              batch_size: int = 256, limit: int | None = None, threads: int | None = None, device: str = "auto",
              seed: int = 0, progress: bool = False, report: Callable[[str], None] | None = None,
              strategy_params: dict[str, Any] | None = None, slice_rows: int | None = None,
              execution: Execution = Execution()) -> dict[str, Any]:
    """Rank a whole pool, streamed in batches, and report images/s and peak RSS vs one tensor of the pool.

    The model is trained on ``labels`` random items (loaded once); the rest
    (or ``limit`` of them) are ranked by ``select`` with n = 1% of them, in
    this process or on Ray (``execution``; the cluster is joined before the
    clock starts, its start-up reported apart).  ``selected_sha1`` fingerprints
    the picks, so runs on different executors can be compared for identical
    top-n; peak RSS is this (the driver's) process only.
    """
    if threads:
        torch.set_num_threads(threads)
    say = report or (lambda line: log.info("%s", line))
    dev = resolve_device(device)
    cfg = replace(train_cfg or TrainConfig(epochs=5, min_steps=100, max_steps=100), seed=seed, device=str(dev))
    t0 = time.perf_counter()
    ds = load_dataset(dataset)
    pool = ds.pool
    scan_s = time.perf_counter() - t0
    rss_after_scan = peak_rss_bytes()
    rng = np.random.default_rng(seed)
    labeled = np.sort(rng.choice(pool.ids, min(labels, len(pool) - 1), replace=False))
    if not pool.has_targets:
        raise ConfigError(f"{dataset}: rank needs labels to train its model (one sub-folder per class)")
    t0 = time.perf_counter()
    model = train(pool, labeled, pool.targets(labeled), cfg, progress=progress)
    train_s = time.perf_counter() - t0
    rss_after_train = peak_rss_bytes()
    t0 = time.perf_counter()
    ranker = execution.ranker(cfg.arch)  # joins (or starts) the Ray cluster
    ray_start_s = time.perf_counter() - t0
    candidates = np.setdiff1d(pool.ids, labeled)
    if limit is not None:
        candidates = candidates[:limit]
    strategy = make_strategy(strategy_name, **(strategy_params or {}))
    n = max(1, len(candidates) // 100)
    say(f"ranking {len(candidates):,} items with {strategy!r} (scan {scan_s:.1f}s, train {train_s:.1f}s)")
    t0 = time.perf_counter()
    selection = select(strategy, model, pool, candidates, n, rng=rng, labeled_ids=labeled, batch_size=batch_size,
                       progress=progress, rows=slice_rows, ranker=ranker)
    rank_s = time.perf_counter() - t0
    one_tensor = int(len(pool) * math.prod(pool.input_shape) * 4)
    peak = peak_rss_bytes()
    return {"benchmark": "rank", "machine": machine_info(dev), "dataset": dataset, "pool_class": type(pool).__name__,
            "items": int(len(pool)), "ranked": int(len(candidates)), "selected": int(len(selection)),
            "strategy": repr(strategy), "batch_size": batch_size, "slice_rows": slice_rows,
            "executor": execution.executor, "ray_workers": execution.ray_workers if execution.on_ray else None,
            "ray_start_s": ray_start_s if execution.on_ray else None,
            "selected_sha1": hashlib.sha1(np.asarray(selection.item_ids, dtype=np.int64).tobytes()).hexdigest(),
            "selected_ids": [int(i) for i in selection.item_ids],
            "scan_s": scan_s, "train_s": train_s,
            "rank_s": rank_s, "images_per_s": len(candidates) / rank_s, "peak_rss_bytes": peak,
            "peak_rss_after_scan_bytes": rss_after_scan, "peak_rss_after_train_bytes": rss_after_train,
            "pool_as_one_float32_tensor_bytes": one_tensor,
            "rss_over_tensor": peak / one_tensor, "unreadable": int(len(pool.unreadable))}
