"""Run the service in the foreground (uvicorn), or detached like ``activeadv labelstudio start``; stop; status.

A state dir (default ``$ACTIVEADV_HOME/serve``, 0700) holds ``serve.pid``,
``serve.json`` (URL, pid, project, log file: no secret), ``serve.log`` and the
generated ``webhook-secret`` (0600).  A detached service is a new session
running ``python -m activeadv serve ...`` without ``--detach``; ``stop`` sends
SIGTERM (uvicorn finishes the requests in flight and the worker's step; a round
cut short is finished by the next start).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from activeadv.errors import ActiveAdvError, ConfigError
from activeadv.processes import check_port_free, healthy, pid_alive
from activeadv.service.config import ServiceConfig

log = logging.getLogger(__name__)


class ServeError(ActiveAdvError):
    """The service cannot start (port taken, died while starting) or stop."""


def default_state_dir() -> Path:
    from activeadv.lsserver import activeadv_home

    return activeadv_home() / "serve"


def state_dir(given: Path | None = None) -> Path:
    path = (given or Path(os.environ.get("ACTIVEADV_SERVE_DIR") or default_state_dir())).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def secret(given_state_dir: Path | None = None) -> str:
    """The shared secret (env ``ACTIVEADV_WEBHOOK_SECRET``, else the state dir's 0600 file, created once)."""
    from activeadv.service.secret import load_secret

    return load_secret(state_dir(given_state_dir))


def read_info(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / "serve.json").read_text())
    except (OSError, ValueError):
        return None


def _write_info(directory: Path, cfg: ServiceConfig, pid: int) -> None:
    info = {"url": cfg.url, "host": cfg.host, "port": cfg.port, "pid": pid, "project": cfg.project,
            "log_file": str(directory / "serve.log")}
    (directory / "serve.pid").write_text(f"{pid}\n")
    (directory / "serve.json").write_text(json.dumps(info, indent=2) + "\n")


def running(directory: Path) -> dict[str, Any] | None:
    """The info of a service from ``directory`` whose process is alive, else None."""
    info = read_info(directory)
    if info is None or not (directory / "serve.pid").exists():
        return None
    return info if pid_alive(int(info["pid"])) else None


def run(cfg: ServiceConfig, *, given_state_dir: Path | None = None,
        on_ready: Callable[[], None] | None = None) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (``activeadv serve``).

    ``on_ready`` runs in a thread once ``/health`` answers (``--register``:
    Label Studio checks the ML backend when it is saved); its failure is logged.
    """
    import threading

    import uvicorn

    from activeadv.service.http import build_service, create_app

    directory = state_dir(given_state_dir)
    other = running(directory)
    if other is not None and int(other["pid"]) != os.getpid():
        raise ServeError(f"a service from {directory} already runs at {other['url']} (pid {other['pid']}); "
                         "`activeadv serve stop` first, or pass another --state-dir")
    check_port_free(cfg.host, cfg.port, ServeError)
    service = build_service(cfg, secret(directory))
    _write_info(directory, cfg, os.getpid())
    log.info("serving project %s at %s", service.ws.project(cfg.project).name, cfg.url)
    if on_ready is not None:
        def when_up() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not healthy(cfg.url):
                time.sleep(0.2)
            try:
                on_ready()
            except ActiveAdvError as exc:
                log.error("registration failed: %s", exc)

        threading.Thread(target=when_up, name="activeadv-serve-register", daemon=True).start()
    try:
        config = uvicorn.Config(create_app(service), host=cfg.host, port=cfg.port, log_level="warning",
                                access_log=False, lifespan="on")
        uvicorn.Server(config).run()
    finally:
        info = read_info(directory)
        if info is not None and int(info.get("pid", -1)) == os.getpid():
            (directory / "serve.pid").unlink(missing_ok=True)
        service.ws.close()


def detach(cfg: ServiceConfig, argv: Sequence[str], *, given_state_dir: Path | None = None,
           timeout: float = 60.0) -> dict[str, Any]:
    """Start ``activeadv serve ARGV`` (without ``--detach``) in a new session and wait for ``/health``."""
    directory = state_dir(given_state_dir)
    other = running(directory)
    if other is not None:
        if healthy(other["url"]):
            log.info("service already running at %s (pid %s)", other["url"], other["pid"])
            return other
        raise ServeError(f"a service from {directory} (pid {other['pid']}) is not answering; "
                         "`activeadv serve stop` first")
    check_port_free(cfg.host, cfg.port, ServeError)
    secret(directory)  # create the secret file now, so the child and `--register` read the same one
    log_file = directory / "serve.log"
    cmd = [sys.executable, "-m", "activeadv", *argv, "--state-dir", str(directory)]
    with log_file.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, umask=0o077)
    _write_info(directory, cfg, proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ServeError(f"the service exited with code {proc.returncode} while starting: {tail[0]} "
                             f"(see {log_file})")
        if healthy(cfg.url):
            return read_info(directory) or {}
        time.sleep(0.3)
    stop(directory)
    raise ServeError(f"the service did not answer at {cfg.url} after {timeout:.0f} s; see {log_file}")


def stop(given_state_dir: Path | None = None, *, timeout: float = 60.0) -> bool:
    """SIGTERM the service of the state dir and wait for it; False when none was running."""
    directory = state_dir(given_state_dir)
    pid_path = directory / "serve.pid"
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return False
    if not pid_alive(pid):
        pid_path.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if pid_alive(pid):
        log.warning("the service (pid %d) ignored SIGTERM; killing it (a round cut short resumes at next start)", pid)
        os.kill(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    return True


def status(given_state_dir: Path | None = None) -> dict[str, Any]:
    """``running``, ``healthy``, url, pid, project and, when it answers, the worker's ``/status``."""
    import httpx

    from activeadv.service.secret import HEADER

    directory = state_dir(given_state_dir)
    info = running(directory)
    if info is None:
        return {"running": False, "state_dir": str(directory)}
    out: dict[str, Any] = {"running": True, "healthy": healthy(info["url"]), **info}
    if out["healthy"]:
        try:
            resp = httpx.get(info["url"] + "/status", headers={HEADER: secret(directory)}, timeout=5.0)
            if resp.status_code == 200:
                out["worker"] = resp.json()
        except (httpx.HTTPError, ValueError, ConfigError):
            pass
    return out
