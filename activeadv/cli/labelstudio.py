"""Label Studio commands: ``labelstudio install|start|stop|status|link``, ``push``, ``sync``, ``annotate-sim``.

Thin adapters over ``activeadv.app.server`` (the local server) and
``activeadv.app.annotation`` (link, push, sync, the simulated annotator).  The
API token is read from the environment (``LABEL_STUDIO_API_KEY``) or, for a
server started by ``activeadv labelstudio start``, from its 0600 token file; it
is never an option (it would show in ``ps``), never printed, logged or stored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from activeadv.cli.common import COUNT, db_option, echo_json, json_option, quiet_option, seed_option

log = logging.getLogger(__name__)

project_option = click.option("-p", "--project", "project_name", envvar="ACTIVEADV_PROJECT", default=None,
                              help="Project name [env ACTIVEADV_PROJECT; default: the only project].")
url_option = click.option("--url", "ls_url", envvar="LABEL_STUDIO_URL", default=None,
                          help="Label Studio URL [env LABEL_STUDIO_URL; default: the project's linked URL, "
                               "else the server started by `activeadv labelstudio start`].")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                               envvar="ACTIVEADV_LS_DATA_DIR",
                               help="Server data dir [env ACTIVEADV_LS_DATA_DIR; default $ACTIVEADV_HOME/ls-data].")
files_root_option = click.option(
    "--files-root", type=click.Path(file_okay=False, path_type=Path), default=None,
    envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
    help="Label Studio's local-files root, above every image folder [env LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; "
         "default: the one the local server was started with; without one, images are sent inline].")


def _workspace(database_url: str | None):
    from activeadv.app.workspace import Workspace

    return Workspace(database_url)


# -------------------------------------------------------------- server group
@click.group("labelstudio")
def labelstudio_group() -> None:
    """Run a local Label Studio server and link projects to it.

    The server gets its own virtualenv ($ACTIVEADV_HOME/ls-venv, default
    ~/.activeadv) and data dir; `start` presets an admin and an API token
    (LABEL_STUDIO_API_KEY if set, else a random one kept in DATA_DIR/token).
    """


@labelstudio_group.command("install")
@click.option("--version", "version", default=None, help="label-studio version to install (default: newest).")
@click.option("--force", is_flag=True, help="Reinstall even if present.")
def install_command(version: str | None, force: bool) -> None:
    """Install Label Studio into its own virtualenv (about a minute, ~1 GB; skipped when present)."""
    from activeadv.app import server

    exe = server.install(version=version, force=force)
    click.echo(f"Label Studio installed: {exe}")


@labelstudio_group.command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port on 127.0.0.1.")
@data_dir_option
@click.option("--files-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder (and sub-folders) whose images Label Studio may serve: put it above your image folders "
                   "[default: $ACTIVEADV_HOME/ls-files, an empty folder; images elsewhere are sent inline].")
@click.option("--username", default="admin@activeadv.local", show_default=True, help="Admin e-mail (first start).")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for /health UP.")
@json_option
def start_command(port: int, data_dir: Path | None, files_root: Path | None, username: str, timeout: float,
                  as_json: bool) -> None:
    """Start Label Studio headless in the background and wait until it is UP.

    The API token is LABEL_STUDIO_API_KEY when set (first start), else a
    random one written to DATA_DIR/token (mode 0600).  Starting a server that
    already runs from DATA_DIR does nothing.  First start ~45 s (migrations),
    later ones ~5 s.

    Example: activeadv labelstudio start --port 8089 && export LABEL_STUDIO_URL=http://127.0.0.1:8089
    """
    from activeadv.app import server

    info = server.start(data_dir, port=port, files_root=files_root, username=username, timeout=timeout)
    if as_json:
        echo_json({**info.__dict__, "healthy": True})
        return
    click.echo(f"Label Studio is UP at {info.url} (pid {info.pid}, data {info.data_dir}, files root {info.files_root})")
    click.echo(f"API token: LABEL_STUDIO_API_KEY, or `export LABEL_STUDIO_API_KEY=$(cat {info.token_file})`")


@labelstudio_group.command("stop")
@data_dir_option
def stop_command(data_dir: Path | None) -> None:
    """Stop the server started from DATA_DIR (SIGTERM, SIGKILL after 15 s)."""
    from activeadv.app import server

    stopped = server.stop(data_dir)
    click.echo("Label Studio stopped" if stopped
               else f"no Label Studio server was running from {server.data_dir(data_dir)}")


@labelstudio_group.command("status")
@data_dir_option
@json_option
def status_command(data_dir: Path | None, as_json: bool) -> None:
    """Is the local server installed, running and healthy?  Exit 1 when it is not healthy."""
    from activeadv.app import server

    state = server.status(data_dir)
    if as_json:
        echo_json(state)
    else:
        where = f" at {state['url']} (pid {state['pid']})" if "url" in state else ""
        health = "UP" if state["healthy"] else "running, not healthy" if state["running"] else "stopped"
        click.echo(f"Label Studio{where}: {health}; installed: {'yes' if state['installed'] else 'no'}")
    if not state["healthy"]:
        raise SystemExit(1)


@labelstudio_group.command("link")
@project_option
@url_option
@click.option("--ls-project", type=COUNT, default=None,
              help="Link this existing Label Studio project id (its choices must equal the classes).")
@files_root_option
@db_option
def link_command(project_name: str | None, ls_url: str | None, ls_project: int | None, files_root: Path | None,
                 database_url: str | None) -> None:
    """Create (or link) the Label Studio project of an activeadv project.

    Its labeling config is generated from the class names (single choice);
    the URL and project id are stored, never the token.

    Example: activeadv labelstudio link -p digits-demo --url http://127.0.0.1:8080
    """
    from activeadv.app.annotation import link

    with _workspace(database_url) as ws:
        res = link(ws, project_name, ls_url=ls_url, ls_project_id=ls_project, files_root=files_root)
    click.echo(f"project '{res.project.name}' linked to Label Studio project {res.project.ls_project_id} at {res.url}"
               + (f"; {res.resent} open request(s) sent again" if res.resent else ""))


# ------------------------------------------------------------- push and sync
@click.command("push")
@project_option
@click.option("--top", "top_k", type=COUNT, default=None,
              help="Send at most this many requested items that have no task yet (best first) [default: all].")
@url_option
@files_root_option
@db_option
@quiet_option
@json_option
def push_command(project_name: str | None, top_k: int | None, ls_url: str | None, files_root: Path | None,
                 database_url: str | None, quiet: bool, as_json: bool) -> None:
    """Send requested items to Label Studio as tasks with the model's prediction pre-filled.

    Each task carries data.item_id, the image (inline PNG for in-memory
    datasets, a local-files URL for image folders) and the prediction
    (model_version = round number, score = confidence).  Safe to run again
    after any failure: existing tasks are found by item_id, none is doubled;
    a task deleted in Label Studio is sent again.

    Example: activeadv push --top 20
    """
    from activeadv.app.annotation import push

    with _workspace(database_url) as ws:
        res = push(ws, project_name, top_k=top_k, ls_url=ls_url, files_root=files_root, progress=not quiet)
    if as_json:
        echo_json(res.to_dict())
    else:
        click.echo(f"pushed {res.created} new task(s) to Label Studio project {res.ls_project_id} "
                   f"({res.already_there} already there; {res.requested} item(s) requested in all)")


@click.command("sync")
@project_option
@url_option
@db_option
@quiet_option
@json_option
def sync_command(project_name: str | None, ls_url: str | None, database_url: str | None, quiet: bool,
                 as_json: bool) -> None:
    """Pull annotations made in Label Studio since the last sync and store them.

    Several annotators on one task: the majority label wins, a tie gives no
    label and is listed; labels that are not classes are refused and listed;
    skipped tasks are marked skipped.  Running it twice stores nothing twice.

    Example: activeadv sync
    """
    from activeadv.app.annotation import sync

    with _workspace(database_url) as ws:
        res = sync(ws, project_name, ls_url=ls_url, progress=not quiet)
    if as_json:
        echo_json(res.to_dict())
        return
    click.echo(f"synced {res.added} new label(s) ({res.duplicates} already stored, {res.superseded} "
               f"corrected, {res.retracted} retracted: deleted in Label Studio), {res.skipped} skipped, "
               f"{len(res.rejects)} refused, {len(res.ties)} tie(s)")
    for r in res.rejects:
        click.echo(f"  refused: item {r.item_id} label {r.label!r} by {r.annotator}: {r.reason}")
    for d in res.disagreements:
        votes = ", ".join(f"{k} {v}" for k, v in sorted(d.votes.items()))
        click.echo(f"  {'tie' if d.tie else 'disagreement'} on item {d.item_id}: {votes}"
                   + ("" if d.tie else f" -> {d.label}"))


@click.command("annotate-sim")
@project_option
@click.option("--accuracy", type=float, default=1.0, show_default=True,
              help="Probability of answering the true label; otherwise a random other class.")
@click.option("--limit", type=COUNT, default=None, help="Answer at most this many open tasks.")
@url_option
@seed_option
@db_option
@quiet_option
@json_option
def annotate_sim_command(project_name: str | None, accuracy: float, limit: int | None, ls_url: str | None,
                         seed: int, database_url: str | None, quiet: bool, as_json: bool) -> None:
    """A simulated annotator: answer open Label Studio tasks from the dataset's known labels.

    It works through Label Studio's API as the token's user, like a person
    would, so `sync` and `round` see ordinary annotations.  Seeded: the same
    --seed gives the same mistakes.

    Example: activeadv annotate-sim --accuracy 0.9 --seed 0
    """
    from activeadv.app.annotation import annotate_sim

    with _workspace(database_url) as ws:
        res = annotate_sim(ws, project_name, accuracy=accuracy, limit=limit, ls_url=ls_url, seed=seed,
                           progress=not quiet)
    if as_json:
        echo_json({"answered": res.answered, **res.counts})
    else:
        click.echo(f"answered {res.answered} task(s) as {res.user}; Label Studio project {res.ls_project_id} now has "
                   f"{res.counts['open']} open, {res.counts['annotated']} annotated, {res.counts['skipped']} skipped")


def register(cli: click.Group) -> None:
    for command in (labelstudio_group, push_command, sync_command, annotate_sim_command):
        cli.add_command(command)
