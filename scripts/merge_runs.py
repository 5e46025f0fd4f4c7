"""Merge the points of several `activeadv simulate` runs with the same settings into one set of outputs.

    python scripts/merge_runs.py --out runs/study/vat-3seeds --dataset idx:../shared/data/mnist \
        --target-accuracy 0.97 docs/results/mnist-study/vat-a docs/results/mnist-study/vat-b runs/study3/vat

Why: a study's curves come from several places (seed 0 last week, seeds 1-2 today, a GPU machine's share): each
run's points.jsonl holds its settings and every finished round, and this writes curves.csv, summary.json and
learning_curves.png over all of them, as one `simulate` run would.  Runs with other settings are refused (the
keys that differ are named); logs from before a rename (`candidates` -> `subsample`) or before a training option
existed (its default is assumed) are read.  A (strategy, seed) curve found in two runs is an error; an unfinished
curve is kept and marked in the summary's `incomplete` list.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from activeadv.records import CurvePoint
from activeadv.simulation import (
    POINTS_FILE,
    SimulationConfig,
    SimulationResult,
    normalized_settings,
    read_point_log,
    write_outputs,
)
from activeadv.stopping import StabilizingPredictions
from activeadv.training import TrainConfig


def read_run(folder: Path) -> tuple[dict, list[CurvePoint], list[dict[str, float]]]:
    """A run's settings (normalized, without the run's first seed), its points and each point's phase seconds."""
    header, logged = read_point_log(folder / POINTS_FILE)
    # a curve rerun after an interruption (--resume) logs its rounds again: the last of each round counts
    last = {(p.strategy, p.seed, p.round): i for i, (p, _) in enumerate(logged)}
    kept = [logged[i] for i in sorted(last.values())]
    settings = normalized_settings(header)
    # the training seed of a header is the run's first --seed; each curve's models are seeded from the curve's own
    # seed (seed * 1000 + round), so runs of other seeds are the same study
    settings["train"].pop("seed", None)
    return settings, [p for p, _ in kept], [phases for _, phases in kept]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="simulate --out folders (each with points.jsonl)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", required=True, help="the runs' dataset spec (for the summary)")
    parser.add_argument("--target-accuracy", type=float, required=True)
    args = parser.parse_args()
    settings, points = None, []
    phases: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seen: dict[tuple[str, int], Path] = {}
    for folder in args.runs:
        these, run_points, run_seconds = read_run(folder)
        if settings is None:
            settings = these
        elif these != settings:
            differ = sorted(k for k in set(these) | set(settings) if these.get(k) != settings.get(k))
            if "train" in differ:
                differ += [f"train.{k}" for k in these["train"] if these["train"][k] != settings["train"].get(k)]
            print(f"error: {folder} was run with other settings ({', '.join(differ)})", file=sys.stderr)
            return 1
        for key in {(p.strategy, p.seed) for p in run_points}:
            if key in seen:
                print(f"error: curve {key} is in both {seen[key]} and {folder}", file=sys.stderr)
                return 1
            seen[key] = folder
        points.extend(run_points)
        for point, sec in zip(run_points, run_seconds):
            for phase, value in sec.items():
                phases[point.strategy][phase].append(value)
    assert settings is not None
    train = TrainConfig(**settings["train"], seed=min(p.seed for p in points))
    cfg = SimulationConfig(strategies=tuple(dict.fromkeys(p.strategy for p in points)),
                           initial=settings["initial"], query_size=settings["query_size"], budget=settings["budget"],
                           seeds=tuple(sorted({p.seed for p in points})), subsample=settings.get("subsample"),
                           dfal_add_adversarial=settings["dfal_add_adversarial"], dfal_mode=settings["dfal_mode"],
                           target_accuracy=args.target_accuracy, oracle_error=settings["oracle_error"],
                           stopping=StabilizingPredictions(**settings["stopping"]), train=train)
    rounds = {(p.strategy, p.seed) for p in points}
    longest = max(sum(1 for p in points if (p.strategy, p.seed) == key) for key in rounds)
    incomplete = sorted(f"{s}/{seed}" for s, seed in rounds
                        if sum(1 for p in points if (p.strategy, p.seed) == (s, seed)) < longest)
    points.sort(key=lambda p: (p.seed, cfg.strategies.index(p.strategy), p.round))
    means = {name: {phase: float(np.mean(v)) for phase, v in by_phase.items()} for name, by_phase in phases.items()}
    result = SimulationResult(args.dataset, cfg, points, None, args.target_accuracy, means)
    summary = write_outputs(result, args.out)
    summary["merged_from"] = [str(f) for f in args.runs]
    summary["incomplete"] = incomplete
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(points)} points, {len(rounds)} curves ({len(incomplete)} incomplete) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
