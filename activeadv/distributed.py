"""Scoring a pool (Ray Data) and training (Ray Train) on a Ray cluster, for pools past one machine.

``RayRanker`` is an ``acquisition.Ranker``: ``select`` hands it the
candidates and the seeded tie-break order, it returns the best ``ctx.n``
(= n, or diversity_factor x n) with their scores, and ``select`` lets the
strategy choose from them as it does locally, so ties, ``+kcenter`` /
``+kmeans++`` and the model's predictions for the picks are the same code.

How: the candidate ids become a Ray dataset; ``map_batches`` runs
``_BatchScorer``, a callable class whose actors each load the round's model
once (the checkpoint payload of ``training.save_checkpoint``, through the
object store, so a remote cluster needs no shared disk for it) and the pool
(``ray.put``: pixels are still read by each actor from the pool's own
source, so a folder or manifest must be readable from every node).  The
driver merges the stream of per-batch scores into a running top-k, so it
never holds a score per candidate.  Actors are restartable and their tasks
retried: a worker that dies mid-pass is replaced and its batch scored again,
and the round completes once.

Strategies: every per-item score (random, least-confidence, margin, entropy,
fgsm-margin, dfal exact) runs in one pass; dfal fast in two (the first-order
margin of every candidate, then exact DeepFool on the shortlist the driver
kept), as ``DFAL.rank_distances`` does locally.  coreset needs every
candidate's embedding on one machine for its k-center greedy: refused.

Training (``train_on_ray``, ``--train-workers N``): a ``TorchTrainer`` runs
``training.train`` in N processes with the model in DistributedDataParallel
(gloo on CPUs, NCCL on GPUs).  Each process draws the same global batch and
keeps its rows (``training.Shard``), so N workers take the same steps as one
process with the whole batch: what matters when the unlabeled term reads
the pool, since each step's unlabeled batch is split N ways too.

Ray is optional (``pip install 'activeadv[ray]'``); nothing imports this module unless ``--executor ray`` is asked.
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activeadv import attacks
from activeadv.acquisition import DFAL, CoreSet, ScoringContext, Strategy, per_item
from activeadv.data import Pool, chunks
from activeadv.errors import ConfigError

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError("--executor ray needs Ray: pip install 'activeadv[ray]'") from None
    return ray


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``), or start a local one; once."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)


def checkpoint_payload(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, arch: str) -> bytes:
    """The model as ``training.save_checkpoint`` writes it, in memory (for the object store)."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "config": {"arch": arch}, "meta": {},
                "input_shape": list(input_shape), "num_classes": num_classes}, buffer)
    return buffer.getvalue()


class _BatchScorer:
    """One Ray Data actor: the model and the pool loaded once, then a value per id for each batch.

    ``kind``: ``score`` (the strategy's own per-item score), ``first_order``
    (DFAL's first-order distance) or ``deepfool`` (DFAL's exact distance).
    """

    def __init__(self, payload: Any, pool: Any, strategy: Strategy, kind: str, batch_size: int,
                 rows: int | None, threads: int) -> None:
        import ray

        from activeadv.training import load_checkpoint

        torch.set_num_threads(max(1, threads))
        payload = ray.get(payload) if isinstance(payload, ray.ObjectRef) else payload
        self.pool: Pool = ray.get(pool) if isinstance(pool, ray.ObjectRef) else pool
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        self.model = load_checkpoint(None, device, payload=state)  # type: ignore[arg-type]  # payload given
        self.strategy, self.kind = strategy, kind
        self.ctx = ScoringContext(batch_size=batch_size, rows=rows)

    def values(self, ids: np.ndarray) -> np.ndarray:
        if self.kind == "score":
            return np.asarray(self.strategy.score(self.model, self.pool, ids, self.ctx), dtype=np.float64)
        assert isinstance(self.strategy, DFAL)
        if self.kind == "first_order":
            return per_item(self.model, self.pool, ids, self.ctx,
                            lambda rows: attacks.linear_margin(self.model, rows, top_k=1), "first-order margin")
        return self.strategy._deepfool(self.model, self.pool, ids, self.ctx)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch["data"], dtype=np.int64)
        return {"id": ids, "value": self.values(ids)}


@dataclass
class RayRanker:
    """``acquisition.Ranker`` on Ray Data; see the module docstring.

    ``workers``: scoring actors (each ``cpus_per_worker`` CPUs, ``gpus_per_worker``
    GPUs); ``arch``: the network's architecture name (to rebuild it in the actors).
    """

    arch: str
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int | None = None  # ids per actor call [ctx.batch_size x 4]
    scorer: type = _BatchScorer  # tests pass a subclass (e.g. one that dies once)

    def __call__(self, strategy: Strategy, model: nn.Module, pool: Pool, pool_ids: np.ndarray, order: np.ndarray,
                 ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(strategy, CoreSet):
            raise ConfigError("coreset needs every candidate's embedding on one machine: use --executor local")
        ray = _ray()
        connect()
        keep = len(pool_ids) if ctx.n is None else min(len(pool_ids), int(ctx.n))
        tiebreak = np.empty(len(order), dtype=np.int64)
        tiebreak[order] = np.arange(len(order))  # rank of each position in the seeded order
        refs = (ray.put(checkpoint_payload(model, pool.input_shape, pool.num_classes, self.arch)), ray.put(pool))
        if isinstance(strategy, DFAL) and strategy.mode == "fast" and strategy.shortlist_size(
                len(pool_ids), ctx.n) < len(pool_ids):
            ids, scores = self._dfal_fast(strategy, pool_ids, keep, ctx, refs)
        else:
            ids, scores = _top(self._stream(strategy, "score", pool_ids, ctx, refs), pool_ids, tiebreak, keep)
        positions = np.searchsorted(pool_ids, ids)
        ranked = np.lexsort((tiebreak[positions], -scores))
        return ids, scores, ranked

    def _dfal_fast(self, strategy: DFAL, pool_ids: np.ndarray, keep: int, ctx: ScoringContext,
                   refs: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
        """DFAL fast: the first-order distance everywhere, exact DeepFool on the driver's shortlist."""
        size = strategy.shortlist_size(len(pool_ids), ctx.n)
        by_position = np.arange(len(pool_ids), dtype=np.int64)  # ties of the estimate: candidate order
        near_ids, near_dist = _top(self._stream(strategy, "first_order", pool_ids, ctx, refs), pool_ids,
                                   by_position, size + keep, negate=True)
        short = np.sort(near_ids[:size])
        exact_ids, exact_dist = _top(self._stream(strategy, "deepfool", short, ctx, refs), short,
                                     np.arange(len(short), dtype=np.int64), len(short), negate=True)
        offset = exact_dist.max() if len(exact_dist) else 0.0
        rest = ~np.isin(near_ids, short)
        ids = np.concatenate([exact_ids, near_ids[rest]])
        scores = np.concatenate([-exact_dist, -(offset + near_dist[rest])])
        return ids, scores

    def _stream(self, strategy: Strategy, kind: str, ids: np.ndarray, ctx: ScoringContext,
                refs: tuple[Any, Any]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, values)`` per scored batch, as the actors finish them (any order)."""
        import ray.data

        # ``from_numpy``'s one column is ``data``; no other operator, so no task competes with the actors for CPUs
        size = self.batch_size or ctx.batch_size * 4
        dataset = ray.data.from_numpy(list(chunks(np.asarray(ids, dtype=np.int64), size)))  # a block per batch
        scored = dataset.map_batches(
            self.scorer, batch_format="numpy", batch_size=size,
            fn_constructor_kwargs={"payload": refs[0], "pool": refs[1], "strategy": strategy, "kind": kind,
                                   "batch_size": ctx.batch_size, "rows": ctx.rows,
                                   "threads": int(max(1, self.cpus_per_worker))},
            compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker or None,
            max_restarts=-1, max_task_retries=-1)  # a dead worker is replaced, its batch scored again
        for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
            yield np.asarray(batch["id"], dtype=np.int64), np.asarray(batch["value"], dtype=np.float64)


def _top(batches: Iterator[tuple[np.ndarray, np.ndarray]], all_ids: np.ndarray, tiebreak: np.ndarray, k: int, *,
         negate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(id, value)`` of a stream, highest value first (lowest with ``negate``), equal values by
    ``tiebreak`` (indexed by position in the sorted ``all_ids``): memory ``O(k + batch)``, not ``O(pool)``."""
    best_ids, best_values = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    for ids, values in batches:
        ids, values = np.concatenate([best_ids, ids]), np.concatenate([best_values, values])
        key = values if negate else -values
        order = np.lexsort((tiebreak[np.searchsorted(all_ids, ids)], key))[:k]
        best_ids, best_values = ids[order], values[order]
    return best_ids, best_values


def make_ranker(*, arch: str, workers: int = 1, address: str | None = None,
                gpus_per_worker: float | None = None) -> RayRanker:
    """The Ray Data ranker (``Execution.ranker``); connects first.

    ``gpus_per_worker`` None: one GPU per actor when the cluster has GPUs, none otherwise.
    """
    ray = _ray()
    connect(address)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return RayRanker(arch=arch, workers=workers, gpus_per_worker=gpus_per_worker)


# ------------------------------------------------------------------------------------------- training
TRAINED_STATE = "model.pt"  # the file in the checkpoint directory rank 0 reports
STORAGE_ENV = "ACTIVEADV_RAY_STORAGE"  # shared storage for Ray Train's checkpoint on a multi-node cluster


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train process: ``training.train`` on its shard, DDP-wrapped; rank 0 reports the weights."""
    import ray
    import ray.train
    import ray.train.torch

    from activeadv import training

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config["threads"])))
    pool = ray.get(config["pool"])
    device = ray.train.torch.get_device()
    cfg = replace(config["cfg"], device=str(device))
    model = training.train(pool, config["ids"], config["labels"], cfg, **config["train_kwargs"],
                           progress=config["progress"] and rank == 0, shard=training.Shard(rank, world),
                           wrap=lambda m: ray.train.torch.prepare_model(m, move_to_device=False))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, Path(folder) / TRAINED_STATE)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"rank": rank}, checkpoint=checkpoint)


def train_on_ray(pool: Pool, ids: np.ndarray, labels: np.ndarray, cfg: Any, *, workers: int,
                 progress: bool = False, use_gpu: bool | None = None, storage: str | None = None,
                 static_models: Sequence[nn.Module] = (), **train_kwargs: Any) -> nn.Module:
    """``training.train`` as ``workers`` data-parallel Ray Train processes; the trained model on ``cfg.device``.

    ``train_kwargs``: ``training.train``'s (``unlabeled_ids``, ``init_state``, ``extra_x``, ...), shipped to
    every worker; ``static_models`` go as CPU copies.

    ``use_gpu`` None: one GPU per worker when the cluster has that many.
    ``storage``: where Ray Train keeps the run's checkpoint (a folder every
    node can write, e.g. ``s3://bucket/prefix``, on a multi-node cluster);
    default ``$ACTIVEADV_RAY_STORAGE``, else a temporary folder (right for a
    one-machine cluster only: a worker on another node would write it there).
    """
    from activeadv.training import resolve_device

    if workers < 1:
        raise ConfigError("--train-workers must be >= 1")
    ray = _ray()
    connect()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
    # each worker reserves the CPUs its torch threads use (a share of the cluster), so none is oversubscribed
    threads = max(1, int(ray.cluster_resources().get("CPU", 1) // workers))
    train_kwargs["static_models"] = [copy.deepcopy(m).cpu() for m in static_models]
    config = {"pool": ray.put(pool), "ids": np.asarray(ids, dtype=np.int64),
              "labels": np.asarray(labels, dtype=np.int64), "cfg": cfg, "train_kwargs": train_kwargs,
              "progress": progress, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="activeadv-train-") as local:
        trainer = TorchTrainer(_train_worker, train_loop_config=config,
                               scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                                            resources_per_worker={"CPU": threads}),
                               run_config=RunConfig(storage_path=storage or os.environ.get(STORAGE_ENV) or local,
                                                    name=f"activeadv-train-{uuid.uuid4().hex[:8]}"))
        try:
            result = trainer.fit()
        except Exception as exc:  # TrainingFailedError wraps the worker's error: one line, not Ray's traceback
            raise ConfigError(f"training on Ray failed: {str(exc).strip().splitlines()[-1]}") from None
        if result.checkpoint is None:
            raise ConfigError("training on Ray finished without a model (no checkpoint reported)")
        with result.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / TRAINED_STATE, map_location="cpu", weights_only=True)
    from activeadv.networks import build_network

    model = build_network(pool.input_shape, pool.num_classes, cfg.arch)
    model.load_state_dict(state)
    return model.to(resolve_device(cfg.device)).eval()


def make_trainer(workers: int, *, address: str | None = None) -> Callable[..., nn.Module]:
    """``training.train``'s signature, run by ``workers`` Ray Train processes (``Execution.trainer``)."""
    connect(address)
    return functools.partial(train_on_ray, workers=workers)
