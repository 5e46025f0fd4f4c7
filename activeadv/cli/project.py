"""Project commands: ``init``, ``db``, ``labels``, ``round``, ``run``, ``status``, ``report``.

Thin adapters: parse options, open the ``Store``, call ``loop``/``store``,
print.  Every command except ``db upgrade``/``db current`` (and ``init`` on a
brand-new empty database, which it creates) refuses an out-of-date schema with
a one-line message naming ``activeadv db upgrade``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from datetime import datetime
from pathlib import Path

import click

from activeadv.cli.common import (COUNT, TRAIN_FIELDS, db_option, device_option, echo_json, json_option,
                                  parse_csv_list, quiet_option, seed_option, stop_options, train_options)
from activeadv.errors import ConfigError, LabelError
from activeadv.settings import Settings

log = logging.getLogger(__name__)

project_option = click.option("-p", "--project", "project_name", envvar="ACTIVEADV_PROJECT", default=None,
                              help="Project name [env ACTIVEADV_PROJECT; default: the only project].")
CSV_COLUMNS = ("key", "label", "source", "time", "annotator", "external_id")


def _url(database_url: str | None) -> str:
    return database_url or Settings.from_env().database_url


def _open(database_url: str | None):
    """A store on an up-to-date schema (``SchemaError`` otherwise)."""
    from activeadv.store import Store

    return Store.open(_url(database_url))


def _explicit_train_settings(ctx: click.Context, kwargs: dict) -> dict:
    """Training options the user typed (not click defaults): they override the project's settings."""
    return {name: kwargs[name] for name in TRAIN_FIELDS
            if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}


def _default_checkpoint_dir(url: str) -> Path:
    """Beside the database file for SQLite; ./checkpoints otherwise."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).expanduser().resolve().parent / "checkpoints"
    return Path("checkpoints").resolve()


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
    from activeadv.data import load_dataset
    from activeadv.loop import register_dataset
    from activeadv.store import Store
    from activeadv.training import TrainConfig

    class_names = parse_csv_list(classes) if classes else None
    data = load_dataset(dataset, class_names=class_names)
    client = None
    if ls_url:  # before anything is stored: a server that is down or a bad token leaves no half-made project
        from activeadv.cli.labelstudio import connect_for

        client = connect_for(ls_url, None)
    url = _url(database_url)
    store = Store(url)
    if store.current() is None and store.is_empty():
        click.echo(f"creating the activeadv schema in {store.display_url}", err=True)
        store.upgrade()
    store.check_schema()
    explicit = _explicit_train_settings(ctx, train_kwargs)
    existing = {p.name: p for p in store.projects()}.get(name)
    if existing is None:
        settings = TrainConfig(**{k: train_kwargs[k] for k in TRAIN_FIELDS}).to_dict()
        settings.pop("device", None)
        project = store.create_project(name, dataset, data.class_names, train_settings=settings)
    else:
        if existing.dataset != dataset:
            raise ConfigError(f"project '{name}' uses dataset '{existing.dataset}', not '{dataset}'")
        if tuple(data.class_names) != existing.class_names:
            raise ConfigError(f"project '{name}' has classes {','.join(existing.class_names)}; "
                              f"the data now gives {','.join(data.class_names)}")
        project = existing
        if explicit:
            project = store.update_project(project.id, train_settings={**project.train_settings, **explicit})
    result = register_dataset(store, project, data, progress=not quiet)
    verb = "created" if existing is None else "updated"
    parts = [f"{split} {len(r.ids)} items (+{r.added} new" + (f", {r.renamed} renamed" if r.renamed else "") + ")"
             for split, r in result.items()]
    click.echo(f"{verb} project '{name}' ({dataset}, {len(data.class_names)} classes): " + ", ".join(parts))
    try:
        if client is not None:
            from activeadv.cli.labelstudio import _files_root, link_project

            project = link_project(store, project, client, files_root=_files_root(None, client.url), pool=data.pool)
            click.echo(f"linked to Label Studio project {project.ls_project_id} at {client.url}")
    finally:
        store.close()


# -------------------------------------------------------------------------- db
@click.group("db")
def db_group() -> None:
    """Database schema: create or migrate it, show its revision."""


@db_group.command("upgrade")
@db_option
def db_upgrade(database_url: str | None) -> None:
    """Create the schema or migrate it to this version (safe to run again)."""
    from activeadv.store import Store

    with Store(_url(database_url)) as store:
        before = store.current()
        store.upgrade()
        after = store.current()
        if before == after:
            click.echo(f"{store.display_url}: already at {after} (head)")
        else:
            click.echo(f"{store.display_url}: upgraded {before or 'empty'} -> {after} (head)")


@db_group.command("current")
@db_option
def db_current(database_url: str | None) -> None:
    """Show the database's schema revision and whether it is up to date."""
    from activeadv.store import Store

    with Store(_url(database_url)) as store:
        current, head = store.current(), store.head()
        state = ("up to date" if current == head else
                 "newer than this activeadv: upgrade activeadv" if current and not store.knows(current) else
                 "out of date: run `activeadv db upgrade`")
        click.echo(f"{store.display_url}: {current or 'empty'} (head {head}, {state})")


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
    with _open(database_url) as store:
        project = store.get_project(project_name)
        annotations, blank = _read_labels_csv(csv_file, store.item_keys(project.id, split="pool"),
                                              project.class_names)
        counts = store.add_labels(project.id, annotations, strict=True)
        click.echo(f"{csv_file}: {counts.added} label(s) added, {counts.duplicates} already stored, "
                   f"{counts.superseded} replaced an older label"
                   + (f", {blank} row(s) without a label left for later" if blank else ""))


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading ' (OWASP CSV injection).

    ``_csv_value`` removes it again on import, so exports stay re-importable as they are.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_value(cell: str | None) -> str:
    """A cell as read back: stripped, and a ``_csv_cell`` escape removed."""
    text = (cell or "").strip()
    if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES):
        return text[1:]
    return text


def _csv_writer(path: Path):
    """``(file, writer)`` for an export, with a one-line error when the path cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return fh, csv.writer(fh)


def _read_labels_csv(path: Path, key_ids: dict[str, int], class_names: tuple[str, ...]):
    """``(annotations, rows_without_label)``; ``LabelError`` on the first bad row (nothing is stored)."""
    from activeadv.records import Annotation

    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise LabelError(f"{path}: no rows (expected a header {','.join(CSV_COLUMNS[:4])})")
    missing = {"key", "label"} - set(header)
    if missing:
        raise LabelError(f"{path}: missing column(s) {', '.join(sorted(missing))} (header: {','.join(header)})")
    out, blank = [], 0
    for line, row in enumerate(rows, start=2):
        key, label = _csv_value(row.get("key")), _csv_value(row.get("label"))
        if not label:
            blank += 1  # a requested item not annotated yet (`labels export --requested`)
            continue
        if key not in key_ids:
            raise LabelError(f"{path}:{line}: unknown item key '{key}'; nothing was stored")
        if label not in class_names:
            raise LabelError(f"{path}:{line}: unknown label '{label}' (classes: {', '.join(class_names)}); "
                             "nothing was stored")
        source = _csv_value(row.get("source")) or "import"
        stamp = (row.get("time") or "").strip()
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
        except ValueError:
            raise LabelError(f"{path}:{line}: time '{stamp}' is not ISO 8601; nothing was stored") from None
        annotator = _csv_value(row.get("annotator")) or None
        external = _csv_value(row.get("external_id")) or "csv:" + hashlib.sha1(
            "\x1f".join((key, label, source, stamp, annotator or "")).encode()).hexdigest()
        out.append(Annotation(item_id=key_ids[key], label=label, source=source, annotator=annotator,
                              external_id=external, created_at=when))
    return out, blank


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
    if requested:
        with _open(database_url) as store:
            project = store.get_project(project_name)
            keys = {i: k for k, i in store.item_keys(project.id).items()}
            pending = [(store.get_round(rid).number, sel) for rid, sel in store.pending(project.id)]
        n = 0
        fh, writer = _csv_writer(csv_file)
        with fh:
            writer.writerow(["key", "label", "source", "time", "predicted", "confidence", "round"])
            for number, sel in pending:
                for pos, item_id in enumerate(sel.item_ids):
                    guess = "" if sel.predicted is None else project.class_names[int(sel.predicted[pos])]
                    conf = "" if sel.confidence is None else f"{float(sel.confidence[pos]):.4f}"
                    writer.writerow([_csv_cell(c) for c in (keys[int(item_id)], "", "annotator", "", guess, conf,
                                                            number)])
                    n += 1
        click.echo(f"wrote {n} requested item(s) to {csv_file}: fill in 'label', then `activeadv labels import`")
        return
    with _open(database_url) as store:
        project = store.get_project(project_name)
        rows = store.label_rows(project.id, history=history)
    fh, writer = _csv_writer(csv_file)
    with fh:
        writer.writerow(CSV_COLUMNS + (("current",) if history else ()))
        for r in rows:
            writer.writerow([_csv_cell(c) for c in (r.key, r.label, r.source, r.created_at.isoformat(),
                                                     r.annotator or "", r.external_id or "")]
                            + ([int(r.current)] if history else []))
    click.echo(f"wrote {len(rows)} label(s) to {csv_file}")


# ----------------------------------------------------------------------- round
class _NoOracle:
    """Requests stay in the database until labels arrive by `activeadv labels import`."""

    def request(self, selection, round_id: int) -> None:
        return None

    def collect(self) -> list:
        return []


def _oracle_kind(kind: str | None, project) -> str:
    """``--oracle`` as given, else ``labelstudio`` for a project linked to Label Studio, else ``none``."""
    if kind is not None:
        return kind
    return "labelstudio" if project.ls_project_id is not None else "none"


def _make_oracle(kind: str, store, project, data, error_rate: float, seed: int, ls_url: str | None = None):
    """The oracle object and, for Label Studio, the connected client (None otherwise)."""
    if kind == "simulated":
        from activeadv.oracle import SimulatedOracle

        return SimulatedOracle(data.pool, error_rate=error_rate, seed=seed), None
    if kind == "labelstudio":
        from activeadv.cli.labelstudio import _files_root, connect_for, store_oracle

        client = connect_for(ls_url, project)
        return store_oracle(store, project, data.pool, client, files_root=_files_root(None, client.url)), client
    return _NoOracle(), None


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
        click.option("--oracle", type=click.Choice(["none", "simulated", "labelstudio"]), default=None,
                     help=ORACLE_HELP),
        click.option("--oracle-error", type=float, default=0.0, show_default=True,
                     help="Simulated oracle: probability of a wrong label."),
        ls_url_option,
        click.option("--subsample", type=COUNT, default=None,
                     help="Score only this many random candidates (large pools)."),
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


def _round_payload(result, status) -> dict:
    return {"round": result.round, "labels_used": result.labels, "selected": len(result.selection or []),
            "strategy": None if result.selection is None else result.selection.strategy,
            "accuracy": None if result.metrics is None else result.metrics.accuracy,
            "fgsm_accuracy": None if result.metrics is None else result.metrics.fgsm_accuracy,
            "pgd_accuracy": None if result.metrics is None else result.metrics.pgd_accuracy,
            "labeled": status.labeled, "pending": status.pending, "timings": result.timings}


def _round_line(result, status, oracle_kind: str) -> str:
    where = " (sent to Label Studio)" if oracle_kind == "labelstudio" else ""
    if result.selection is not None and result.selection.strategy == "seed":
        return (f"round {result.round} (seed): requested {len(result.selection)} random item(s){where}; "
                f"now {status.labeled} labeled, {status.pending} pending")
    acc = "" if result.metrics is None else f", test accuracy {_pct(result.metrics.accuracy)} " \
        f"(FGSM {_pct(result.metrics.fgsm_accuracy)}, PGD {_pct(result.metrics.pgd_accuracy)})"
    return (f"round {result.round}: trained on {result.labels} labels{acc}; requested "
            f"{len(result.selection or [])} item(s){where}; now {status.labeled} labeled, {status.pending} pending")


@click.command("round")
@project_option
@round_options
@click.pass_context
def round_command(ctx: click.Context, project_name: str | None, strategy: str, query_size: int,
                  initial: int | None, oracle: str | None, oracle_error: float, ls_url: str | None,
                  subsample: int | None, seed: int, device: str, checkpoint_dir: Path | None, force_unlock: bool,
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
    from activeadv.loop import RoundOptions, project_dataset, run_round, train_config_for
    from activeadv.training import resolve_device

    resolve_device(device)
    opts = RoundOptions(strategy=strategy, query_size=query_size, initial=initial, subsample=subsample, seed=seed)
    url = _url(database_url)
    with _open(url) as store:
        project = store.get_project(project_name)
        cfg = train_config_for(project, **_explicit_train_settings(ctx, train_kwargs), seed=seed, device=device)
        data = project_dataset(store, project)
        kind = _oracle_kind(oracle, project)
        answerer, _ = _make_oracle(kind, store, project, data, oracle_error, seed, ls_url)
        result = run_round(store, project, data, answerer, cfg, opts,
                           checkpoint_dir or _default_checkpoint_dir(url), progress=not quiet,
                           force_unlock=force_unlock)
        status = store.status(project.id)
    if as_json:
        echo_json({**_round_payload(result, status), "oracle": kind})
        return
    click.echo(_round_line(result, status, kind))


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
                query_size: int, initial: int | None, oracle: str | None, oracle_error: float, ls_url: str | None,
                subsample: int | None, seed: int, device: str, checkpoint_dir: Path | None, force_unlock: bool,
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
    from activeadv.loop import RoundOptions, project_dataset, run_rounds, train_config_for
    from activeadv.stopping import StabilizingPredictions
    from activeadv.training import resolve_device

    resolve_device(device)
    opts = RoundOptions(strategy=strategy, query_size=query_size, initial=initial, subsample=subsample, seed=seed)
    rule = StabilizingPredictions(stop_window, stop_threshold)
    if auto_accuracy is not None and not 0.0 <= auto_accuracy <= 1.0:
        raise ConfigError("--auto-annotate must be an accuracy in [0, 1]")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):  # nan waited for ever
        raise ConfigError("--timeout must be a number of seconds > 0")
    if not (math.isfinite(poll_seconds) and poll_seconds > 0):
        raise ConfigError("--poll-seconds must be a number of seconds > 0")
    url = _url(database_url)
    lines: list[dict] = []
    with _open(url) as store:
        project = store.get_project(project_name)
        cfg = train_config_for(project, **_explicit_train_settings(ctx, train_kwargs), seed=seed, device=device)
        data = project_dataset(store, project)
        kind = _oracle_kind(oracle, project)
        if auto_accuracy is not None and kind != "labelstudio":
            raise ConfigError("--auto-annotate answers Label Studio tasks: link the project "
                              "(`activeadv labelstudio link`) or pass --oracle labelstudio")
        answerer, client = _make_oracle(kind, store, project, data, oracle_error, seed, ls_url)
        before_poll = None
        if auto_accuracy is not None:
            from activeadv.cli.labelstudio import simulated_annotator

            before_poll = simulated_annotator(client, int(project.ls_project_id), data.pool, project.class_names,
                                              auto_accuracy, seed)

        def on_wait(waited) -> None:
            if not quiet and not as_json:
                click.echo(f"  {waited.new_labels} new label(s) after {waited.seconds:.0f} s; "
                           f"{waited.pending} still with annotators", err=True)

        def on_round(result) -> None:
            status = store.status(project.id)
            lines.append(_round_payload(result, status))
            if not as_json:
                click.echo(_round_line(result, status, kind))

        try:
            run_rounds(store, project, data, answerer, cfg, opts, checkpoint_dir or _default_checkpoint_dir(url),
                       rounds=rounds, min_new_labels=min_new_labels or query_size, poll_seconds=poll_seconds,
                       timeout=timeout, before_poll=before_poll, progress=not quiet and not as_json,
                       on_round=on_round, on_wait=on_wait, force_unlock=force_unlock,
                       until_stable=rule if until_stable else None)
        except KeyboardInterrupt:
            st = store.status(project.id)
            raise click.ClickException(f"interrupted after {len(lines)} round(s): {st.labeled} labels stored, "
                                       f"{st.pending} pending; run again to continue") from None
        st = store.status(project.id)
    stop = _stopping_summary(st.rounds, rule)
    if as_json:
        echo_json({"rounds": lines, "oracle": kind, "curve": [_round_row(r) for r in st.rounds], "stopping": stop})
        return
    click.echo("learning curve:")
    _echo_round_table([_round_row(r) for r in st.rounds])
    click.echo(_stopping_line(stop))


# ---------------------------------------------------------------------- status
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _round_row(r) -> dict:
    return {"round": r.number, "strategy": r.strategy, "state": r.state, "labels": r.labels_used,
            "selected": r.selected,
            "accuracy": r.metrics.accuracy if r.metrics else None,
            "fgsm_accuracy": r.metrics.fgsm_accuracy if r.metrics else None,
            "pgd_accuracy": r.metrics.pgd_accuracy if r.metrics else None,
            "agreement": r.stop_agreement,
            "seconds": round(sum(r.timings.values()), 3), "model": r.model_path,
            "started_at": r.started_at.isoformat()}


def _short_strategy(text: str) -> str:
    """The table's strategy column: the name and its mode (``dfal(fast)``); ``--json`` keeps every parameter."""
    from activeadv.acquisition import parse_strategy

    name, params = parse_strategy(text)
    return f"{name}({params['mode']})" if "mode" in params else name


def _echo_round_table(rounds: list[dict]) -> None:
    names = [_short_strategy(r["strategy"]) for r in rounds]
    width = max(len("strategy"), *(len(n) for n in names)) + 2
    click.echo(f"{'round':>5}  {'strategy':<{width}}{'state':<10}{'labels':>7}{'asked':>7}"
               f"{'accuracy':>10}{'FGSM':>8}{'PGD':>8}{'agree':>8}{'time':>9}")
    for r, name in zip(rounds, names):
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.3f}"
        click.echo(f"{r['round']:>5}  {name:<{width}}{r['state']:<10}{_n(r['labels']):>7}"
                   f"{_n(r['selected']):>7}{_pct(r['accuracy']):>10}{_pct(r['fgsm_accuracy']):>8}"
                   f"{_pct(r['pgd_accuracy']):>8}{agree:>8}{r['seconds']:>8.1f}s")


def _stopping_summary(rounds, rule=None) -> dict:
    """The stopping rule (stabilizing predictions; default window and threshold) read from the stored rounds."""
    from activeadv.loop import stopping_state
    from activeadv.stopping import StabilizingPredictions

    rule = rule or StabilizingPredictions()
    fired, first = stopping_state(list(rounds), rule)
    return {"rule": f"mean kappa of the last {rule.window} rounds >= {rule.threshold}", "stable": fired,
            "first_stable_round": first}


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
    from activeadv.cli.labelstudio import label_studio_summary

    with _open(database_url) as store:
        project = store.get_project(project_name)
        st = store.status(project.id)
        holder = store.lock_holder(project.id)
    ls = label_studio_summary(project)
    rounds = [_round_row(r) for r in st.rounds]
    stop = _stopping_summary(st.rounds)
    if as_json:
        echo_json({"project": project.name, "dataset": project.dataset, "classes": list(project.class_names),
                   "pool": st.pool, "test": st.test, "labeled": st.labeled, "pending": st.pending,
                   "skipped": st.skipped, "rejected": st.rejected,
                   "running": None if holder is None else {"pid": holder[0], "host": holder[1]},
                   "label_studio": ls, "rounds": rounds, "stopping": stop})
        return
    click.echo(f"project {project.name}: {project.dataset}, {len(project.class_names)} classes")
    click.echo(f"pool {st.pool} items: {st.labeled} labeled, {st.pending} requested (pending), "
               f"{st.skipped} skipped, {st.rejected} rejected annotation(s); test split {st.test} items")
    if ls is not None:
        if ls["error"] is None:
            click.echo(f"Label Studio project {ls['project_id']}: {ls['tasks']} tasks: {ls['open']} open, "
                       f"{ls['annotated']} annotated, {ls['skipped']} skipped; annotate at {ls['data_manager']}")
        else:
            click.echo(f"Label Studio project {ls['project_id']}: {ls['error']}")
    if holder is not None:
        click.echo(f"a round is running: pid {holder[0]} on {holder[1]}")
    if not rounds:
        click.echo("no rounds yet: run `activeadv round`")
        return
    _echo_round_table(rounds)
    click.echo(_stopping_line(stop))


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


# ---------------------------------------------------------------------- report
@click.command("report")
@project_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for rounds.csv, simulations.csv and accuracy.png.")
@db_option
def report_command(project_name: str | None, out_dir: Path, database_url: str | None) -> None:
    """Accuracy against labels across the project's rounds (CSV and PNG), beside stored simulate runs."""
    from activeadv.loop import write_report

    with _open(database_url) as store:
        project = store.get_project(project_name)
        files = write_report(store.status(project.id), store.simulations(project.dataset), out_dir)
    click.echo("wrote " + ", ".join(str(f) for f in files))


def register(cli: click.Group) -> None:
    for command in (init_command, db_group, labels_group, round_command, run_command, status_command,
                    report_command):
        cli.add_command(command)
