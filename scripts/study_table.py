"""Markdown tables of a simulate study (scripts/mnist_study.sh): one row per strategy and training setting.

    python scripts/study_table.py runs/study/none runs/study/vat
    python scripts/study_table.py --versus dfal --from-labels 100 runs/ema/vat-ema runs/ema/base-random ...

Reads each folder's summary.json and curves.csv (written by `activeadv simulate`).  ``--versus S`` prints
instead, for every other strategy in the folders (S's own curves from the first), the seed-budget points from
``--from-labels`` on where S is below it: issue 9's "above random and entropy at every budget, in every seed".
``--paired S`` prints S minus each other strategy, seed by seed (AULC, and accuracy and FGSM accuracy at the last
point): the mean, a 95% CI and an exact sign-flip test, so a lead smaller than the seed-to-seed noise reads as a
tie.  ``PATH=LABEL`` names a folder's curves, so that two runs of one strategy with other options can be paired;
``PATH=@TAG`` keeps each strategy's name and adds ``@TAG`` (the same strategies run on other inputs or settings).

    python scripts/study_table.py --paired dfal docs/results/gpu/study620/*/
    python scripts/study_table.py --paired copies RUN_WITH_COPIES=copies docs/results/study620-cpu/vat
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from activeadv.comparison import paired_difference
from activeadv.simulation import aulc
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


def labels_to(curve: dict[int, list[dict]], target: float) -> str:
    """Mean over seeds of the fewest labels at which a seed's accuracy reached ``target``, and in how many seeds."""
    seeds = sorted({r["seed"] for rows in curve.values() for r in rows})
    reached = []
    for seed in seeds:
        hits = [n for n, rows in curve.items() for r in rows if r["seed"] == seed and float(r["accuracy"]) >= target]
        if hits:
            reached.append(min(hits))
    return f"{np.mean(reached):.0f} ({len(reached)}/{len(seeds)})" if reached else f"- (0/{len(seeds)})"


def main(folders: list[str], targets: list[float]) -> None:
    """One row per strategy; the accuracy and FGSM columns at the curve's last point (its budget)."""
    reach_cols = "".join(f" labels to {100 * t:g}% |" for t in targets)
    print(f"| setting | strategy | AULC | acc @100 | acc @140 | acc @220 | acc at the budget | FGSM there |{reach_cols}"
          " stable at (acc) | s/round train, select |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(targets) + "---|---|")
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
            reach = "".join(f" {labels_to(by_labels, t)} |" for t in targets)
            stop = ("-" if stats["stop_labels_mean"] is None else
                    f"{stats['stop_labels_mean']:.0f} ({100 * stats['stop_accuracy_mean']:.1f}%)")
            phases = summary.get("phase_seconds_per_round", {}).get(name, {})
            timing = f"{phases.get('train', float('nan')):.0f}, {phases.get('select', float('nan')):.0f}"
            aulc = f"{stats['aulc_mean']:.4f}" + (f" ± {stats['aulc_std']:.4f}" if stats["seeds"] > 1 else "")
            print(f"| {setting} | {name} | {aulc} | {_fmt(acc.get(100, []))} | {_fmt(acc.get(140, []))} "
                  f"| {_fmt(acc.get(220, []))} | {_fmt(acc.get(last, []))} @{last} | {_fmt(fgsm)} |{reach} {stop} "
                  f"| {timing} |")


def curve_points(folder: str, label: str = "") -> dict[tuple[str, int], list[tuple[int, float, str]]]:
    """(strategy, seed) -> the curve's (labels, accuracy, FGSM accuracy or "") in label order; ``label`` renames
    every strategy of the folder, or tags each one when it starts with ``@`` (``margin@raw``)."""
    curves: dict[tuple[str, int], list[tuple[int, float, str]]] = defaultdict(list)
    for row in csv.DictReader((Path(folder) / "curves.csv").open()):
        name = row["strategy"] + label if label.startswith("@") else label or row["strategy"]
        curves[name, int(row["seed"])].append(
            (int(row["labels"]), float(row["accuracy"]), row["fgsm_accuracy"]))
    return {key: sorted(points) for key, points in curves.items()}


def curve_aulc(points: list[tuple[int, float, str]]) -> float:
    return aulc([n for n, _, _ in points], [a for _, a, _ in points])


def seed_aulcs(folders: list[str]) -> dict[tuple[str, str], dict[int, float]]:
    """(folder, strategy) -> seed -> AULC of that curve."""
    rows: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for folder in folders:
        for (name, seed), points in curve_points(folder).items():
            rows[folder, name][seed] = curve_aulc(points)
    return rows


def aulc_by_seed(folders: list[str]) -> None:
    """AULC of every curve, seed by seed: "above the baselines in AULC in every seed" is read here."""
    rows = seed_aulcs(folders)
    seeds = sorted({seed for by_seed in rows.values() for seed in by_seed})
    print("| folder | strategy |" + "".join(f" seed {s} |" for s in seeds))
    print("|---|---|" + "---|" * len(seeds))
    for (folder, name), by_seed in rows.items():
        print(f"| {folder} | {name} |" + "".join(f" {by_seed[s]:.4f} |" if s in by_seed else " - |" for s in seeds))


def seed_finals(folders: list[str]) -> dict[str, dict[str, dict[int, float]]]:
    """strategy (``PATH=LABEL`` renames a folder's curves) -> metric -> seed -> value: AULC, and accuracy and FGSM
    accuracy at the curve's last point.  A seed found in two folders keeps the first folder's."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for spec in folders:
        folder, _, label = spec.partition("=")
        for (name, seed), points in curve_points(folder, label).items():
            values = {"AULC": curve_aulc(points), "acc": points[-1][1]}
            if points[-1][2]:
                values["FGSM"] = float(points[-1][2])
            for metric, value in values.items():
                out[name][metric].setdefault(seed, value)
    return out


def paired(folders: list[str], strategy: str) -> None:
    """S minus each other strategy, seed by seed (the same seed shares its seed labels): whether a lead is larger
    than the seed-to-seed noise, in AULC and at the curves' last point.  Folders are pooled, so seeds run later
    add to a study; ``PATH=LABEL`` names a folder's curves (e.g. a run of dfal with other options)."""
    pooled = seed_finals(folders)
    mine = pooled.pop(strategy, None)
    if not mine:
        raise SystemExit(f"error: no {strategy} curves in {', '.join(folders)}")
    print(f"| {strategy} minus | seeds | AULC: mean [95% CI], ahead in, sign-flip p | accuracy at the budget (points) "
          f"| FGSM accuracy there (points) |")
    print("|---|---|---|---|---|")
    for other, metrics in sorted(pooled.items()):
        cells = []
        for metric, scale, fmt in (("AULC", 1, "+.4f"), ("acc", 100, "+.2f"), ("FGSM", 100, "+.1f")):
            d = paired_difference(mine.get(metric, {}), metrics.get(metric, {}))
            cells.append("-" if d is None else
                         f"{scale * d.mean:{fmt}} [{scale * d.ci_low:{fmt}}, {scale * d.ci_high:{fmt}}], "
                         f"{d.ahead} of {d.seeds}, p = {d.p_value:.3f}")
        seeds = len(set(mine["AULC"]) & set(metrics.get("AULC", {})))
        if seeds:
            print(f"| {other} | {seeds} | " + " | ".join(cells) + " |")


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
    parser.add_argument("--targets", default="0.97", help="accuracies for the labels-to columns, e.g. 0.97,0.98,0.99")
    parser.add_argument("--per-seed", action="store_true", help="the AULC of every curve, seed by seed")
    parser.add_argument("--paired", metavar="S", help="S's AULC minus each other strategy's, seed by seed: mean, "
                        "95%% CI and a sign-flip test")
    args = parser.parse_args()
    if args.per_seed:
        aulc_by_seed(args.folders)
    elif args.paired:
        paired(args.folders, args.paired)
    elif args.versus:
        versus(args.folders, args.versus, args.from_labels)
    else:
        main(args.folders, [float(t) for t in args.targets.split(",")])
