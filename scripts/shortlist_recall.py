"""How large must DFAL's first-order shortlist be to contain exact DeepFool's top n?

For models trained on 1,000 and 200 random MNIST labels, exact DeepFool and the
first-order distance are computed for POOL other images; for n in 10..200 the
script reports which fraction of exact DeepFool's top n lies inside the
first-order top k*n (k = 1, 2, 3, 5, 10) and inside the top 256.  This is the
measurement behind DFAL's ``per_pick`` (docs/benchmarks.md, section 1d):

    python scripts/shortlist_recall.py --pool 20000 --out docs/results/shortlist_recall_mnist.json
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from activeadv import attacks
from activeadv.acquisition import DFAL, ScoringContext, per_item
from activeadv.perfbench import prepare
from activeadv.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="idx:../shared/data/mnist")
    parser.add_argument("--pool", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for labels, seed in ((1000, 0), (200, 1)):
        ds, model, _, ids, info = prepare(args.dataset, args.pool, labels,
                                          TrainConfig(epochs=10, min_steps=300, max_steps=300), seed)
        ctx = ScoringContext(batch_size=512)
        t0 = time.perf_counter()
        exact = DFAL(mode="exact")._deepfool(model, ds.pool, ids, ctx)
        exact_s = time.perf_counter() - t0
        first = per_item(model, ds.pool, ids, ctx, partial(attacks.linear_margin, model), "first-order")
        by_first, by_exact = np.argsort(first, kind="stable"), np.argsort(exact, kind="stable")
        recall = {}
        for n in (10, 20, 40, 100, 200):
            top = set(by_exact[:n].tolist())
            row = {f"x{k}": len(top & set(by_first[: k * n].tolist())) / n for k in (1, 2, 3, 5, 10)}
            row["top256"] = len(top & set(by_first[:256].tolist())) / n
            recall[n] = row
        results[f"labels={labels}"] = {"test_accuracy": info.get("test_accuracy"), "pool": int(len(ids)),
                                       "exact_deepfool_s": exact_s, "recall": recall}
        print(json.dumps({f"labels={labels}": results[f"labels={labels}"]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
