"""``activeadv robustness``: the robustness suite on any stored model (a round of a project, or a checkpoint)."""

from __future__ import annotations

import click

from activeadv.cli.common import (
    EVAL_FIELDS,
    db_option,
    device_option,
    echo_json,
    eval_options,
    json_option,
    quiet_option,
)
from activeadv.cli.project import project_option


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@click.command("robustness")
@click.option("--checkpoint", required=True, metavar="ROUND|PATH",
              help="A round number of the project, or a checkpoint file (then --dataset, or -p for the project's).")
@click.option("--dataset", default=None,
              help="digits | idx:DIR | npz:FILE | folder:DIR: whose test split is attacked [default: the project's; "
                   "a dataset without a test split loses 20% of its pool to testing, as in simulate].")
@click.option("--surrogate", "surrogates", multiple=True, metavar="ROUND|PATH",
              help="A model whose adversarial examples are transferred (black box): a round number of the project "
                   "or a checkpoint file; repeat for several [default for a round: the last --eval-surrogates "
                   "earlier rounds, as the round itself; for a file: none].")
@project_option
@eval_options
@device_option
@db_option
@quiet_option
@json_option
@click.pass_context
def robustness_command(ctx: click.Context, checkpoint: str, dataset: str | None, surrogates: tuple[str, ...],
                       project_name: str | None, device: str, database_url: str | None, quiet: bool, as_json: bool,
                       **eval_kwargs) -> None:
    """Evaluate a stored model with the robustness suite: accuracy per attack and eps.

    Clean, FGSM from the true label (fgsm, fgsm_true) and from the predicted
    one (fgsm_pred: label leaking), BIM, PGD (L-inf and L2), iter-LL and
    transfer from surrogate models, at each eps of --eval-eps, on a fixed
    subset of the test split.  For a round the suite's settings are the
    project's unless typed here, so the numbers are the ones the round stored.
    Nothing is written.

    Examples: activeadv robustness --checkpoint 3;
    activeadv robustness --checkpoint model.pt --dataset digits --surrogate other.pt --json
    """
    from activeadv.app.robustness import RobustnessPlan, evaluate_checkpoint
    from activeadv.app.workspace import Workspace

    typed = {name: eval_kwargs[name] for name in EVAL_FIELDS
             if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}
    plan = RobustnessPlan(checkpoint=checkpoint, dataset=dataset, project=project_name, surrogates=surrogates,
                          eval_overrides=typed, device=device)
    with Workspace(database_url) as ws:
        report = evaluate_checkpoint(ws, plan, progress=not quiet and not as_json)
    if as_json:
        echo_json(report.to_dict())
        return
    what = f"round {report.round} of project {report.project}" if report.round is not None else report.model
    trained = ", ".join(f"{k} {v}" for k, v in report.trained_with.items())
    labels = "" if report.labels is None else f" on {report.labels} labels"
    click.echo(f"{what}: trained with {trained}{labels}")
    click.echo(f"attacked {report.n} items of {report.dataset} ({report.test_split}), {report.steps} steps; "
               f"transfer from: {', '.join(report.surrogates) or 'none'}")
    table = report.table()
    width = max(len("attack"), *(len(a) for a in table)) + 2
    click.echo(f"{'attack':<{width}}" + "".join(f"{'eps ' + format(e, 'g'):>10}" for e in report.eps))
    for attack, by_eps in table.items():
        if attack == "clean":
            click.echo(f"{attack:<{width}}{_pct(by_eps.get(0.0)):>10}  (no attack)")
            continue
        click.echo(f"{attack:<{width}}" + "".join(f"{_pct(by_eps.get(e)):>10}" for e in report.eps))
    head = report.headline()
    if head["worst_attack"] is not None:
        click.echo(f"worst at eps {head['eps']:g}: {head['worst_attack']} {_pct(head['worst'])}; "
                   f"{report.seconds:.1f} s")


def register(cli: click.Group) -> None:
    cli.add_command(robustness_command)
