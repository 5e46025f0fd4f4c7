"""The project report: accuracy against labels across rounds, beside stored simulations (CSV and PNG)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from activeadv.loop import stopping_state
from activeadv.records import DisagreementRow, ProjectStatus, SimulationInfo
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
