"""Do dfal and the probability-based strategies ask for the same items?  (Why margin ties dfal on MNIST.)

For the labeled sets a ``simulate`` curve held at a few budgets (its points.jsonl records every round's added
ids), the script retrains the round's model with the run's stored training settings, draws CANDIDATES other pool
items, and scores them with dfal (as a round does: fast mode, ``n`` = the query size), margin, least-confidence
and entropy.  It reports, for each strategy against dfal, how many of the ``n`` items it would ask are also
dfal's, and the rank correlation of the scores over all candidates; and, for DeepFool's first-order distance
``|f_k - f_j| / ||grad (f_k - f_j)||``, how much of its order comes from the logit gap alone: the spread of the
gradient norms among the closest candidates and the rank correlation of distance and gap.

    python scripts/selection_overlap.py --points docs/results/study620-cpu/none/points.jsonl \
        --strategy dfal --seed 0 --budgets 100,300,580 --out docs/results/study620-cpu/selection_overlap.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from activeadv import attacks
from activeadv.acquisition import ScoringContext, make_strategy, per_item
from activeadv.data import load_dataset
from activeadv.simulation import labeled_at, read_point_log
from activeadv.training import TrainConfig, evaluate, stored_settings, train


def gap_and_gradient(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit gap to the runner-up and the norm of its input gradient (the two factors of the first-order distance)."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    top2 = logits.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    (grad,) = torch.autograd.grad(gap.sum(), x)
    return gap.detach(), grad.flatten(1).norm(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=Path, required=True)
    parser.add_argument("--dataset", default="idx:../shared/data/mnist")
    parser.add_argument("--strategy", default="dfal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", default="100,300,580")
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--others", default="margin,least-confidence,entropy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings, logged = read_point_log(args.points)
    points = [point for point, _ in logged]
    stored = TrainConfig(**{**stored_settings(settings["train"]), "device": "cpu"})
    n = int(settings["query_size"])
    ds = load_dataset(args.dataset)
    pool = ds.pool
    dfal = make_strategy("dfal", mode=settings.get("dfal_mode", "fast"))  # as the run ranked
    others = {name: make_strategy(name) for name in args.others.split(",")}
    results = {}
    for budget in (int(b) for b in args.budgets.split(",")):
        labeled = np.sort(labeled_at(points, args.strategy, args.seed, budget))
        round_no = next(p.round for p in points
                        if p.strategy == args.strategy and p.seed == args.seed and p.labels == budget)
        cfg = replace(stored, seed=args.seed * 1000 + round_no)  # the round's own model seed (simulation.py)
        rest = np.setdiff1d(pool.ids, labeled)
        model = train(pool, labeled, pool.targets(labeled), cfg,
                      unlabeled_ids=rest if cfg.unlabeled != "none" else None)  # as simulate trains a round
        model.eval()
        rng = np.random.default_rng(args.seed * 1000 + budget)
        ids = np.sort(rng.choice(rest, min(args.candidates, len(rest)), replace=False))
        ctx = ScoringContext(labeled_ids=labeled, n=n)
        base = dfal.score(model, pool, ids, ctx)
        first = per_item(model, pool, ids, ctx, partial(attacks.linear_margin, model, top_k=1), "first")
        top = set(np.argsort(-base, kind="stable")[:n].tolist())
        row: dict = {"labels": budget, "test_accuracy": evaluate(model, ds.test, cfg).accuracy,
                     "candidates": int(len(ids)), "n": n, "versus_dfal": {}}
        for name, strategy in others.items():
            scores = strategy.score(model, pool, ids, ScoringContext(labeled_ids=labeled, n=n))
            picks = set(np.argsort(-scores, kind="stable")[:n].tolist())
            row["versus_dfal"][name] = {
                "shared_of_n": len(picks & top),
                "spearman_vs_first_order": float(spearmanr(scores, -first).statistic),
            }
        gaps, norms = [], []
        with torch.enable_grad():
            for start in range(0, len(ids), 512):
                gap, norm = gap_and_gradient(model, pool.load(ids[start:start + 512]))
                gaps.append(gap.numpy())
                norms.append(norm.numpy())
        gap_all, norm_all = np.concatenate(gaps), np.concatenate(norms)
        closest = np.argsort(first, kind="stable")[: 10 * n]
        by_gap = set(np.argsort(gap_all, kind="stable")[:n].tolist())
        row["first_order"] = {
            "spearman_distance_vs_gap": float(spearmanr(first, gap_all).statistic),
            "gap_top_n_shared_with_dfal": len(by_gap & top),
            "gradient_norm_cv_closest_10n": float(norm_all[closest].std() / norm_all[closest].mean()),
            "gradient_norm_cv_all": float(norm_all.std() / norm_all.mean()),
        }
        results[str(budget)] = row
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"points": str(args.points), "strategy": args.strategy, "seed": args.seed,
                                        "budgets": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
