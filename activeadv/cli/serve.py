"""``activeadv serve``: the always-on service beside Label Studio (webhooks, ML backend); ``serve stop|status``.

A thin adapter over ``activeadv.service.daemon`` (run, detach, stop, status)
and ``activeadv.app.webhooks`` (``--register``).  The shared secret comes from
``ACTIVEADV_WEBHOOK_SECRET`` or a generated 0600 file in the state dir; it is
never an option (it would show in ``ps``) and never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from activeadv.cli.common import COUNT, db_option, device_option, echo_json, executor_options, json_option

if TYPE_CHECKING:
    from activeadv.app.webhooks import Registration
    from activeadv.service import ServiceConfig

project_option = click.option("-p", "--project", "project_name", envvar="ACTIVEADV_PROJECT", default=None,
                              help="Project name [env ACTIVEADV_PROJECT; default: the only project].")
state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="ACTIVEADV_SERVE_DIR",
    help="Pid file, log and generated secret [env ACTIVEADV_SERVE_DIR; default $ACTIVEADV_HOME/serve].")


@click.group("serve", invoke_without_command=True)
@project_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep 127.0.0.1 unless a "
              "proxy or another host must reach it).")
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True, help="Port.")
@click.option("--min-new-labels", type=COUNT, default=None,
              help="Run a round after this many new labels [default: --query-size].")
@click.option("--seed-round", type=COUNT, default=None,
              help="A project with no round yet starts with a seed round of this many random items sent to Label "
                   "Studio [default: wait for `activeadv round`].")
@click.option("--strategy", default="dfal", show_default=True, help="Selection strategy of the rounds it runs.")
@click.option("--query-size", type=COUNT, default=20, show_default=True, help="Items each round sends.")
@device_option
@executor_options
@click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="ACTIVEADV_CHECKPOINT_DIR",
              help="Where round checkpoints go [env ACTIVEADV_CHECKPOINT_DIR, as for `round`; default: beside the "
                   "SQLite file].")
@click.option("--retry-seconds", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="Wait before trying again when Label Studio is down or the project is locked.")
@click.option("--register", is_flag=True, help="Register the webhook (with the secret) and the ML backend on the "
              "linked Label Studio project once the service answers.")
@click.option("--public-url", default=None, help="The URL Label Studio reaches the service at [default: "
              "http://HOST:PORT].")
@click.option("--detach", is_flag=True, help="Run in the background (pid file and log in the state dir).")
@state_dir_option
@json_option
@click.pass_context
def serve_group(ctx: click.Context, project_name: str | None, database_url: str | None, host: str, port: int,
                min_new_labels: int | None, seed_round: int | None, strategy: str, query_size: int, device: str,
                execution: Any,
                checkpoint_dir: Path | None,
                retry_seconds: float, register: bool, public_url: str | None, detach: bool, state_dir: Path | None,
                as_json: bool) -> None:
    """Serve Label Studio's webhooks and ML-backend protocol for a project: rounds follow the annotators.

    Each webhook delivery is stored before it is acted on; a worker syncs the
    labels and, after --min-new-labels new ones, runs a round that sends the
    next tasks.  Label Studio needs SSRF_PROTECTION_ENABLED=false to call a
    service on 127.0.0.1.  Stop it with `activeadv serve stop`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from activeadv.service import ServiceConfig, daemon

    cfg = ServiceConfig(database_url=database_url, project=project_name, host=host, port=port,
                        min_new_labels=min_new_labels, seed_round=seed_round, strategy=strategy,
                        query_size=query_size, device=device,
                        checkpoint_dir=checkpoint_dir, retry_seconds=retry_seconds, execution=execution)
    url = (public_url or cfg.url).rstrip("/")

    def do_register() -> None:
        registration = _register(cfg, url, state_dir)
        if as_json:
            echo_json(registration.to_dict())
        else:
            click.echo(f"registered webhook {registration.webhook_url} and ML backend on Label Studio project "
                       f"{registration.ls_project_id}", err=not detach)

    if detach:
        argv = ["-v", "serve", "--host", host, "--port", str(port), "--strategy", strategy,
                "--query-size", str(query_size), "--device", device, "--retry-seconds", str(retry_seconds)]
        argv += [] if project_name is None else ["--project", project_name]
        argv += [] if database_url is None else ["--db", database_url]
        argv += [] if min_new_labels is None else ["--min-new-labels", str(min_new_labels)]
        argv += [] if seed_round is None else ["--seed-round", str(seed_round)]
        argv += [] if checkpoint_dir is None else ["--checkpoint-dir", str(Path(checkpoint_dir).resolve())]
        argv += ["--executor", execution.executor, "--ray-workers", str(execution.ray_workers),
                 "--train-workers", str(execution.train_workers)]
        argv += [] if execution.ray_address is None else ["--ray-address", execution.ray_address]
        info = daemon.detach(cfg, argv, given_state_dir=state_dir)
        if register:
            do_register()
        if as_json and not register:
            echo_json(info)
        elif not as_json:
            click.echo(f"activeadv serve running at {info.get('url')} (pid {info.get('pid')}); "
                       f"log {info.get('log_file')}")
        return
    click.echo(f"activeadv serve at {cfg.url} (Ctrl-C stops it)", err=True)
    daemon.run(cfg, given_state_dir=state_dir, on_ready=do_register if register else None)


def _register(cfg: ServiceConfig, url: str, state_dir: Path | None) -> Registration:
    from activeadv.app.webhooks import register
    from activeadv.app.workspace import Workspace
    from activeadv.service import daemon
    from activeadv.service.secret import BASIC_USER, HEADER

    with Workspace(cfg.database_url) as ws:
        return register(ws, cfg.project, url, daemon.secret(state_dir), header=HEADER, basic_user=BASIC_USER)


@serve_group.command("stop")
@state_dir_option
def stop_command(state_dir: Path | None) -> None:
    """Stop the background service (SIGTERM; a round cut short is finished by the next start)."""
    from activeadv.service import daemon

    click.echo("stopped" if daemon.stop(state_dir) else "no service was running")


@serve_group.command("status")
@state_dir_option
@json_option
def status_command(state_dir: Path | None, as_json: bool) -> None:
    """Whether the service runs, where, and what its worker did (events, syncs, rounds, last error)."""
    from activeadv.service import daemon

    info = daemon.status(state_dir)
    if as_json:
        echo_json(info)
        return
    if not info["running"]:
        click.echo(f"activeadv serve is not running (state dir {info['state_dir']})")
        return
    click.echo(f"activeadv serve running at {info['url']} (pid {info['pid']}), "
               f"{'healthy' if info['healthy'] else 'NOT answering'}; log {info['log_file']}")
    worker = info.get("worker")
    if worker:
        click.echo(f"project {worker['project']}: {worker['pending_events']} event(s) waiting, "
                   f"{worker['events_processed']} processed, {worker['syncs']} sync(s), {worker['rounds']} round(s); "
                   f"model version {worker['model_version']}"
                   + (f"; last error: {worker['last_error']}" if worker["last_error"] else ""))


def register(cli: click.Group) -> None:
    cli.add_command(serve_group)
