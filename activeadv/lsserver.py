"""Install, start and stop a local Label Studio server, headless, without clicks.

Label Studio lives in its own virtualenv (``$ACTIVEADV_HOME/ls-venv``, default
``~/.activeadv``) because the server pins an exact ``label-studio-sdk`` and we
must not let it hold back the client SDK in the project's environment.

A server is identified by its *data dir* (SQLite database, uploads, exports,
``server.pid``, ``server.log``, ``server.json``).  The admin user and its API
token are preset on the first start through Label Studio's own variables (see
``/work/shared/labelstudio.md``): ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``
must be set at that first start, or the preset token answers 401 for ever.

Secrets: the API token is taken from the caller (the CLI reads
``LABEL_STUDIO_API_KEY``) or generated once and written to ``DATA_DIR/token``
with mode 0600; the Django ``SECRET_KEY`` and the admin password are generated
once the same way so that restarts keep sessions and tokens valid.  None of them
is ever logged; ``server.json`` holds only the URL, port, pid and paths.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from activeadv.errors import LabelStudioError
from activeadv.processes import check_port_free, healthy, pid_alive

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ADMIN = "admin@activeadv.local"


def activeadv_home(environ: dict[str, str] | None = None) -> Path:
    """``$ACTIVEADV_HOME`` or ``~/.activeadv``: where the server venv and data live."""
    env = os.environ if environ is None else environ
    return Path(env.get("ACTIVEADV_HOME") or Path.home() / ".activeadv").expanduser()


def venv_dir(home: Path | None = None) -> Path:
    return (home or activeadv_home()) / "ls-venv"


def default_data_dir(home: Path | None = None) -> Path:
    return (home or activeadv_home()) / "ls-data"


def default_files_root(home: Path | None = None) -> Path:
    """The local-files root when none is given: an empty folder of its own, never the home directory (the server
    would serve every file under it, its own token and database included).  Image folders outside the root are
    sent inline instead."""
    return (home or activeadv_home()) / "ls-files"


def label_studio_bin(home: Path | None = None) -> Path:
    return venv_dir(home) / "bin" / "label-studio"


# --------------------------------------------------------------------- install
def install(home: Path | None = None, *, version: str | None = None, force: bool = False) -> Path:
    """Create the server venv and ``pip install label-studio`` into it; skipped when present.

    Returns the path of the ``label-studio`` executable.  About a minute and
    1 GB on a fresh machine; needs the package index.
    """
    venv = venv_dir(home)
    exe = label_studio_bin(home)
    if exe.exists() and not force:
        log.info("Label Studio already installed in %s", venv)
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    spec = f"label-studio=={version}" if version else "label-studio"
    logfile = venv.parent / "ls-install.log"
    log.info("installing %s into %s (log: %s)", spec, venv, logfile)
    with logfile.open("w") as out:
        for cmd in ([sys.executable, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "pip"), "install", "--quiet", spec]):
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
            if rc != 0:
                raise LabelStudioError(f"installing Label Studio failed ({' '.join(cmd[:3])}...); see {logfile}")
    if not exe.exists():
        raise LabelStudioError(f"label-studio executable missing after install; see {logfile}")
    return exe


# ----------------------------------------------------------------------- start
@dataclass(frozen=True)
class ServerConfig:
    """How to start one server.  ``token`` / ``password`` None: generated once, kept 0600 in the data dir."""

    data_dir: Path
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    files_root: Path | None = None  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; None: default_files_root()
    username: str = DEFAULT_ADMIN
    token: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    home: Path | None = None  # where ls-venv lives; None: activeadv_home()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerInfo:
    """A running (or last started) server, as written to ``DATA_DIR/server.json``; no secrets."""

    url: str
    port: int
    pid: int
    data_dir: str
    files_root: str
    token_file: str
    log_file: str


def _secret_file(path: Path, given: str | None, nbytes: int = 24) -> str:
    """The secret in ``path`` (0600), written from ``given`` or a fresh random value on first use."""
    if path.exists() and given is None:
        return path.read_text().strip()
    value = given or secrets.token_hex(nbytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def server_token(data_dir: Path, given: str | None) -> str:
    """The API token the server in ``data_dir`` is (to be) started with.

    Label Studio sets the admin's token only when it creates the admin, on
    the first start.  So once a data dir has a token, a different one given
    later (another ``LABEL_STUDIO_API_KEY``) would be written to the token file
    but refused by the server: the working token is kept and a warning says
    so.  A token too short for Label Studio is refused before anything is
    written.
    """
    if given is not None:
        given = given.strip()
        if len(given) <= 5:
            raise LabelStudioError("the Label Studio API token must be longer than 5 characters")
    existing = read_token(data_dir)
    if existing and given and given != existing:
        log.warning("the Label Studio server in %s already has its API token (in %s); keeping it, since the "
                    "server would refuse the one given now: use that token, or a new --data-dir",
                    data_dir, token_file(data_dir))
        return existing
    return _secret_file(token_file(data_dir), given)


def token_file(data_dir: Path) -> Path:
    return data_dir / "token"


def read_token(data_dir: Path) -> str | None:
    """The API token a server in ``data_dir`` was started with, or None."""
    path = token_file(data_dir)
    return path.read_text().strip() if path.exists() else None


def read_info(data_dir: Path) -> ServerInfo | None:
    path = data_dir / "server.json"
    if not path.exists():
        return None
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def start(cfg: ServerConfig, *, timeout: float = 180.0) -> ServerInfo:
    """Start Label Studio in the background (own session) and wait until ``/health`` is UP.

    Idempotent: a server already running from ``cfg.data_dir`` and healthy is
    returned as is.  First start on a fresh data dir runs migrations (30-45 s);
    a restart takes about 5 s.  Raises ``LabelStudioError`` when the port is
    taken by something else, the process dies, or it is not UP in ``timeout``.
    """
    exe = label_studio_bin(cfg.home)
    if not exe.exists():
        raise LabelStudioError(f"Label Studio is not installed in {venv_dir(cfg.home)}; "
                               "run 'activeadv labelstudio install'")
    data_dir = cfg.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # it holds the token, the admin password and the server's database
    for db_file in data_dir.glob("*.sqlite3*"):  # written by an older start with the default umask
        db_file.chmod(0o600)
    info = read_info(data_dir)
    if info and pid_alive(info.pid) and healthy(info.url):
        log.info("Label Studio already running at %s (pid %d)", info.url, info.pid)
        return info
    if healthy(cfg.url):
        raise LabelStudioError(f"port {cfg.port} already serves another Label Studio; stop it or pick --port")
    check_port_free(cfg.host, cfg.port, LabelStudioError)

    token = server_token(data_dir, cfg.token)
    password = _secret_file(data_dir / "admin-password", cfg.password, 12)
    secret_key = _secret_file(data_dir / "secret-key", None, 32)
    files_root = (cfg.files_root or default_files_root(cfg.home)).expanduser().resolve()
    files_root.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ)
    env.pop("USERNAME", None)  # Label Studio falls back to it for the admin name
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "SECRET_KEY": secret_key,
        "LABEL_STUDIO_USERNAME": cfg.username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        # this server listens on loopback beside `activeadv serve`: let its webhooks and ML-backend calls reach
        # 127.0.0.1 (Label Studio refuses local addresses by default, against SSRF from a public server)
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
    })
    log_file = data_dir / "server.log"
    cmd = [str(exe), "start", "--no-browser", "--internal-host", cfg.host, "--port", str(cfg.port)]
    log.info("starting Label Studio on %s (data %s, files root %s)", cfg.url, data_dir, files_root)
    with log_file.open("ab") as out:
        # umask 077: what the server writes (its SQLite database holds the token) is for this user only
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=data_dir, start_new_session=True, umask=0o077)
    (data_dir / "server.pid").write_text(f"{proc.pid}\n")
    info = ServerInfo(url=cfg.url, port=cfg.port, pid=proc.pid, data_dir=str(data_dir), files_root=str(files_root),
                      token_file=str(token_file(data_dir)), log_file=str(log_file))
    (data_dir / "server.json").write_text(json.dumps(asdict(info), indent=2) + "\n")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabelStudioError(f"Label Studio exited with code {proc.returncode} while starting; see {log_file}")
        if healthy(cfg.url):
            log.info("Label Studio is UP at %s (pid %d)", cfg.url, proc.pid)
            return info
        time.sleep(1.0)
    stop(data_dir)
    raise LabelStudioError(f"Label Studio was not UP at {cfg.url} after {timeout:.0f} s; see {log_file}")


# ------------------------------------------------------------------------ stop
def stop(data_dir: Path, *, timeout: float = 15.0) -> bool:
    """Stop the server started from ``data_dir`` (TERM, then KILL after ``timeout``); False if none ran."""
    data_dir = data_dir.expanduser().resolve()
    pid_path = data_dir / "server.pid"
    if not pid_path.exists():
        return False
    try:
        pid = int(pid_path.read_text().strip())
    except ValueError:
        pid_path.unlink()
        return False
    if not pid_alive(pid):
        pid_path.unlink()
        return False
    # The server runs in its own session (start_new_session) whose group id is its pid:
    # signal that group so that the Django child processes stop with it.
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if pid_alive(pid):
        log.warning("Label Studio (pid %d) ignored SIGTERM; killing it", pid)
        _signal_group(pid, signal.SIGKILL)
        _reap(pid)
    pid_path.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (tests), so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(data_dir: Path) -> dict[str, object]:
    """What is known about the server of ``data_dir``: running, healthy, url, pid (no secrets)."""
    data_dir = data_dir.expanduser().resolve()
    info = read_info(data_dir)
    if info is None:
        return {"data_dir": str(data_dir), "running": False, "healthy": False, "installed": label_studio_bin().exists()}
    running = (data_dir / "server.pid").exists() and pid_alive(info.pid)
    return {**asdict(info), "running": running, "healthy": running and healthy(info.url),
            "installed": label_studio_bin().exists()}
