"""``activeadv simulate``: label efficiency of strategies on data with known labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from activeadv.cli.common import (
    COUNT,
    db_option,
    device_option,
    echo_json,
    executor_options,
    json_option,
    parse_csv_list,
    pop_train_values,
    quiet_option,
    random_until_option,
    seed_option,
    stop_options,
    subsample_option,
    train_options,
)


@click.command("simulate")
@click.option("--dataset", default="digits", show_default=True,
              help="digits | idx:DIR | npz:FILE | folder:DIR (labels must be known).")
@click.option("--classes", default=None, help="Comma-separated class names (default: from the data).")
@click.option("--strategies", default="random,entropy,dfal", show_default=True,
              help="Comma-separated: random, least-confidence, margin, entropy, coreset, dfal, fgsm-margin.")
@click.option("--initial", type=COUNT, default=20, show_default=True, help="Random labels to start from.")
@click.option("--query-size", type=COUNT, default=20, show_default=True, help="Labels asked per round.")
@click.option("--budget", type=COUNT, default=300, show_default=True, help="Total labels to spend.")
@click.option("--seeds", type=COUNT, default=5, show_default=True, help="Number of seeds (repetitions).")
@seed_option
@subsample_option
@click.option("--dfal-add-adversarial", is_flag=True,
              help="DFAL: the DeepFool copy of each point dfal asked for (not the cold-start random picks) "
                   "joins training with the annotator's label.")
@click.option("--dfal-mode", type=click.Choice(["fast", "exact"]), default="fast", show_default=True,
              help="dfal: fast = DeepFool on a first-order shortlist (same top items, ~10x cheaper); "
                   "exact = everywhere.")
@click.option("--target-accuracy", type=float, default=None,
              help="Accuracy for 'labels to target' (default: 95%% of a model trained on every pool label).")
@click.option("--oracle-error", type=float, default=0.0, show_default=True,
              help="Probability that the simulated annotator gives a wrong label.")
@stop_options
@click.option("--resume", is_flag=True,
              help="Keep the curves an interrupted run with the same options finished in --out (points.jsonl).")
@train_options
@device_option
@executor_options
@click.option("--jobs", type=COUNT, default=1, show_default=True,
              help="Run curves (strategy x seed), then their final models, side by side in this many processes, "
                   "each with its share of the torch threads; on a GPU, 2-4 processes keep it busier than one "
                   "(docs/results.md).")
@random_until_option
@click.option("--final-model", is_flag=True,
              help="After the curves, train each one's labels once more with the final-model recipe (as "
                   "`activeadv final-model`: VAT, augmentation, averaging 0.999) and report its accuracy: what "
                   "the chosen labels are worth once labeling stops (final.jsonl; kept by --resume).")
@click.option("--final-steps", type=COUNT, default=3000, show_default=True,
              help="Steps of each final model's training.")
@click.option("--final-ensemble", type=COUNT, default=1, show_default=True,
              help="Each final model an ensemble of this many model seeds (as `activeadv final-model --ensemble`).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/simulate"),
              show_default=True, help="Folder for curves.csv, summary.json, learning_curves.png.")
@db_option
@quiet_option
@json_option
def simulate_command(dataset: str, classes: str | None, strategies: str, initial: int, query_size: int,
                     budget: int, seeds: int, seed: int, subsample: int | None, dfal_add_adversarial: bool,
                     dfal_mode: str, target_accuracy: float | None, oracle_error: float, stop_window: int,
                     stop_threshold: float, resume: bool, device: str, execution: Any, jobs: int,
                     random_until: int | None, final_model: bool, final_steps: int, final_ensemble: int,
                     out_dir: Path,
                     database_url: str | None, quiet: bool, as_json: bool, **train_kwargs) -> None:
    """Compare selection strategies by simulation: hidden labels revealed on request.

    Every strategy of a seed starts from the same random initial set; each
    round trains with the same settings and records test accuracy (clean and
    under FGSM), the robustness suite (--eval-*; robustness.csv) and the
    stopping rule's agreement.  Strategies take a batch
    diversity suffix (dfal+kcenter, entropy+kmeans++).  Writes curves.csv,
    summary.json and learning_curves.png to --out and prints a table; each
    point is logged to points.jsonl as it arrives (--resume).

    Example: activeadv simulate --dataset digits --strategies random,entropy,dfal
    --initial 20 --query-size 20 --budget 300 --seeds 5 --out runs/digits
    """
    from activeadv.app.experiments import SimulatePlan, simulate

    plan = SimulatePlan(dataset=dataset, strategies=tuple(parse_csv_list(strategies)), initial=initial,
                        query_size=query_size, budget=budget, seeds=seeds, seed=seed,
                        train=pop_train_values(train_kwargs), classes=parse_csv_list(classes) if classes else None,
                        subsample=subsample, dfal_add_adversarial=dfal_add_adversarial, dfal_mode=dfal_mode,
                        target_accuracy=target_accuracy, oracle_error=oracle_error, stop_window=stop_window,
                        stop_threshold=stop_threshold, device=device, execution=execution, jobs=jobs,
                        final_model=final_model, final_steps=final_steps, final_ensemble=final_ensemble,
                        random_until=random_until)
    res = simulate(plan, out_dir, database_url=database_url, resume=resume, progress=not quiet)
    if as_json:
        echo_json(res.summary)
        return
    click.echo(format_summary(res.summary))
    click.echo("wrote " + ", ".join(str(f) for f in res.files))
    if res.stored_run is not None:
        click.echo(f"stored as simulation run {res.stored_run} in the project database")


def format_summary(summary: dict) -> str:
    ref = summary.get("reference_accuracy")
    lines = [f"dataset {summary['dataset']}: target accuracy {summary['target_accuracy']:.4f}"
             + (f" (95% of {ref:.4f}, every pool label)" if ref else "")]
    header = f"{'strategy':<18}{'AULC':>16}{'final acc':>16}{'labels to target':>20}{'saving':>9}"
    lines += [header, "-" * len(header)]
    for name, s in summary["strategies"].items():
        reach = ("-" if s["labels_to_target_mean"] is None
                 else f"{s['labels_to_target_mean']:.0f}±{s['labels_to_target_std']:.0f} ({s['target_reached']})")
        saving = "-" if s["saving_vs_random"] is None else f"{100 * s['saving_vs_random']:+.0f}%"
        lines.append(f"{name:<18}{s['aulc_mean']:>9.4f}±{s['aulc_std']:.4f}"
                     f"{s['final_accuracy_mean']:>9.4f}±{s['final_accuracy_std']:.4f}{reach:>20}{saving:>9}")
    lines += format_versus(summary)
    finals = {name: s["final_model"] for name, s in summary["strategies"].items() if s.get("final_model")}
    if finals:
        steps = summary.get("final_model", {}).get("unlabeled_min_steps")
        lines.append(f"final model ({steps} steps) on each curve's last labels, mean over seeds (final.jsonl):")
        for name, f in finals.items():
            fgsm = "" if f["fgsm_accuracy_mean"] is None else f", FGSM {100 * f['fgsm_accuracy_mean']:.1f}%"
            members = f" (ensembles of {f['members']} models)" if f.get("members", 1) > 1 else ""
            lines.append(f"  {name}: {100 * f['accuracy_mean']:.2f}±{100 * f['accuracy_std']:.2f}% on "
                         f"{'/'.join(str(n) for n in f['labels'])} labels{fgsm}{members}")
    suites = {name: s["robustness"] for name, s in summary["strategies"].items() if s.get("robustness")}
    if suites:
        lines.append("last round's robustness (accuracy at the training eps, mean over seeds; robustness.csv):")
        for name, suite in suites.items():
            head = suite["headline"]
            at = f"{float(head['eps']):g}"
            cells = ", ".join(f"{attack} {100 * by_eps[at]:.1f}%" for attack, by_eps in suite["accuracy"].items()
                              if at in by_eps and attack not in ("fgsm_true", "transfer_fgsm", "transfer_pgd"))
            lines.append(f"  {name} (eps {at}): {cells}; worst {head['worst_attack']} "
                         f"{100 * head['worst_accuracy']:.1f}%")
    return "\n".join(lines)


def format_versus(summary: dict) -> list[str]:
    """The leader in mean AULC against each other strategy, seed by seed: a lead smaller than the seeds' shared
    noise shows as a wide interval and a large p, not as a win."""
    strategies = summary["strategies"]
    if len(strategies) < 2:
        return []
    leader = max(strategies, key=lambda n: strategies[n]["aulc_mean"])
    versus = strategies[leader].get("versus", {})
    if not versus or max(v["seeds"] for v in versus.values()) < 2:
        return []
    lines = [f"paired AULC, {leader} minus each other strategy (same seeds): mean [95% CI], seeds ahead, "
             "sign-flip p"]
    for other, v in sorted(versus.items(), key=lambda kv: kv[1]["mean"]):
        ci = "" if v["ci_low"] is None else f" [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]"
        lines.append(f"  {other:<16}{v['mean']:+.4f}{ci}, {v['ahead']} of {v['seeds']}, p={v['p_value']:.3f}")
    return lines


def register(cli: click.Group) -> None:
    cli.add_command(simulate_command)
