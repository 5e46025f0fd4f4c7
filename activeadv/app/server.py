"""The local Label Studio server's use cases: install, start, stop, status (``activeadv labelstudio ...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activeadv import lsserver
from activeadv.settings import Settings


def data_dir(given: Path | None = None) -> Path:
    """The server's data dir: ``given``, else ``$ACTIVEADV_HOME/ls-data``."""
    return (given or lsserver.default_data_dir()).expanduser().resolve()


def install(version: str | None = None, force: bool = False) -> Path:
    """Label Studio in its own virtualenv (it pins its own dependencies); returns the executable."""
    return lsserver.install(version=version, force=force)


def start(given_data_dir: Path | None = None, *, port: int = lsserver.DEFAULT_PORT, files_root: Path | None = None,
          username: str = lsserver.DEFAULT_ADMIN, timeout: float = 180.0,
          settings: Settings | None = None) -> lsserver.ServerInfo:
    """Start headless (idempotent); the token is ``LABEL_STUDIO_API_KEY`` when set, else kept 0600 in the data dir."""
    token = (settings or Settings.from_env()).label_studio_token
    cfg = lsserver.ServerConfig(data_dir=data_dir(given_data_dir), port=port, files_root=files_root,
                                username=username, token=token)
    return lsserver.start(cfg, timeout=timeout)


def stop(given_data_dir: Path | None = None) -> bool:
    return lsserver.stop(data_dir(given_data_dir))


def status(given_data_dir: Path | None = None) -> dict[str, Any]:
    return lsserver.status(data_dir(given_data_dir))
