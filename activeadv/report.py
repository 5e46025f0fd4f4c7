"""The project report: accuracy against labels across rounds, beside stored simulations, and the rounds'
robustness suites (CSV and PNG)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from activeadv.loop import stopping_state
from activeadv.records import DisagreementRow, ProjectStatus, RobustnessRow, SimulationInfo, robustness_at
from activeadv.stopping import StabilizingPredictions


def write_report(status: ProjectStatus, simulations: list[SimulationInfo], out_dir: Path) -> list[Path]:
    """``rounds.csv``, ``simulations.csv`` and ``accuracy.png``: test accuracy against labels used.

    The project's rounds are one line; each stored simulation of the same
    dataset adds one dashed line per strategy (mean over seeds), so the live
    project can be compared with what the simulation predicted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rounds = [r for r in status.rounds if r.metrics is not None]
    rounds_csv = out_dir / "rounds.csv"
    with rounds_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["round", "strategy", "state", "labels", "selected", "accuracy", "fgsm_accuracy",
                         "pgd_accuracy", "stop_agreement", "seconds"])
        for r in status.rounds:
            m = r.metrics
            writer.writerow([r.number, r.strategy_text, r.state, r.labels_used, r.selected,
                             m.accuracy if m else "", m.fgsm_accuracy if m and m.fgsm_accuracy is not None else "",
                             m.pgd_accuracy if m and m.pgd_accuracy is not None else "",
                             "" if r.stop_agreement is None else r.stop_agreement,
                             round(sum(r.timings.values()), 3)])
    sims_csv = out_dir / "simulations.csv"
    with sims_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", "strategy", "seed", "round", "labels", "accuracy", "fgsm_accuracy"])
        for run in simulations:
            for p in run.points:
                writer.writerow([run.id, p.strategy, p.seed, p.round, p.labels, p.accuracy,
                                 "" if p.fgsm_accuracy is None else p.fgsm_accuracy])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if rounds:
        ax.plot([r.labels_used or 0 for r in rounds], [r.metrics.accuracy for r in rounds if r.metrics], "o-",
                color="black",
                label=f"{status.project.name} (clean)")
        for attack, marker in (("fgsm", "s:"), ("pgd", "^:")):
            points = [(r.labels_used or 0, getattr(r.metrics, f"{attack}_accuracy")) for r in rounds
                      if getattr(r.metrics, f"{attack}_accuracy") is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker, color="gray", label=f"{status.project.name} ({attack.upper()})")
        _, stable_round = stopping_state(list(status.rounds), StabilizingPredictions())
        stable = [r.labels_used or 0 for r in rounds if r.number == stable_round]
        if stable:
            ax.axvline(stable[0], color="green", linestyle="-.", linewidth=1,
                       label=f"predictions stable (round {stable_round})")
    for run in simulations:
        by_strategy: dict[str, dict[int, list[float]]] = {}
        for p in run.points:
            by_strategy.setdefault(p.strategy, {}).setdefault(p.labels, []).append(p.accuracy)
        for strategy, by_labels in sorted(by_strategy.items()):
            labels = sorted(by_labels)
            ax.plot(labels, [float(np.mean(by_labels[n])) for n in labels], "--", alpha=0.7,
                    label=f"simulate #{run.id}: {strategy}")
    ax.set_xlabel("labels used for training")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{status.project.name} ({status.project.dataset})")
    ax.grid(alpha=0.3)
    if rounds or simulations:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluated rounds yet", ha="center", va="center", transform=ax.transAxes)
    png = out_dir / "accuracy.png"
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [rounds_csv, sims_csv, png]


ROBUSTNESS_COLUMNS = ("round", "labels", "attack", "eps", "norm", "radius", "accuracy", "n", "seconds")
# the attacks drawn (transfer_fgsm/transfer_pgd are in the csv; their worst case is ``transfer``)
PLOTTED = ("clean", "fgsm", "fgsm_pred", "bim", "pgd", "pgd_l2", "ll", "transfer")


def write_robustness(status: ProjectStatus, suites: dict[int, tuple[RobustnessRow, ...]], out_dir: Path,
                     epsilon: float = 0.1) -> list[Path]:
    """``robustness.csv`` (round x attack x eps) and ``robustness.png``.

    The plot's left panel: accuracy against eps per attack for the last round
    with a suite; right panel: accuracy per round (x: labels used) at the
    sweep's eps nearest to ``epsilon`` (the training eps), one line per attack.
    Rounds without a suite (before revision 0005, or run with
    ``--eval-subset 0``) are absent; with none at all the plot says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = {r.number: r.labels_used for r in status.rounds}
    path_csv = out_dir / "robustness.csv"
    with path_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ROBUSTNESS_COLUMNS)
        for number in sorted(suites):
            for r in suites[number]:
                writer.writerow([number, "" if labels.get(number) is None else labels[number], r.attack,
                                 f"{r.eps:g}", r.norm, f"{r.radius:.6g}", f"{r.accuracy:.6f}", r.n,
                                 f"{r.seconds:.4f}"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    numbers = sorted(suites)
    if numbers:
        last = numbers[-1]
        clean = next((r.accuracy for r in suites[last] if r.attack == "clean"), None)
        for attack in PLOTTED[1:]:
            points = sorted((r.eps, r.accuracy) for r in suites[last] if r.attack == attack)
            if points:
                xs, ys = zip(*points)
                left.plot([0.0, *xs] if clean is not None else xs, [clean, *ys] if clean is not None else ys,
                          "o-", markersize=3, label=attack)
        left.set_title(f"round {last} ({labels.get(last) or 0} labels): accuracy vs eps")
        near = {n: robustness_at(suites[n], epsilon)[0] for n in numbers}
        for attack in PLOTTED:
            points = [(labels.get(n) or 0, r.accuracy) for n in numbers for r in suites[n]
                      if r.attack == attack and (attack == "clean" or r.eps == near[n])]
            if points:
                xs, ys = zip(*points)
                right.plot(xs, ys, "o-" if attack == "clean" else "o:", markersize=3,
                           color="black" if attack == "clean" else None, label=attack)
        shown = sorted({e for e in near.values() if e is not None})
        right.set_title(f"per round at eps {', '.join(f'{e:g}' for e in shown)}")
        left.legend(fontsize=8)
        right.legend(fontsize=8)
    else:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no round with a robustness suite yet", ha="center", va="center",
                    transform=ax.transAxes)
    left.set_xlabel("eps (L-inf; pgd_l2 at its L2 radius for that eps)")
    right.set_xlabel("labels used for training")
    for ax in (left, right):
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{status.project.name}: robustness")
    png = out_dir / "robustness.png"
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [path_csv, png]


def write_disagreements(rows: list[DisagreementRow], path: Path) -> Path:
    """disagreements.csv: one row per item whose annotators disagree (votes per class, the rule applied)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["item_id", "label", "tie", "votes", "rule", "updated_at"])
        for r in rows:
            out.writerow([r.item_id, r.label or "", int(r.tie), json.dumps(r.votes, sort_keys=True), r.rule,
                          r.updated_at.isoformat()])
    return path
