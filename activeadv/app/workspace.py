"""What every use case needs from outside the engine: the database, the checkpoint folder, Label Studio.

A ``Workspace`` is made once at the edge (one per CLI command; one for the
whole life of ``activeadv serve``) from ``Settings`` and explicit options, and
handed to the use cases.  It resolves the things the user may leave implicit:
which Label Studio (option > the project's link > the local server), which
token (``LABEL_STUDIO_API_KEY`` > the local server's 0600 token file; never an
option, never stored), which local-files root, where checkpoints go.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activeadv import lsserver
from activeadv.errors import ConfigError
from activeadv.records import ProjectInfo
from activeadv.settings import Settings

if TYPE_CHECKING:
    from activeadv.data import Dataset
    from activeadv.labelstudio import LabelStudioClient
    from activeadv.store import Store

log = logging.getLogger(__name__)


class Workspace:
    """The database (opened lazily, schema checked), checkpoints and Label Studio of one caller."""

    def __init__(self, database_url: str | None = None, *, settings: Settings | None = None,
                 ls_data_dir: Path | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.database_url = database_url or self.settings.database_url
        self.ls_data_dir = (ls_data_dir or lsserver.default_data_dir()).expanduser().resolve()
        self._store: Store | None = None

    # ------------------------------------------------------------------ database
    @property
    def store(self) -> Store:
        """The store on an up-to-date schema (``SchemaError`` otherwise), opened on first use."""
        if self._store is None:
            from activeadv.store import Store

            self._store = Store.open(self.database_url)
        return self._store

    def raw_store(self) -> Store:
        """A store whatever its schema (``db upgrade``, ``db current``, ``init`` on an empty database)."""
        from activeadv.store import Store

        return Store(self.database_url)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def project(self, name: str | None = None) -> ProjectInfo:
        """The named project, or the only one (``NotFoundError`` / ``ConfigError`` otherwise)."""
        return self.store.get_project(name)

    @contextmanager
    def locked(self, name: str | None = None, *, force: bool = False) -> Iterator[ProjectInfo]:
        """The project under the lock a round holds, read again once the lock is held (its link may have changed).

        Two pushes at once created every task twice (both saw no task for an
        item, both imported it); every operation that writes tasks or the sync
        cursor takes this lock, in the CLI and in the service alike.
        """
        project = self.project(name)
        with self.store.lock(project.id, force=force):
            yield self.store.get_project(project.name)

    def dataset(self, project: ProjectInfo) -> Dataset:
        """The project's dataset keyed by database item ids (``loop.project_dataset``)."""
        from activeadv.loop import project_dataset

        return project_dataset(self.store, project)

    def checkpoint_dir(self, given: Path | None = None) -> Path:
        """``given``, else beside the SQLite file (``checkpoints/``), else ``./checkpoints``."""
        if given is not None:
            return Path(given).expanduser().resolve()
        from activeadv.store import sqlite_file

        database = sqlite_file(self.database_url)
        return database.parent / "checkpoints" if database is not None else Path("checkpoints").resolve()

    # -------------------------------------------------------------- Label Studio
    def local_server(self) -> lsserver.ServerInfo | None:
        """The server started by ``activeadv labelstudio start`` from this workspace's data dir, if any."""
        return lsserver.read_info(self.ls_data_dir)

    def _is_local(self, url: str) -> lsserver.ServerInfo | None:
        info = self.local_server()
        return info if info is not None and info.url.rstrip("/") == url.rstrip("/") else None

    def label_studio_url(self, given: str | None = None, project: ProjectInfo | None = None) -> str:
        """``given`` > the project's linked URL > the local server; ``ConfigError`` when there is none."""
        if given:
            return given.rstrip("/")
        if project is not None and project.ls_url:
            return project.ls_url.rstrip("/")
        info = self.local_server()
        if info is not None:
            return info.url
        raise ConfigError("no Label Studio URL: set LABEL_STUDIO_URL (or pass --url), link the project with "
                          "`activeadv labelstudio link`, or start a local server with `activeadv labelstudio start`")

    def token_for(self, url: str) -> str | None:
        """``LABEL_STUDIO_API_KEY``, else the token file of the local server when ``url`` is that server."""
        if self.settings.label_studio_token:
            return self.settings.label_studio_token
        info = self._is_local(url)
        return lsserver.read_token(Path(info.data_dir)) if info is not None else None

    def files_root(self, given: Path | None, url: str) -> Path | None:
        """Label Studio's local-files root: ``given``, else the one the local server was started with."""
        if given is not None:
            return Path(given).expanduser().resolve()
        info = self._is_local(url)
        return Path(info.files_root) if info is not None else None

    def connect(self, given_url: str | None = None, project: ProjectInfo | None = None,
                **connect_kwargs: Any) -> LabelStudioClient:
        """A connected client (``labelstudio.connect``: server and token checked once).

        ``connect_kwargs``: e.g. ``max_retries=0, timeout=10`` for a quick look in ``status``.
        """
        from activeadv.labelstudio import connect

        url = self.label_studio_url(given_url, project)
        return connect(url, self.token_for(url), **connect_kwargs)


def linked_project_id(project: ProjectInfo) -> int:
    """The Label Studio project id of a linked project (``ConfigError`` naming the fix otherwise)."""
    if project.ls_project_id is None:
        raise ConfigError(f"project '{project.name}' is not linked to Label Studio: run "
                          f"`activeadv labelstudio link -p {project.name}` (or `init ... --label-studio URL`)")
    return int(project.ls_project_id)


def data_manager_url(project: ProjectInfo) -> str | None:
    """Where annotators open the project's tasks in the browser (None when not linked)."""
    if project.ls_url is None or project.ls_project_id is None:
        return None
    return f"{project.ls_url.rstrip('/')}/projects/{int(project.ls_project_id)}/data"
