"""Project commands: ``init``, ``db``, ``labels``, ``round``, ``run``, ``final-model``, ``status``, ``report``.

Thin adapters: parse options, call one use case of ``activeadv.app``, print.
Every command except ``db upgrade``/``db current`` (and ``init`` on a
brand-new empty database, which it creates) refuses an out-of-date schema with
a one-line message naming ``activeadv db upgrade``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from activeadv.cli.common import (
    COUNT,
    TRAIN_FIELDS,
    db_option,
    device_option,
    echo_json,
    executor_options,
    json_option,
    parse_csv_list,
    quiet_option,
    random_until_option,
    seed_option,
    stop_options,
    subsample_option,
    train_options,
)

log = logging.getLogger(__name__)

project_option = click.option("-p", "--project", "project_name", envvar="ACTIVEADV_PROJECT", default=None,
                              help="Project name [env ACTIVEADV_PROJECT; default: the only project].")


def _workspace(database_url: str | None):
    from activeadv.app.workspace import Workspace

    return Workspace(database_url)


def _explicit_train_settings(ctx: click.Context, kwargs: dict) -> dict:
    """Training options the user typed (not click defaults): they override the project's settings."""
    return {name: kwargs[name] for name in TRAIN_FIELDS
            if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}


# ------------------------------------------------------------------------ init
@click.command("init")
@click.argument("name")
@click.option("--dataset", required=True, help="digits | idx:DIR | npz:FILE | folder:DIR.")
@click.option("--classes", default=None, help="Comma-separated class names (default: from the data).")
@click.option("--label-studio", "ls_url", default=None, metavar="URL",
              help="Also create/link the project in this Label Studio (token from LABEL_STUDIO_API_KEY "
                   "or the local server); same as `activeadv labelstudio link` afterwards.")
@train_options
@db_option
@quiet_option
@click.pass_context
def init_command(ctx: click.Context, name: str, dataset: str, classes: str | None, ls_url: str | None,
                 database_url: str | None, quiet: bool, **train_kwargs) -> None:
    """Create project NAME on a dataset and register its items (run again to add new files).

    Items are registered by stable key and content hash: a renamed file keeps
    its id and labels, a grown folder adds only the new files.  The pool is
    registered as split 'pool', a test split (if the dataset has one) as 'test'.
    The training options given here become the project's defaults for `round`.
    A brand-new empty database is created (schema upgraded) on the way; an
    older schema is refused: run `activeadv db upgrade`.

    Example: activeadv init digits-demo --dataset digits
    """
    from activeadv.app.projects import init_project

    res = init_project(_workspace(database_url), name, dataset, classes=parse_csv_list(classes) if classes else None,
                       train_settings={k: train_kwargs[k] for k in TRAIN_FIELDS},
                       explicit=_explicit_train_settings(ctx, train_kwargs), ls_url=ls_url, progress=not quiet,
                       notify=lambda line: click.echo(line, err=True))
    verb = "created" if res.created else "updated"
    parts = [f"{split} {len(r.ids)} items (+{r.added} new" + (f", {r.renamed} renamed" if r.renamed else "") + ")"
             for split, r in res.registered.items()]
    click.echo(f"{verb} project '{name}' ({dataset}, {len(res.project.class_names)} classes): " + ", ".join(parts))
    if res.feature_scaling is not None:
        click.echo(f"inputs: {res.feature_scaling}")
    if res.linked_to is not None:
        click.echo(f"linked to Label Studio project {res.project.ls_project_id} at {res.linked_to}")


# -------------------------------------------------------------------------- db
@click.group("db")
def db_group() -> None:
    """Database schema: create or migrate it, show its revision."""


@db_group.command("upgrade")
@db_option
def db_upgrade(database_url: str | None) -> None:
    """Create the schema or migrate it to this version (safe to run again)."""
    from activeadv.app.projects import upgrade_schema

    st = upgrade_schema(_workspace(database_url))
    if st.before == st.current:
        click.echo(f"{st.database}: already at {st.current} (head)")
    else:
        click.echo(f"{st.database}: upgraded {st.before or 'empty'} -> {st.current} (head)")


@db_group.command("current")
@db_option
def db_current(database_url: str | None) -> None:
    """Show the database's schema revision and whether it is up to date."""
    from activeadv.app.projects import schema_state

    st = schema_state(_workspace(database_url))
    state = ("up to date" if st.up_to_date else "newer than this activeadv: upgrade activeadv" if not st.known
             else "out of date: run `activeadv db upgrade`")
    click.echo(f"{st.database}: {st.current or 'empty'} (head {st.head}, {state})")


# ---------------------------------------------------------------------- labels
@click.group("labels")
def labels_group() -> None:
    """Import or export labels as CSV (columns: key,label,source,time[,annotator,external_id])."""


@labels_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@db_option
def labels_import(csv_file: Path, project_name: str | None, database_url: str | None) -> None:
    """Add labels from CSV_FILE; all rows are stored or none (unknown keys or labels are refused).

    'key' is the item key shown by `labels export` (relative path or array
    index); 'source' defaults to import, 'time' (ISO 8601) to now.
    Importing the same file twice stores its labels once.
    """
    from activeadv.app.labels import import_labels

    with _workspace(database_url) as ws:
        res = import_labels(ws, project_name, csv_file)
    click.echo(f"{csv_file}: {res.added} label(s) added, {res.duplicates} already stored, "
               f"{res.superseded} replaced an older label"
               + (f", {res.blank} row(s) without a label left for later" if res.blank else ""))


@labels_group.command("export")
@click.argument("csv_file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option("--history", is_flag=True, help="Also the labels that newer ones replaced.")
@click.option("--requested", is_flag=True,
              help="Instead: the items waiting for a label (empty 'label' column to fill in, the model's "
                   "guess in 'predicted'), for annotating without Label Studio and `labels import`.")
@project_option
@db_option
def labels_export(csv_file: Path, history: bool, requested: bool, project_name: str | None,
                  database_url: str | None) -> None:
    """Write the project's current labels to CSV_FILE (re-importable as is).

    Text that a spreadsheet would run as a formula (=, +, -, @ first) is
    written with a leading ' and read back without it by `labels import`.
    """
    from activeadv.app.labels import export_labels, export_requested

    with _workspace(database_url) as ws:
        if requested:
            n = export_requested(ws, project_name, csv_file)
            click.echo(f"wrote {n} requested item(s) to {csv_file}: fill in 'label', then `activeadv labels import`")
            return
        n = export_labels(ws, project_name, csv_file, history=history)
    click.echo(f"wrote {n} label(s) to {csv_file}")


# ----------------------------------------------------------------------- round
ORACLE_HELP = ("none: requests wait for `labels import`; simulated: answered at once from the dataset's known "
               "labels; labelstudio: sent as tasks to the linked Label Studio project and collected from it "
               "(see `activeadv labelstudio link`).  [default: labelstudio when the project is linked, else none]")
ls_url_option = click.option("--url", "ls_url", envvar="LABEL_STUDIO_URL", default=None,
                             help="Label Studio URL for --oracle labelstudio [env LABEL_STUDIO_URL; default: the "
                                  "project's linked URL].")


def round_options(func):
    """Every option shared by `round` and `run`: how each round selects, trains and where it asks."""
    options = [
        click.option("--strategy", default="dfal", show_default=True,
                     help="random, least-confidence, margin, entropy, coreset, dfal, fgsm-margin; add +kcenter "
                          "or +kmeans++ to spread each batch over the 10 x query-size best (dfal+kcenter)."),
        click.option("--query-size", type=COUNT, default=20, show_default=True, help="Items to request per round."),
        click.option("--initial", type=COUNT, default=None,
                     help="Size of the random seed set when the project has no labels yet [default: --query-size]."),
        random_until_option,
        click.option("--oracle", type=click.Choice(["none", "simulated", "labelstudio"]), default=None,
                     help=ORACLE_HELP),
        click.option("--oracle-error", type=float, default=0.0, show_default=True,
                     help="Simulated oracle: probability of a wrong label."),
        ls_url_option,
        subsample_option, executor_options,
        train_options, seed_option, device_option, checkpoint_option, force_unlock_option, db_option,
        quiet_option, json_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


checkpoint_option = click.option(
    "--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path), envvar="ACTIVEADV_CHECKPOINT_DIR",
    default=None, help="Where model checkpoints go [env ACTIVEADV_CHECKPOINT_DIR; default: checkpoints/ beside the "
                       "SQLite file, else ./checkpoints].")
force_unlock_option = click.option("--force-unlock", is_flag=True,
                                   help="Take the project lock even if another round seems to run.")


def _round_line(report: Any) -> str:
    result, status = report.result, report.status
    where = " (sent to Label Studio)" if report.oracle == "labelstudio" else ""
    if result.selection is not None and result.selection.strategy == "seed":
        return (f"round {result.round} (seed): requested {len(result.selection)} random item(s){where}; "
                f"now {status.labeled} labeled, {status.pending} pending")
    suite = report.robustness
    worst = "" if suite is None else f", worst {suite['worst_attack']} {_pct(suite['worst'])} at eps {suite['eps']:g}"
    acc = "" if result.metrics is None else f", test accuracy {_pct(result.metrics.accuracy)} " \
        f"(FGSM {_pct(result.metrics.fgsm_accuracy)}, PGD {_pct(result.metrics.pgd_accuracy)}{worst})"
    return (f"round {result.round}: trained on {result.labels} labels{acc}; requested "
            f"{len(result.selection or [])} item(s){where}; now {status.labeled} labeled, {status.pending} pending")


def _plan(ctx: click.Context, train_kwargs: dict, **options: Any):
    from activeadv.app.rounds import RoundPlan

    return RoundPlan(**options, train_overrides=_explicit_train_settings(ctx, train_kwargs))


@click.command("round")
@project_option
@round_options
@click.pass_context
def round_command(ctx: click.Context, project_name: str | None, strategy: str, query_size: int,
                  initial: int | None, random_until: int | None, oracle: str | None, oracle_error: float,
                  ls_url: str | None, subsample: int | None, execution: Any, seed: int,
                  device: str, checkpoint_dir: Path | None, force_unlock: bool,
                  database_url: str | None, quiet: bool, as_json: bool, **train_kwargs) -> None:
    """Run one active-learning round: collect labels, train, evaluate, rank, request.

    For a project linked to Label Studio that is: sync, train, evaluate, rank,
    push (no flags needed).  A project without labels starts with a seed
    round: --initial random items are requested, nothing is trained.  An
    interrupted round is finished by running the command again; a second
    `round` on the same project while one runs is refused.  Training settings
    come from `init`; options typed here override them for this round.

    Example: activeadv round --strategy dfal --query-size 20
    """
    from activeadv.app.rounds import run_round

    plan = _plan(ctx, train_kwargs, strategy=strategy, query_size=query_size, initial=initial,
                 random_until=random_until, oracle=oracle,
                 oracle_error=oracle_error, ls_url=ls_url, subsample=subsample, execution=execution,
                 seed=seed, device=device,
                 checkpoint_dir=checkpoint_dir, force_unlock=force_unlock)
    with _workspace(database_url) as ws:
        report = run_round(ws, project_name, plan, progress=not quiet)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(_round_line(report))


# ------------------------------------------------------------------------- run
@click.command("run")
@project_option
@click.option("--rounds", type=COUNT, required=True, help="How many rounds to run.")
@click.option("--min-new-labels", type=COUNT, default=None,
              help="Before each round (but a fresh project's seed round), wait until this many labels beyond "
                   "the last training set have arrived [default: --query-size].")
@click.option("--poll-seconds", type=float, default=10.0, show_default=True,
              help="How often to look for new labels while waiting.")
@click.option("--timeout", type=float, default=None,
              help="Give up (exit 1, every label that arrived is stored) when one wait lasts longer than this "
                   "many seconds [default: wait for ever].")
@click.option("--auto-annotate", "auto_accuracy", type=float, default=None, metavar="ACCURACY",
              help="A simulated annotator answers the open Label Studio tasks at each wait, through Label "
                   "Studio's API (as `annotate-sim` does), right with probability ACCURACY: rounds complete "
                   "unattended.")
@click.option("--until-stable", is_flag=True,
              help="Start no further round once the stopping rule holds (the model's predictions on a fixed "
                   "stop set agree with the previous rounds': see --stop-window, --stop-threshold).")
@stop_options
@round_options
@click.pass_context
def run_command(ctx: click.Context, project_name: str | None, rounds: int, min_new_labels: int | None,
                poll_seconds: float, timeout: float | None, auto_accuracy: float | None, until_stable: bool,
                stop_window: int, stop_threshold: float, strategy: str,
                query_size: int, initial: int | None, random_until: int | None, oracle: str | None, oracle_error: float,
                ls_url: str | None, subsample: int | None, execution: Any, seed: int, device: str,
                checkpoint_dir: Path | None, force_unlock: bool,
                database_url: str | None, quiet: bool, as_json: bool, **train_kwargs) -> None:
    """Run several rounds, waiting for annotators between them; prints the learning curve at the end.

    Before each round it syncs Label Studio every --poll-seconds (progress bar:
    labels arrived / --min-new-labels) until enough new labels are stored, or
    nothing is waiting for annotators any more.  Ctrl-C at any time is safe:
    every label that arrived is stored and a round interrupted half-way is
    finished by the next `round` or `run`.  With --auto-annotate a simulated
    annotator answers the tasks, so the whole loop runs unattended.

    Example: activeadv run --rounds 5 --min-new-labels 20 --auto-annotate 1.0
    """
    from activeadv.app.rounds import RunPlan, run_rounds

    plan = _plan(ctx, train_kwargs, strategy=strategy, query_size=query_size, initial=initial,
                 random_until=random_until, oracle=oracle,
                 oracle_error=oracle_error, ls_url=ls_url, subsample=subsample, execution=execution,
                 seed=seed, device=device,
                 checkpoint_dir=checkpoint_dir, force_unlock=force_unlock)
    run = RunPlan(rounds=rounds, min_new_labels=min_new_labels, poll_seconds=poll_seconds, timeout=timeout,
                  auto_accuracy=auto_accuracy, until_stable=until_stable, stop_window=stop_window,
                  stop_threshold=stop_threshold)

    def on_wait(waited: Any) -> None:
        if not quiet and not as_json:
            click.echo(f"  {waited.new_labels} new label(s) after {waited.seconds:.0f} s; "
                       f"{waited.pending} still with annotators", err=True)

    def on_round(report: Any) -> None:
        if not as_json:
            click.echo(_round_line(report))

    with _workspace(database_url) as ws:
        report = run_rounds(ws, project_name, plan, run, progress=not quiet and not as_json, on_round=on_round,
                            on_wait=on_wait)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo("learning curve:")
    _echo_round_table(report.curve)
    click.echo(_stopping_line(report.stopping))


# ---------------------------------------------------------------------- status
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _echo_round_table(rounds: list[dict]) -> None:
    """One line per round: accuracy clean / FGSM / PGD at the training eps and, from the robustness suite, the
    worst attack's accuracy and transfer's at the sweep's eps nearest to it (a footnote names them)."""
    names = [r["strategy_label"] for r in rounds]
    width = max(len("strategy"), *(len(n) for n in names)) + 2
    click.echo(f"{'round':>5}  {'strategy':<{width}}{'state':<10}{'labels':>7}{'asked':>7}"
               f"{'accuracy':>10}{'FGSM':>8}{'PGD':>8}{'worst':>8}{'xfer':>8}{'agree':>8}{'time':>9}")
    for r, name in zip(rounds, names):
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.3f}"
        suite = r.get("robustness") or {}
        click.echo(f"{r['round']:>5}  {name:<{width}}{r['state']:<10}{_n(r['labels']):>7}"
                   f"{_n(r['selected']):>7}{_pct(r['accuracy']):>10}{_pct(r['fgsm_accuracy']):>8}"
                   f"{_pct(r['pgd_accuracy']):>8}{_pct(suite.get('worst')):>8}"
                   f"{_pct((suite.get('at_eps') or {}).get('transfer')):>8}{agree:>8}{r['seconds']:>8.1f}s")
    last = next((r["robustness"] for r in reversed(rounds) if r.get("robustness")), None)
    if last is not None:
        click.echo(f"worst: the lowest accuracy of the robustness suite at eps {last['eps']:g} (last round: "
                   f"{last['worst_attack']}); xfer: transferred from the previous round's model; "
                   "every attack and eps: `activeadv report`")


def _stopping_line(summary: dict) -> str:
    if summary["first_stable_round"] is None:
        return f"stopping rule ({summary['rule']}): not reached yet"
    now = "holds now" if summary["stable"] else "held before, not now"
    return (f"stopping rule ({summary['rule']}): reached after round {summary['first_stable_round']} ({now}); "
            "more labels are unlikely to change the model's predictions")


@click.command("status")
@project_option
@db_option
@json_option
def status_command(project_name: str | None, database_url: str | None, as_json: bool) -> None:
    """Pool size, labeled and pending items, one line per round, and Label Studio's task counts when linked.

    An unreachable Label Studio is reported in one line; the rest is still shown.
    """
    from activeadv.app.projects import project_status

    with _workspace(database_url) as ws:
        view = project_status(ws, project_name)
    if as_json:
        echo_json(view.to_dict())
        return
    project, st, ls = view.project, view.status, view.label_studio
    click.echo(f"project {project.name}: {project.dataset}, {len(project.class_names)} classes")
    click.echo(f"pool {st.pool} items: {st.labeled} labeled, {st.pending} requested (pending), "
               f"{st.skipped} skipped, {st.rejected} rejected annotation(s); test split {st.test} items")
    if view.disagreements:
        click.echo(f"{view.disagreements} item(s) where annotators disagree (details: `activeadv report`)")
    if ls is not None:
        if ls["error"] is None:
            click.echo(f"Label Studio project {ls['project_id']}: {ls['tasks']} tasks: {ls['open']} open, "
                       f"{ls['annotated']} annotated, {ls['skipped']} skipped; annotate at {ls['data_manager']}")
        else:
            click.echo(f"Label Studio project {ls['project_id']}: {ls['error']}")
    if view.running is not None:
        click.echo(f"a round is running: pid {view.running[0]} on {view.running[1]}")
    if not view.rounds:
        click.echo("no rounds yet: run `activeadv round`")
        return
    _echo_round_table(view.rounds)
    click.echo(_stopping_line(view.stopping))


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


# ---------------------------------------------------------------------- report
@click.command("report")
@project_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for rounds.csv, simulations.csv, accuracy.png, robustness.csv, robustness.png and "
                   "disagreements.csv.")
@db_option
def report_command(project_name: str | None, out_dir: Path, database_url: str | None) -> None:
    """Accuracy against labels across the project's rounds (CSV and PNG), beside stored simulate runs; each
    round's robustness suite (robustness.csv: round x attack x eps; robustness.png: accuracy vs eps for the
    last round, and per round at the training eps)."""
    from activeadv.app.projects import write_report

    with _workspace(database_url) as ws:
        files = write_report(ws, project_name, out_dir)
    click.echo("wrote " + ", ".join(str(f) for f in files))


# ----------------------------------------------------------------- final-model
@click.command("final-model")
@project_option
@click.option("--recipe", type=click.Choice(["final", "project"]), default="final", show_default=True,
              help="final: the measured long training (VAT on the pool, 3,000 steps, 256 unlabeled items a step, "
                   "augmentation, averaging 0.999) over the project's settings; project: the rounds' own settings.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file to write (replaced if it exists) [default: a new final-N-labels-seed-S.pt in "
                   "the project's checkpoint folder].")
@click.option("--ensemble", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train this many models (model seeds SEED, SEED+1, ...) and ship the mean of their predictions "
                   "as one checkpoint: N times the training, +0.1-0.2 points on MNIST (3 models on 300 dfal labels: "
                   "99.10% against 98.97% for one; docs/results.md).")
@train_options
@seed_option
@device_option
@executor_options
@checkpoint_option
@db_option
@quiet_option
@json_option
@click.pass_context
def final_model_command(ctx: click.Context, project_name: str | None, recipe: str, out: Path | None,
                        ensemble: int, seed: int, device: str, execution: Any, checkpoint_dir: Path | None,
                        database_url: str | None, quiet: bool, as_json: bool, **train_kwargs) -> None:
    """Train the model to ship: one long training on every label the project holds.

    Rounds train briefly, since their models only rank the pool while
    annotators wait; when labeling is done, the labels they chose are worth
    one long training (MNIST, dfal's 300 labels: 97.8% from the rounds,
    98.9-99.0% from this recipe, 99.1% from an ensemble of 3; docs/results.md).
    Training options typed here override the recipe.  Nothing in the database
    changes: no round, no request.  The checkpoint can be attacked with
    `activeadv robustness --checkpoint PATH`.

    Example: activeadv final-model --json;  activeadv final-model --ensemble 3 --seed 1 --out model.pt
    """
    from activeadv.app.final import FinalPlan, train_final

    plan = FinalPlan(recipe=recipe, train_overrides=_explicit_train_settings(ctx, train_kwargs), seed=seed,
                     ensemble=ensemble, device=device, out=out, checkpoint_dir=checkpoint_dir, execution=execution)
    with _workspace(database_url) as ws:
        report = train_final(ws, project_name, plan, progress=not quiet and not as_json)
    if as_json:
        echo_json(report.to_dict())
        return
    m = report.metrics
    acc = "" if m is None else (f"; test accuracy {100 * m.accuracy:.2f}% on {m.n} items (FGSM "
                                f"{_pct(m.fgsm_accuracy)}, PGD {_pct(m.pgd_accuracy)})")
    if report.member_accuracy:
        acc += "; its models alone: " + ", ".join(f"{100 * a:.2f}%" for a in report.member_accuracy)
    kind = f"ensemble of {report.ensemble} models" if report.ensemble > 1 else "model"
    click.echo(f"final {kind} of {report.project}: trained on {report.labels} labels in "
               f"{report.train_seconds:.0f} s{acc}; saved to {report.path}")


def register(cli: click.Group) -> None:
    for command in (init_command, db_group, labels_group, round_command, run_command, final_model_command,
                    status_command, report_command):
        cli.add_command(command)
