"""Label Studio commands: ``labelstudio install|start|stop|status|link``, ``push``, ``sync``, ``annotate-sim``.

Thin adapters over ``activeadv.lsserver`` (the local server), ``activeadv.labelstudio``
(the SDK adapter) and ``activeadv.store``.  The API token is read from the
environment (``LABEL_STUDIO_API_KEY``) or, for a server started by
``activeadv labelstudio start``, from its 0600 token file; it is never an option
(it would show in ``ps``), never printed, logged or stored in the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from activeadv.cli.common import COUNT, db_option, echo_json, json_option, quiet_option, seed_option
from activeadv.errors import ConfigError, LabelStudioError

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


# --------------------------------------------------------------------- helpers
def _data_dir(data_dir: Path | None) -> Path:
    from activeadv import lsserver

    return (data_dir or lsserver.default_data_dir()).expanduser().resolve()


def _local_server(data_dir: Path | None = None) -> Any:
    from activeadv import lsserver

    return lsserver.read_info(_data_dir(data_dir))


def _token(url: str, data_dir: Path | None = None) -> str | None:
    """``LABEL_STUDIO_API_KEY``, else the token file of the local server when ``url`` is that server."""
    from activeadv import lsserver
    from activeadv.settings import Settings

    token = Settings.from_env().label_studio_token
    if token:
        return token
    info = _local_server(data_dir)
    if info is not None and info.url.rstrip("/") == url.rstrip("/"):
        return lsserver.read_token(Path(info.data_dir))
    return None


def _resolve_url(ls_url: str | None, project: Any = None) -> str:
    if ls_url:
        return ls_url.rstrip("/")
    if project is not None and project.ls_url:
        return project.ls_url.rstrip("/")
    info = _local_server()
    if info is not None:
        return info.url
    raise ConfigError("no Label Studio URL: set LABEL_STUDIO_URL (or pass --url), link the project with "
                      "`activeadv labelstudio link`, or start a local server with `activeadv labelstudio start`")


def _files_root(files_root: Path | None, url: str) -> Path | None:
    if files_root is not None:
        return files_root.expanduser().resolve()
    info = _local_server()
    if info is not None and info.url.rstrip("/") == url.rstrip("/"):
        return Path(info.files_root)
    return None


def connect_for(ls_url: str | None, project: Any = None, **connect_kwargs: Any):
    """A connected ``LabelStudioClient`` for the project (URL: option > project link > local server).

    ``connect_kwargs`` go to ``labelstudio.connect`` (e.g. ``max_retries=0`` for a quick look in `status`).
    """
    from activeadv.labelstudio import connect

    url = _resolve_url(ls_url, project)
    return connect(url, _token(url), **connect_kwargs)


def data_manager_url(project: Any) -> str | None:
    """Where annotators open the project's tasks in the browser (None when not linked)."""
    if project.ls_url is None or project.ls_project_id is None:
        return None
    return f"{project.ls_url.rstrip('/')}/projects/{int(project.ls_project_id)}/data"


def label_studio_summary(project: Any) -> dict[str, Any] | None:
    """Label Studio's side of a linked project for `status`: task counts, or ``error`` when unreachable.

    Never raises for an unreachable server or a refused token (`status` must
    still show the database side); no retries, so a down server costs ~1 s.
    """
    if project.ls_project_id is None:
        return None
    out: dict[str, Any] = {"url": project.ls_url, "project_id": int(project.ls_project_id),
                           "data_manager": data_manager_url(project)}
    try:
        client = connect_for(None, project, max_retries=0, timeout=10.0)
        out.update(client.project_counts(int(project.ls_project_id)))
        out["error"] = None
    except LabelStudioError as exc:
        out["error"] = str(exc)
    return out


def simulated_annotator(client: Any, ls_project_id: int, pool: Any, class_names: Sequence[str], accuracy: float,
                        seed: int) -> Any:
    """``answer() -> n``: answers every open task of the project from the dataset's known labels.

    Wrong with probability ``1 - accuracy`` (a random other class); one seeded
    generator for the whole run, so a run is reproducible.  Used by
    `annotate-sim` and `run --auto-annotate`.
    """
    import numpy as np

    if not 0.0 <= accuracy <= 1.0:
        raise ConfigError("--accuracy must be in [0, 1]")
    if not pool.has_targets:
        raise ConfigError("this dataset has no known labels to simulate an annotator with")
    names = list(class_names)
    rng = np.random.default_rng(seed)

    def label_for(item_id: int) -> str:
        truth = int(pool.targets([item_id])[0])
        if len(names) > 1 and rng.random() >= accuracy:
            return names[int(rng.choice([c for c in range(len(names)) if c != truth]))]
        return names[truth]

    def answer(limit: int | None = None, progress: Any = None) -> int:
        return client.annotate_open_tasks(ls_project_id, label_for, limit=limit, progress=progress)

    return answer


def _open(database_url: str | None):
    from activeadv.settings import Settings
    from activeadv.store import Store

    return Store.open(database_url or Settings.from_env().database_url)


def _linked(project: Any) -> int:
    if project.ls_project_id is None:
        raise ConfigError(f"project '{project.name}' is not linked to Label Studio: run "
                          f"`activeadv labelstudio link -p {project.name}` (or `init ... --label-studio URL`)")
    return int(project.ls_project_id)


def _bar(total: int, desc: str, quiet: bool):
    from activeadv.progress import bar as progress_bar

    return progress_bar(not quiet, total=total, desc=desc, unit="item", leave=False)


def link_project(store: Any, project: Any, client: Any, *, ls_project_id: int | None = None,
                 files_root: Path | None = None, pool: Any = None) -> Any:
    """Create (or link and check) the Label Studio project of an activeadv project; returns the updated project.

    Called by ``activeadv labelstudio link`` and meant for ``init --label-studio URL``.
    Stores only the URL and the Label Studio project id, never the token.  For
    image-folder datasets under ``files_root`` a Local Files storage over the
    folder is added so that annotators see the images.
    """
    from activeadv.errors import LabelStudioNotFoundError
    from activeadv.labelstudio import served_from_disk

    title, classes = f"activeadv {project.name}", list(project.class_names)
    relinked: dict[str, Any] = {}
    if ls_project_id is not None:  # asked for by id: it must exist
        pid = client.ensure_project(title, classes, ls_project_id)
    elif project.ls_project_id is not None and (project.ls_url or "").rstrip("/") == client.url.rstrip("/"):
        try:  # already linked: check it still exists and matches
            pid = client.ensure_project(title, classes, project.ls_project_id)
        except LabelStudioNotFoundError:  # deleted in Label Studio: a new project, synced from scratch
            log.warning("Label Studio project %d is gone: creating a new one", project.ls_project_id)
            pid = client.ensure_project(title, classes, None)
            relinked = {"ls_last_sync": None}
    else:
        pid = client.ensure_project(title, classes, None)
    if served_from_disk(pool, files_root):
        client.ensure_local_storage(pid, pool.root)
    return store.update_project(project.id, ls_url=client.url, ls_project_id=pid, **relinked)


def store_oracle(store: Any, project: Any, pool: Any, client: Any, *, files_root: Path | None = None,
                 top_k: int | None = None) -> Any:
    """A ``LabelStudioOracle`` whose task map and sync cursor live in the store (for ``round --oracle``)."""
    from functools import partial

    from activeadv.labelstudio import LabelStudioOracle, pool_image_refs

    def known() -> dict[int, int]:
        return {item: int(task) for rid, _ in store.pending(project.id) for item, task in store.task_ids(rid).items()}

    return LabelStudioOracle(
        client, _linked(project), project.class_names,
        image_ref=partial(pool_image_refs, pool, files_root=files_root),
        known_tasks=known,
        on_created=lambda round_id, new: store.set_task_ids(round_id, new),
        get_cursor=lambda: store.get_project(project.name).ls_last_sync,
        set_cursor=lambda when: store.set_sync_cursor(project.id, when),
        top_k=top_k,
        model_version=lambda round_id: str(store.get_round(round_id).number))


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
    from activeadv import lsserver

    exe = lsserver.install(version=version, force=force)
    click.echo(f"Label Studio installed: {exe}")


@labelstudio_group.command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port on 127.0.0.1.")
@data_dir_option
@click.option("--files-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder (and sub-folders) whose images Label Studio may serve [default: your home directory].")
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
    from activeadv import lsserver
    from activeadv.settings import Settings

    cfg = lsserver.ServerConfig(data_dir=_data_dir(data_dir), port=port, files_root=files_root, username=username,
                                token=Settings.from_env().label_studio_token)
    info = lsserver.start(cfg, timeout=timeout)
    if as_json:
        echo_json({**info.__dict__, "healthy": True})
        return
    click.echo(f"Label Studio is UP at {info.url} (pid {info.pid}, data {info.data_dir}, files root {info.files_root})")
    click.echo(f"API token: LABEL_STUDIO_API_KEY, or `export LABEL_STUDIO_API_KEY=$(cat {info.token_file})`")


@labelstudio_group.command("stop")
@data_dir_option
def stop_command(data_dir: Path | None) -> None:
    """Stop the server started from DATA_DIR (SIGTERM, SIGKILL after 15 s)."""
    from activeadv import lsserver

    stopped = lsserver.stop(_data_dir(data_dir))
    click.echo("Label Studio stopped" if stopped else "no Label Studio server was running from " + str(_data_dir(data_dir)))


@labelstudio_group.command("status")
@data_dir_option
@json_option
def status_command(data_dir: Path | None, as_json: bool) -> None:
    """Is the local server installed, running and healthy?  Exit 1 when it is not healthy."""
    from activeadv import lsserver

    state = lsserver.status(_data_dir(data_dir))
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
    with _open(database_url) as store, _project_lock(store, project_name) as before:
        client = connect_for(ls_url, before if ls_url is None else None)
        root = _files_root(files_root, client.url)
        pool = _pool(store, before) if root is not None else None
        project = link_project(store, before, client, ls_project_id=ls_project, files_root=root, pool=pool)
        created = 0
        if before.ls_project_id is not None and project.ls_project_id != before.ls_project_id:
            # a new Label Studio project: the open requests have no task there yet
            created, _, _ = push_requested(store, project, client, root)
    click.echo(f"project '{project.name}' linked to Label Studio project {project.ls_project_id} at {client.url}"
               + (f"; {created} open request(s) sent again" if created else ""))


def _pool(store: Any, project: Any) -> Any:
    from activeadv.loop import project_dataset

    return project_dataset(store, project).pool


# ------------------------------------------------------------- push and sync
def _requested(store: Any, project_id: int) -> list[tuple[int, int, int, int | None, float | None, int | None]]:
    """``(round_id, round_number, item_id, predicted, confidence, task_id)`` of pending requests, best first."""
    rows = []
    for round_id, selection in store.pending(project_id):
        number = store.get_round(round_id).number
        tasks = store.task_ids(round_id)
        for pos, item_id in enumerate(selection.item_ids):
            item_id = int(item_id)
            predicted = None if selection.predicted is None else int(selection.predicted[pos])
            score = None if selection.confidence is None else float(selection.confidence[pos])
            task = tasks.get(item_id)
            rows.append((round_id, number, item_id, predicted, score, None if task is None else int(task)))
    return rows


@contextmanager
def _project_lock(store: Any, project_name: str | None) -> Iterator[Any]:
    """The project, under the lock a round holds: two pushes at once created every task twice (both saw no
    task for an item, both imported it), and a push beside a round's own push did the same."""
    project = store.get_project(project_name)
    with store.lock(project.id):
        yield store.get_project(project_name)  # read again under the lock: the link may have changed


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
    with _open(database_url) as store, _project_lock(store, project_name) as project:
        _linked(project)
        client = connect_for(ls_url, project)
        created, existing, requested = push_requested(store, project, client, _files_root(files_root, client.url),
                                                      top_k=top_k, quiet=quiet)
    _report_push(as_json, created, existing, requested, client.url, _linked(project))


def push_requested(store: Any, project: Any, client: Any, root: Path | None, *, top_k: int | None = None,
                   quiet: bool = True) -> tuple[int, int, int]:
    """Send the project's requested items as tasks (those without one first limited to ``top_k``).

    Returns ``(created, already_there, requested)``.  Items whose task exists
    are found by item id and never doubled; a task deleted in Label Studio is
    sent again.  The caller holds the project lock.
    """
    from activeadv.labelstudio import PushItem, pool_image_refs, served_from_disk

    ls_pid = _linked(project)
    rows = _requested(store, project.id)
    with_task = [r for r in rows if r[5] is not None]
    without = [r for r in rows if r[5] is None]
    if top_k is not None:
        without = without[:top_k]
    chosen = with_task + without
    if not chosen:
        return 0, 0, len(rows)
    pool = _pool(store, project)
    if served_from_disk(pool, root):
        client.ensure_local_storage(ls_pid, pool.root)
    ids = [r[2] for r in chosen]
    images = pool_image_refs(pool, ids, files_root=root)
    names = list(project.class_names)
    by_round: dict[int, list] = {}
    for rid, number, item_id, predicted, score, task in chosen:
        by_round.setdefault(rid, []).append((number, item_id, predicted, score, task))
    created = 0
    with _bar(len(chosen), "push", quiet) as bar:
        for rid, entries in by_round.items():
            items = [PushItem(item_id, images[item_id],
                              names[p] if p is not None and 0 <= p < len(names) else None, score)
                     for _, item_id, p, score, _ in entries]
            known = {item_id: task for _, item_id, _, _, task in entries if task is not None}

            def save(new: dict[int, int], rid: int = rid) -> None:
                store.set_task_ids(rid, new)

            created += len(client.push_tasks(ls_pid, items, model_version=entries[0][0], known=known,
                                             on_created=save, progress=bar.update).created)
    return created, len(chosen) - created, len(rows)


def _report_push(as_json: bool, created: int, existing: int, requested: int, url: str, ls_pid: int) -> None:
    if as_json:
        echo_json({"created": created, "already_there": existing, "requested": requested,
                   "label_studio_project": ls_pid, "url": url})
    else:
        click.echo(f"pushed {created} new task(s) to Label Studio project {ls_pid} ({existing} already there; "
                   f"{requested} item(s) requested in all)")


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
    with _open(database_url) as store, _project_lock(store, project_name) as project:
        ls_pid = _linked(project)
        client = connect_for(ls_url, project)
        result = client.pull_annotations(ls_pid, project.class_names, project.ls_last_sync)
        # refused labels go to the store's reject table too, so `status` counts them
        batch = result.for_store()
        with _bar(len(batch), "sync", quiet) as bar:
            counts = store.add_labels(project.id, batch)
            bar.update(len(batch))
        if result.cursor is not None:
            store.set_sync_cursor(project.id, result.cursor)
    payload = {"labels": counts.added, "duplicates": counts.duplicates, "superseded": counts.superseded,
               "retracted": counts.retracted, "skipped": counts.skipped, "rejected": [r.__dict__ for r in result.rejects],
               "ties": result.ties,
               "disagreements": [d.__dict__ for d in result.disagreements],
               "cursor": result.cursor}
    if as_json:
        echo_json(payload)
        return
    click.echo(f"synced {counts.added} new label(s) ({counts.duplicates} already stored, {counts.superseded} "
               f"corrected, {counts.retracted} retracted: deleted in Label Studio), {counts.skipped} skipped, "
               f"{len(result.rejects)} refused, {len(result.ties)} tie(s)")
    for r in result.rejects:
        click.echo(f"  refused: item {r.item_id} label {r.label!r} by {r.annotator}: {r.reason}")
    for d in result.disagreements:
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
    if not 0.0 <= accuracy <= 1.0:
        raise ConfigError("--accuracy must be in [0, 1]")
    with _open(database_url) as store:
        project = store.get_project(project_name)
        ls_pid = _linked(project)
        client = connect_for(ls_url, project)
        pool = _pool(store, project)
        if not pool.has_targets:
            raise ConfigError(f"dataset {project.dataset} has no known labels to simulate an annotator with")
        answer = simulated_annotator(client, ls_pid, pool, project.class_names, accuracy, seed)

        open_now = client.project_counts(ls_pid)["open"]
        total = open_now if limit is None else min(limit, open_now)
        with _bar(total, "annotate", quiet) as bar:
            done = answer(limit=limit, progress=bar.update)
        counts = client.project_counts(ls_pid)
    if as_json:
        echo_json({"answered": done, **counts})
    else:
        click.echo(f"answered {done} task(s) as {client.user_email}; Label Studio project {ls_pid} now has "
                   f"{counts['open']} open, {counts['annotated']} annotated, {counts['skipped']} skipped")


def register(cli: click.Group) -> None:
    for command in (labelstudio_group, push_command, sync_command, annotate_sim_command):
        cli.add_command(command)
