"""Markdown tables of a simulate study (scripts/mnist_study.sh): one row per strategy and training setting.

    python scripts/study_table.py runs/study/none runs/study/vat
    python scripts/study_table.py --versus dfal --from-labels 100 runs/ema/vat-ema runs/ema/base-random ...

Reads each folder's summary.json and curves.csv (written by `activeadv simulate`).  ``--versus S`` prints
instead, for every other strategy in the folders (S's own curves from the first), the seed-budget points from
``--from-labels`` on where S is below it: issue 9's "above random and entropy at every budget, in every seed".
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from activeadv.training import stored_settings


def _fmt(values: list, digits: int = 1, pct: bool = True) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    scale = 100 if pct else 1
    mean = float(np.mean(values)) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values)) * scale:.{digits}f}"


def main(folders: list[str]) -> None:
    print("| setting | strategy | AULC | acc @100 | acc @140 | acc @220 | acc @300 | FGSM @300 | labels to 97% "
          "| stable at (acc) | s/round train, select |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in map(Path, folders):
        summary = json.loads((folder / "summary.json").read_text())
        train = summary["settings"]["train"]
        ema = stored_settings(train)["ema"]  # an older summary's missing key means what that version did
        setting = train["unlabeled"] + (f", ema {ema:g}" if ema else "")
        curves: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for row in csv.DictReader((folder / "curves.csv").open()):
            curves[row["strategy"]][int(row["labels"])].append(row)
        for name, stats in summary["strategies"].items():
            by_labels = curves[name]
            acc = {n: [float(r["accuracy"]) for r in rows] for n, rows in by_labels.items()}
            last = max(by_labels)
            fgsm = [float(r["fgsm_accuracy"]) for r in by_labels[last] if r["fgsm_accuracy"]]
            reach = stats["labels_to"]["0.97"]
            reached = [r for r in reach if r is not None]
            to97 = (f"{np.mean(reached):.0f} ({len(reached)}/{len(reach)})" if reached
                    else f"not reached (0/{len(reach)})")
            stop = ("-" if stats["stop_labels_mean"] is None else
                    f"{stats['stop_labels_mean']:.0f} ({100 * stats['stop_accuracy_mean']:.1f}%)")
            phases = summary.get("phase_seconds_per_round", {}).get(name, {})
            timing = f"{phases.get('train', float('nan')):.0f}, {phases.get('select', float('nan')):.0f}"
            aulc = f"{stats['aulc_mean']:.4f}" + (f" ± {stats['aulc_std']:.4f}" if stats["seeds"] > 1 else "")
            print(f"| {setting} | {name} | {aulc} | {_fmt(acc.get(100, []))} | {_fmt(acc.get(140, []))} "
                  f"| {_fmt(acc.get(220, []))} | {_fmt(acc.get(last, []))} | {_fmt(fgsm)} | {to97} | {stop} "
                  f"| {timing} |")


def versus(folders: list[str], strategy: str, from_labels: int) -> None:
    acc: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)  # strategy -> (seed, labels) -> accuracy
    for i, folder in enumerate(map(Path, folders)):
        for row in csv.DictReader((folder / "curves.csv").open()):
            if row["strategy"] != strategy or i == 0:  # S from the first folder: later ones are baselines
                acc[row["strategy"]][int(row["seed"]), int(row["labels"])] = float(row["accuracy"])
    mine = acc.pop(strategy, {})
    if not mine:
        raise SystemExit(f"error: no {strategy} curves in {', '.join(folders)}")
    print(f"| {strategy} against | seed-budget points from {from_labels} labels | {strategy} below at "
          f"| largest gap (points) |")
    print("|---|---|---|---|")
    for other, points in sorted(acc.items()):
        shared = sorted(k for k in points if k in mine and k[1] >= from_labels)
        below = [k for k in shared if mine[k] < points[k]]
        gap = max((100 * (points[k] - mine[k]) for k in below), default=0.0)
        where = ", ".join(f"seed {s} @{n}" for s, n in below) or "none"
        print(f"| {other} | {len(shared)} | {where} | {gap:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--versus", help="a strategy: where is it below each other strategy, seed by seed?")
    parser.add_argument("--from-labels", type=int, default=100)
    args = parser.parse_args()
    if args.versus:
        versus(args.folders, args.versus, args.from_labels)
    else:
        main(args.folders)
