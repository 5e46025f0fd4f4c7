"""Measure training in this process against Ray Train with 1 and 2 data-parallel workers (``--train-workers``).

MNIST (``../shared/data/mnist``), a fixed random labeled set, the unlabeled term on (VAT: the case where training
reads the pool), the same steps everywhere; each configuration ``--repeats`` times, interleaved.  Prints seconds
(median, min, max; Ray's includes starting the worker group), steps/s and test accuracy.

    nice -n 10 .venv/bin/python scripts/scale_train.py --labels 300 --steps 500 --repeats 3 \
        --json docs/results/scale/train_mnist.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_store import emit  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=f"idx:{ROOT.parent / 'shared' / 'data' / 'mnist'}")
    parser.add_argument("--labels", type=int, default=300)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--unlabeled", default="vat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="0,1,2", help="0: this process (training.train)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import ray

    from activeadv.data import load_dataset
    from activeadv.distributed import train_on_ray
    from activeadv.training import TrainConfig, evaluate, train

    data = load_dataset(args.dataset)
    pool, test = data.pool, data.test
    labeled = np.sort(np.random.default_rng(0).choice(pool.ids, args.labels, replace=False))
    unlabeled = np.setdiff1d(pool.ids, labeled)
    cfg = TrainConfig(min_steps=args.steps, max_steps=args.steps, unlabeled_min_steps=args.steps,
                      unlabeled=args.unlabeled, device="cpu")
    ray.init(include_dashboard=False, logging_level="WARNING")
    runs: dict[int, list[tuple[float, float]]] = {int(w): [] for w in args.workers.split(",")}
    for repeat in range(args.repeats):
        for workers in runs:
            t0 = time.perf_counter()
            if workers == 0:
                model = train(pool, labeled, pool.targets(labeled), cfg, unlabeled_ids=unlabeled)
            else:
                model = train_on_ray(pool, labeled, pool.targets(labeled), cfg, workers=workers,
                                     unlabeled_ids=unlabeled)
            seconds = time.perf_counter() - t0
            accuracy = evaluate(model, test, replace(cfg, epsilon=0.0)).accuracy
            runs[workers].append((seconds, accuracy))
            print(f"[{repeat}] workers {workers}: {seconds:.1f}s, accuracy {accuracy:.4f}", file=sys.stderr,
                  flush=True)
    out = {"dataset": args.dataset, "labels": args.labels, "steps": args.steps, "unlabeled": args.unlabeled,
           "repeats": args.repeats, "cpus": ray.cluster_resources().get("CPU"), "runs": {}}
    for workers, rs in runs.items():
        secs = [s for s, _ in rs]
        out["runs"]["local" if workers == 0 else f"ray-{workers}"] = {
            "seconds_median": statistics.median(secs), "seconds_min": min(secs), "seconds_max": max(secs),
            "steps_per_s_median": args.steps / statistics.median(secs),
            "accuracy": [a for _, a in rs]}
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
