"""Train once per configuration on the same random labeled set and print test accuracy: the probes behind the
training defaults in docs/results.md ("Learning from the unlabeled pool").

    python scripts/train_probe.py --labels 100 --threads 1 \
        '{"unlabeled": "none"}' '{"unlabeled": "vat"}' '{"unlabeled": "pseudo-fgsm"}' \
        '{"unlabeled": "vat", "vat_epsilon": 4.0}'

Each argument is a JSON object of TrainConfig fields over the defaults (device cpu, seed 1); the labeled set
is ``--labels`` random pool items (seed 0), and every other pool item is the unlabeled pool.

``--labels-from RUN_DIR --strategy dfal --seed 0`` trains on the ``--labels`` items that strategy chose in a
``simulate`` run instead (its points.jsonl holds each round's picks): what a longer final training makes of
an actively chosen set.

``--save-probs DIR`` also writes each model's test-set softmax (``DIR/<name>.npz``, with the test labels) so
that ``scripts/ensemble_probs.py`` can score the average of several model seeds' predictions.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from activeadv.data import load_dataset
from activeadv.errors import ConfigError
from activeadv.simulation import POINTS_FILE, labeled_at, read_point_log
from activeadv.training import TrainConfig, evaluate, predict_proba, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="JSON objects of TrainConfig overrides")
    parser.add_argument("--dataset", default="idx:../shared/data/mnist")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device (cuda on a GPU machine)")
    parser.add_argument("--labels-from", help="a simulate --out directory: train on a strategy's picks")
    parser.add_argument("--strategy", default="dfal", help="with --labels-from: whose picks")
    parser.add_argument("--seed", type=int, default=0, help="with --labels-from: which curve")
    parser.add_argument("--save-probs", type=Path, help="write each model's test softmax here (.npz)")
    parser.add_argument("--name", help="with --save-probs: the file name (default: the source and model seed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    pool, test = data.pool, data.test
    if args.labels_from:
        _, logged = read_point_log(Path(args.labels_from) / POINTS_FILE)
        ids = np.sort(labeled_at([p for p, _ in logged], args.strategy, args.seed, args.labels))
    else:
        ids = np.sort(np.random.default_rng(0).choice(pool.ids, args.labels, replace=False))
    unlabeled = np.setdiff1d(pool.ids, ids)
    for text in args.configs:
        overrides = json.loads(text)
        cfg = replace(TrainConfig(device=args.device, seed=1, eval_adv_max=500), **overrides)
        start = time.perf_counter()
        model = train(pool, ids, pool.targets(ids), cfg, unlabeled_ids=unlabeled)
        seconds = time.perf_counter() - start
        metrics = evaluate(model, test, cfg)
        source = f"{args.strategy} seed {args.seed}" if args.labels_from else "random"
        if args.save_probs:
            save_probs(args.save_probs, args.name or f"{source}-m{cfg.seed}".replace(" ", "-"), model, test, source,
                       overrides)
        print(json.dumps({"config": overrides, "labels": args.labels, "chosen_by": source,
                          "accuracy": round(metrics.accuracy, 4), "fgsm_accuracy": metrics.fgsm_accuracy,
                          "train_seconds": round(seconds, 1)}), flush=True)


def save_probs(folder: Path, name: str, model: torch.nn.Module, test, source: str, overrides: dict) -> None:
    """The test softmax as float32 beside the labels: an ensemble is scored later without the models."""
    folder.mkdir(parents=True, exist_ok=True)
    probs = predict_proba(model, test, test.ids).astype(np.float32)
    np.savez_compressed(folder / f"{name}.npz", probs=probs, targets=test.targets(test.ids),
                        chosen_by=source, config=json.dumps(overrides))


if __name__ == "__main__":
    try:
        main()
    except ConfigError as exc:  # a bad --labels-from: one line, not a traceback
        raise SystemExit(f"error: {exc}") from None
