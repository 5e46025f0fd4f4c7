"""The project database: the only code that opens a SQLAlchemy session.

``Store`` hands out the plain records of ``records.py`` (never ORM objects), so
callers need neither SQLAlchemy nor a session, and every write is one short
transaction that is safe to repeat: unique constraints plus "look before you
insert" make registering items, storing labels and saving selections
idempotent, which is what lets an interrupted round simply run again.

Item ids handed out are the database keys of ``items``: one id space shared
with ``Pool.with_ids`` and Label Studio tasks.

Works on SQLite (default, a file in the working folder) and PostgreSQL.  On
SQLite every transaction starts with ``BEGIN IMMEDIATE`` so that two processes
queue for the write lock instead of failing half-way with "database is locked".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, delete, event, func, insert, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from activeadv import records
from activeadv import schema as db
from activeadv.errors import ConfigError, LabelError, LockedError, NotFoundError, SchemaError
from activeadv.processes import pid_alive

log = logging.getLogger(__name__)
CLOCK_SKEW = timedelta(minutes=5)  # label times further ahead of this machine's clock are clamped to now
TEXT_LIMIT = 200  # String(200) columns: project name, annotator, external ids


def _check_name(name: str) -> None:
    """A project name every database can store and every terminal can print, or ``ConfigError``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("the project name is not valid UTF-8 text") from None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ConfigError("the project name holds control characters (NUL, newline, ...)")
    if len(name) > TEXT_LIMIT:
        raise ConfigError(f"the project name is longer than {TEXT_LIMIT} characters")


def _fit_foreign_text(ann: records.Annotation) -> records.Annotation:
    """An annotation whose annotator and external id fit their columns on PostgreSQL too.

    They come from other systems (Label Studio, CSV files): NUL characters,
    which PostgreSQL refuses in text, are dropped; an over-long annotator is
    cut; an over-long external id is replaced by its SHA-1, so that it still
    identifies the same annotation when it comes again.
    """
    annotator = ann.annotator.replace("\x00", "")[:TEXT_LIMIT] if ann.annotator else ann.annotator
    external = ann.external_id.replace("\x00", "") if ann.external_id else ann.external_id
    if external and len(external) > TEXT_LIMIT:
        external = "sha1:" + hashlib.sha1(external.encode("utf-8", "surrogatepass")).hexdigest()
    if (annotator, external) == (ann.annotator, ann.external_id):
        return ann
    return replace(ann, annotator=annotator, external_id=external)


def _migrations_dir() -> Path:
    """Inside the package when installed from a wheel; the repository's ``migrations/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SchemaError("activeadv's database migrations are missing from this installation; reinstall activeadv")


UPGRADE_HINT = "run `activeadv db upgrade`"
_CHUNK = 500  # ids per IN (...) clause: stays below every backend's parameter limit


# ----------------------------------------------------------------- time helpers
def _to_db_time(value: datetime | None) -> datetime:
    """Naive UTC for storage; naive inputs are taken to be UTC already."""
    if value is None:
        return db.utcnow()
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _from_db_time(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


_MIGRATION_LOCK = 0x616374697665  # PostgreSQL advisory lock key held while the schema is migrated ("active")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (absolute), None for other backends and in-memory databases."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


# --------------------------------------------------------------------- the store
class Store:
    """All reads and writes of one database; see the module docstring.

    ``Store(url)`` connects without looking at the schema (for ``db upgrade``);
    ``Store.open(url)`` also refuses an empty or out-of-date schema.
    """

    def __init__(self, url: str) -> None:
        try:
            self.url = make_url(url)
        except ArgumentError:
            raise ConfigError(f"not a database URL: '{url}' (e.g. sqlite:///activeadv.db)") from None
        self.engine = self._make_engine()

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and check that the schema is at this version's head revision."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"not a database URL: '{url}' (e.g. sqlite:///activeadv.db)") from None
        database = parsed.database if parsed.get_backend_name() == "sqlite" else None
        if database and database != ":memory:" and not database.startswith("file:") \
                and not Path(database).expanduser().exists():  # do not leave an empty file behind
            raise SchemaError(f"database file {database} does not exist: create a project with `activeadv init` "
                              f"or {UPGRADE_HINT}")
        store = cls(url)
        try:
            store.check_schema()
        except BaseException:
            store.close()
            raise
        return store

    def _make_engine(self) -> Engine:
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, connect_args={"timeout": 60})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_connection, _record):
                dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=60000")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        try:
            return create_engine(self.url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"database driver '{exc.name}' is not installed (for PostgreSQL: "
                              "pip install 'activeadv[postgres]')") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as exc:
            raise ConfigError(f"database {self.display_url}: {str(exc.orig).strip().splitlines()[0]}") from None

    # ------------------------------------------------------------------ schema
    def _alembic_config(self, connection: Any = None):
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_migrations_dir()))
        cfg.set_main_option("path_separator", "os")
        cfg.attributes["url"] = self.url.render_as_string(hide_password=False)
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def head(self) -> str:
        """The newest migration this version of activeadv knows."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None, "no migrations found"
        return head

    def current(self) -> str | None:
        """The database's schema revision; None for an empty database."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except DatabaseError as exc:  # unreachable, locked, or not a database at all (e.g. --db on a text file)
            raise ConfigError(f"cannot open database {self.display_url}: "
                              f"{str(exc.orig).strip().splitlines()[0]}") from None

    def is_empty(self) -> bool:
        """True when the database has no tables at all (a brand-new file or database)."""
        with self.engine.connect() as conn:
            return not inspect(conn).get_table_names()

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema (Alembic) to ``revision``; a no-op when already there."""
        from alembic import command

        current = self.current()
        if current is not None and not self.knows(current):
            raise SchemaError(self._newer(current))
        log.info("upgrading %s to %s", self.display_url, revision)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # two `init`s at once both created alembic_version: one waits here,
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})  # then no-ops
            command.upgrade(self._alembic_config(conn), revision)

    def knows(self, revision: str) -> bool:
        """Whether ``revision`` is one of this version's migrations (a newer activeadv wrote it when not)."""
        from alembic.script import ScriptDirectory

        scripts = ScriptDirectory.from_config(self._alembic_config())
        return revision in {rev.revision for rev in scripts.walk_revisions()}

    def _newer(self, current: str) -> str:
        return (f"database schema revision {current} is newer than this activeadv (head {self.head()}): "
                "upgrade activeadv")

    def check_schema(self) -> None:
        """Raise ``SchemaError`` unless the database is at the head revision."""
        current, head = self.current(), self.head()
        if current == head:
            return
        if current is None:
            raise SchemaError(f"database {self.display_url} has no activeadv schema: {UPGRADE_HINT}")
        if not self.knows(current):
            raise SchemaError(self._newer(current))
        raise SchemaError(f"database schema is at revision {current}, this activeadv needs {head}: {UPGRADE_HINT}")

    # ---------------------------------------------------------------- projects
    @staticmethod
    def _project_record(row: db.Project) -> records.ProjectInfo:
        return records.ProjectInfo(
            id=row.id, name=row.name, dataset=row.dataset, class_names=tuple(row.class_names),
            train_settings=dict(row.train_settings), strategy_settings=dict(row.strategy_settings),
            ls_url=row.ls_url, ls_project_id=row.ls_project_id, ls_last_sync=_from_db_time(row.ls_last_sync),
            created_at=_from_db_time(row.created_at))

    def create_project(self, name: str, dataset: str, class_names: Sequence[str], *,
                       train_settings: dict | None = None,
                       strategy_settings: dict | None = None) -> records.ProjectInfo:
        """A new project; ``ConfigError`` if the name is taken."""
        if not name or not name.strip():
            raise ConfigError("a project needs a name")
        _check_name(name)
        try:
            with self._session() as s:
                row = db.Project(name=name, dataset=dataset, class_names=list(class_names),
                                 train_settings=dict(train_settings or {}),
                                 strategy_settings=dict(strategy_settings or {}))
                s.add(row)
                s.flush()
                return self._project_record(row)
        except IntegrityError:
            raise ConfigError(f"project '{name}' already exists") from None

    def projects(self) -> list[records.ProjectInfo]:
        with self._session() as s:
            return [self._project_record(p) for p in s.scalars(select(db.Project).order_by(db.Project.id))]

    def get_project(self, name: str | None = None) -> records.ProjectInfo:
        """The named project, or the only one when ``name`` is None; ``NotFoundError`` otherwise."""
        with self._session() as s:
            if name is not None:
                row = s.scalar(select(db.Project).where(db.Project.name == name))
                if row is None:
                    names = ", ".join(s.scalars(select(db.Project.name).order_by(db.Project.name))) or "none"
                    raise NotFoundError(f"no project '{name}' (projects: {names}); create it with `activeadv init`")
                return self._project_record(row)
            rows = list(s.scalars(select(db.Project).order_by(db.Project.id).limit(2)))
        if not rows:
            raise NotFoundError("no project yet: create one with `activeadv init NAME --dataset SPEC`")
        if len(rows) > 1:
            raise ConfigError("several projects in this database: name one with --project NAME")
        return self._project_record(rows[0])

    def update_project(self, project_id: int, **fields: Any) -> records.ProjectInfo:
        """Change settings or Label Studio link fields (``ls_url``, ``ls_project_id``, ``ls_last_sync``...)."""
        allowed = {"dataset", "class_names", "train_settings", "strategy_settings", "ls_url", "ls_project_id",
                   "ls_last_sync"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update project field(s) {sorted(unknown)}")
        if "ls_last_sync" in fields and fields["ls_last_sync"] is not None:
            fields["ls_last_sync"] = _to_db_time(fields["ls_last_sync"])
        with self._session() as s:
            row = s.get(db.Project, project_id)
            if row is None:
                raise NotFoundError(f"no project with id {project_id}")
            for key, value in fields.items():
                setattr(row, key, value)
            s.flush()
            return self._project_record(row)

    def set_sync_cursor(self, project_id: int, when: datetime) -> None:
        """Remember up to when Label Studio annotations have been pulled."""
        self.update_project(project_id, ls_last_sync=when)

    # ------------------------------------------------------------------- items
    def register_items(self, project_id: int, keys: Sequence[str], hashes: Sequence[str],
                       split: str = "pool") -> records.RegisterResult:
        """Database ids for ``keys`` (same order), adding only items not seen before.

        A known key keeps its id (its hash is refreshed if the content changed);
        an unknown key whose content hash belongs to an item whose key is gone
        (a renamed or moved file) takes that item over; anything else is added.
        Running it twice with the same input changes nothing.
        """
        if len(keys) != len(hashes):
            raise ValueError("one hash per key")
        if split not in db.SPLITS:
            raise ValueError(f"split must be one of {db.SPLITS}")
        keys = [str(k) for k in keys]
        given = set(keys)
        if len(given) != len(keys):
            raise ConfigError("item keys must be unique within a split")
        added = renamed = changed = 0
        with self._session() as s:
            existing = s.execute(select(db.Item.id, db.Item.key, db.Item.content_hash)
                                 .where(db.Item.project_id == project_id, db.Item.split == split)).all()
            by_key = {row.key: (row.id, row.content_hash) for row in existing}
            orphans: dict[str, list[int]] = {}  # hash -> ids of items whose key vanished
            for row in existing:
                if row.key not in given:
                    orphans.setdefault(row.content_hash, []).append(row.id)
            new_rows = []
            for key, digest in zip(keys, hashes):
                known = by_key.get(key)
                if known is not None:
                    if known[1] != digest:
                        s.execute(update(db.Item).where(db.Item.id == known[0]).values(content_hash=digest))
                        changed += 1
                elif orphans.get(digest):
                    item_id = orphans[digest].pop()
                    s.execute(update(db.Item).where(db.Item.id == item_id).values(key=key))
                    renamed += 1
                else:
                    new_rows.append({"project_id": project_id, "key": key, "content_hash": digest, "split": split,
                                     "created_at": db.utcnow()})
            _bulk_insert_items(s, new_rows)  # COPY on PostgreSQL with psycopg 3, chunked executemany elsewhere
            added = len(new_rows)
            ids = dict(s.execute(select(db.Item.key, db.Item.id)
                                 .where(db.Item.project_id == project_id, db.Item.split == split)).all())
        if changed:
            log.warning("%d item(s) changed content since they were registered; their labels are kept", changed)
        return records.RegisterResult(np.array([ids[k] for k in keys], dtype=np.int64), added, renamed, changed)

    def item_ids(self, project_id: int, keys: Sequence[str], split: str = "pool") -> np.ndarray:
        """Ids of ``keys`` (same order); -1 where a key is not registered."""
        with self._session() as s:
            ids = dict(s.execute(select(db.Item.key, db.Item.id)
                                 .where(db.Item.project_id == project_id, db.Item.split == split)).all())
        return np.array([ids.get(str(k), -1) for k in keys], dtype=np.int64)

    def item_keys(self, project_id: int, split: str | None = "pool") -> dict[str, int]:
        """Every registered key of a split (or of all splits) with its id."""
        query = select(db.Item.key, db.Item.id).where(db.Item.project_id == project_id)
        if split is not None:
            query = query.where(db.Item.split == split)
        with self._session() as s:
            return dict(s.execute(query).all())

    # ------------------------------------------------------------------ labels
    def add_labels(self, project_id: int, annotations: Iterable[records.Annotation], *,
                   strict: bool = False) -> records.LabelCounts:
        """Store annotations in one transaction; safe to call again with the same ones.

        The same (source, external id) is stored once.  An annotation without
        an external id that answers a pending selection is keyed by that
        selection, so an oracle's answer is stored once however often it is
        collected.  A label newer than an item's current one supersedes it (the
        old row stays, with ``superseded_at`` set); pending selections of the
        item become ``labeled`` (or ``skipped`` for a skipped task).  Unknown
        items or labels go to ``label_rejects``, or with ``strict`` raise
        ``LabelError`` and store nothing at all.  An annotation with
        ``present`` set is a snapshot of a source: the item's current label
        from that source is retracted when its annotation is no longer there.
        """
        # snapshots (what still exists at a source) first, so that a retraction never hides a label of this batch
        anns = sorted(annotations, key=lambda a: (a.present is None,
                                                  _to_db_time(a.created_at) if a.created_at else datetime.max))
        for attempt in range(3):
            try:
                return self._add_labels_once(project_id, anns, strict)
            except IntegrityError:
                # Another process stored some of the same annotations first (e.g. a sync
                # beside a round); a second pass sees them and counts them as duplicates.
                if attempt == 2:
                    raise ConfigError("labels keep conflicting with another writer; try again") from None
                log.info("concurrent label write; retrying")
        raise AssertionError("unreachable")

    def _add_labels_once(self, project_id: int, anns: list[records.Annotation],
                         strict: bool) -> records.LabelCounts:
        counts = dict(added=0, duplicates=0, superseded=0, skipped=0, rejected=0, retracted=0)
        problems: list[str] = []
        now = db.utcnow()
        with self._session() as s:
            project = s.get(db.Project, project_id)
            if project is None:
                raise NotFoundError(f"no project with id {project_id}")
            classes = {name: i for i, name in enumerate(project.class_names)}
            item_ids = sorted({int(a.item_id) for a in anns})
            known: set[int] = set()
            current: dict[int, db.Label] = {}
            pending: dict[int, list[db.Selection]] = {}
            for chunk in _chunks(item_ids):
                known.update(s.scalars(select(db.Item.id).where(db.Item.project_id == project_id,
                                                                db.Item.id.in_(chunk))))
                for label in s.scalars(select(db.Label).where(db.Label.item_id.in_(chunk),
                                                              db.Label.superseded_at.is_(None))):
                    current[label.item_id] = label
                for sel in s.scalars(select(db.Selection).where(db.Selection.item_id.in_(chunk),
                                                                db.Selection.state == "requested")
                                     .order_by(db.Selection.id)):
                    pending.setdefault(sel.item_id, []).append(sel)
            seen = {(src, ext) for src, ext in s.execute(
                select(db.Label.source, db.Label.external_id)
                .where(db.Label.project_id == project_id, db.Label.external_id.is_not(None)))}
            batch: set[tuple] = set()
            for ann in map(_fit_foreign_text, anns):
                item_id = int(ann.item_id)
                if ann.present is not None:  # a snapshot of what still exists at the source
                    if item_id in known:
                        counts["retracted"] += self._retract_missing(s, current, item_id, ann, now)
                    continue
                reason = ann.rejected
                if reason is not None:
                    pass  # refused where it came from (e.g. an annotation with no choice)
                elif item_id not in known:
                    reason = f"unknown item id {item_id}"
                elif ann.source not in db.LABEL_SOURCES:
                    reason = f"unknown label source '{ann.source}' (use {', '.join(db.LABEL_SOURCES)})"
                elif not ann.skipped and ann.label is not None and ann.label not in classes:
                    reason = f"unknown label '{ann.label}' (classes: {', '.join(project.class_names)})"
                if reason is not None:
                    problems.append(reason)
                    counts["rejected"] += self._reject(s, project_id, ann, reason, known)
                    continue
                fingerprint = (item_id, ann.label, ann.source, ann.annotator, ann.external_id, ann.created_at)
                if ann.external_id is None and fingerprint in batch:
                    counts["duplicates"] += 1  # the same answer collected twice in one batch
                    continue
                batch.add(fingerprint)
                waiting = pending.get(item_id, [])
                if ann.skipped or ann.label is None:
                    for sel in waiting:
                        sel.state = "skipped"
                    pending.pop(item_id, None)
                    counts["skipped"] += 1
                    continue
                external = ann.external_id or (f"selection:{waiting[0].id}" if waiting else None)
                if external is not None and (ann.source, external) in seen:
                    counts["duplicates"] += 1
                    continue
                created = _to_db_time(ann.created_at) if ann.created_at else now
                if created > now + CLOCK_SKEW:
                    # a foreign clock ahead of ours (or a bad import) must not mask every later label
                    log.warning("label for item %d dated %s, in the future: stored as of now", item_id,
                                created.isoformat())
                    created = now
                old = current.get(item_id)
                row = db.Label(project_id=project_id, item_id=item_id, class_index=classes[ann.label],
                               source=ann.source, annotator=ann.annotator, external_id=external, created_at=created)
                if old is not None and old.created_at > created:
                    row.superseded_at = now  # arrived late: history only
                else:
                    if old is not None:
                        old.superseded_at = now
                        s.flush()  # free the one-current-label-per-item slot before the insert
                        counts["superseded"] += 1
                    current[item_id] = row
                s.add(row)
                s.flush()
                if external is not None:
                    seen.add((ann.source, external))
                for sel in waiting:
                    sel.state = "labeled"
                pending.pop(item_id, None)
                counts["added"] += 1
            if strict and problems:
                more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
                raise LabelError(f"{problems[0]}{more}; nothing was stored")
        return records.LabelCounts(**counts)

    @staticmethod
    def _retract_missing(s: Session, current: dict[int, db.Label], item_id: int, snapshot: records.Annotation,
                         now: datetime) -> int:
        """Supersede the item's current label when its annotation is gone from the source (deleted in Label
        Studio); the item's answered requests are open again, as its task is.  Returns 1 when it did."""
        label = current.get(item_id)
        if label is None or label.source != snapshot.source or label.external_id is None:
            return 0
        if label.external_id.split("@", 1)[0] in (snapshot.present or frozenset()):  # "ID@time": an edit of ID
            return 0
        label.superseded_at = now
        del current[item_id]
        for sel in s.scalars(select(db.Selection).where(db.Selection.item_id == item_id,
                                                        db.Selection.state == "labeled")):
            sel.state = "requested"
        log.warning("label of item %d retracted: its annotation %s was deleted in the source", item_id,
                    label.external_id)
        return 1

    @staticmethod
    def _reject(s: Session, project_id: int, ann: records.Annotation, reason: str, known: set[int]) -> int:
        if ann.external_id is not None and s.scalar(select(db.LabelReject.id).where(
                db.LabelReject.project_id == project_id, db.LabelReject.external_id == ann.external_id)):
            return 0
        s.add(db.LabelReject(project_id=project_id, item_id=int(ann.item_id) if int(ann.item_id) in known else None,
                             raw_label=ann.label, external_id=ann.external_id, reason=reason))
        return 1

    def labels(self, project_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Current labels of the pool: ``(item_ids, class_indices)``, both int64, sorted by item id."""
        with self._session() as s:
            rows = s.execute(select(db.Label.item_id, db.Label.class_index)
                             .join(db.Item, db.Item.id == db.Label.item_id)
                             .where(db.Label.project_id == project_id, db.Label.superseded_at.is_(None),
                                    db.Item.split == "pool")
                             .order_by(db.Label.item_id)).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        classes = np.array([r[1] for r in rows], dtype=np.int64)
        return ids, classes

    def label_rows(self, project_id: int, *, history: bool = False) -> list[records.LabelRow]:
        """Stored labels with item keys and class names (current only unless ``history``), for export."""
        names = self._by_id(project_id).class_names
        with self._session() as s:
            query = (select(db.Label, db.Item.key).join(db.Item, db.Item.id == db.Label.item_id)
                     .where(db.Label.project_id == project_id).order_by(db.Label.item_id, db.Label.created_at,
                                                                      db.Label.id))
            if not history:
                query = query.where(db.Label.superseded_at.is_(None))
            return [records.LabelRow(item_id=lab.item_id, key=key, label=names[lab.class_index], source=lab.source,
                                     annotator=lab.annotator, external_id=lab.external_id,
                                     created_at=_from_db_time(lab.created_at),  # type: ignore[arg-type]
                                     current=lab.superseded_at is None)
                    for lab, key in s.execute(query)]

    def candidates(self, project_id: int) -> np.ndarray:
        """Pool items that have no current label and are not waiting for (or skipped by) an annotator."""
        labeled = select(db.Label.item_id).where(db.Label.item_id == db.Item.id, db.Label.superseded_at.is_(None))
        asked = select(db.Selection.item_id).where(db.Selection.item_id == db.Item.id,
                                                   db.Selection.state.in_(("requested", "skipped")))
        with self._session() as s:
            ids = s.scalars(select(db.Item.id).where(db.Item.project_id == project_id, db.Item.split == "pool",
                                                     ~labeled.exists(), ~asked.exists()).order_by(db.Item.id)).all()
        return np.array(ids, dtype=np.int64)

    def iter_candidates(self, project_id: int, chunk: int = 100_000) -> Iterator[np.ndarray]:
        """``candidates()`` in id order, one array per id range of ``chunk`` items (each its own short query).

        For pools of millions: the caller holds one range at a time, and every
        query is an index range scan (``items.id BETWEEN a AND b``) instead of
        one result set of the whole pool.  Concatenated, the ranges equal
        ``candidates()`` read at the same moment.
        """
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        labeled = select(db.Label.item_id).where(db.Label.item_id == db.Item.id, db.Label.superseded_at.is_(None))
        asked = select(db.Selection.item_id).where(db.Selection.item_id == db.Item.id,
                                                   db.Selection.state.in_(("requested", "skipped")))
        with self._session() as s:
            bounds = s.execute(select(func.min(db.Item.id), func.max(db.Item.id))
                               .where(db.Item.project_id == project_id, db.Item.split == "pool")).one()
        if bounds[0] is None:
            return
        for start in range(int(bounds[0]), int(bounds[1]) + 1, chunk):
            with self._session() as s:
                ids = s.scalars(select(db.Item.id).where(
                    db.Item.project_id == project_id, db.Item.split == "pool",
                    db.Item.id.between(start, start + chunk - 1), ~labeled.exists(), ~asked.exists())
                    .order_by(db.Item.id)).all()
            if ids:
                yield np.array(ids, dtype=np.int64)

    def rejects(self, project_id: int) -> list[tuple[int | None, str | None, str | None, str]]:
        """Annotations kept aside: ``(item_id, raw_label, external_id, reason)``."""
        with self._session() as s:
            return [tuple(r) for r in s.execute(  # type: ignore[misc]
                select(db.LabelReject.item_id, db.LabelReject.raw_label, db.LabelReject.external_id,
                       db.LabelReject.reason).where(db.LabelReject.project_id == project_id)
                .order_by(db.LabelReject.id))]

    # ------------------------------------------------------------------ rounds
    @staticmethod
    def _round_record(row: db.Round, model: db.Model | None) -> records.RoundInfo:
        metrics = None
        if model is not None and model.accuracy is not None:
            metrics = records.EvalMetrics(model.accuracy, model.fgsm_accuracy, model.pgd_accuracy, model.n_test or 0)
        return records.RoundInfo(
            id=row.id, number=row.number, state=row.state, strategy=row.strategy,
            strategy_params=dict(row.strategy_params or {}), query_size=row.query_size,
            labels_used=row.labels_used, selected=row.selected, timings=dict(row.timings or {}),
            started_at=_from_db_time(row.started_at),  # type: ignore[arg-type]
            finished_at=_from_db_time(row.finished_at), model_path=None if model is None else model.path,
            metrics=metrics, stop_agreement=None if model is None else model.stop_agreement)

    def rounds(self, project_id: int) -> list[records.RoundInfo]:
        """Every round of the project, oldest first, with its model's metrics."""
        with self._session() as s:
            rows = s.execute(select(db.Round, db.Model).outerjoin(db.Model, db.Model.round_id == db.Round.id)
                             .where(db.Round.project_id == project_id).order_by(db.Round.number)).all()
            return [self._round_record(r, m) for r, m in rows]

    def get_round(self, round_id: int) -> records.RoundInfo:
        with self._session() as s:
            row = s.get(db.Round, round_id)
            if row is None:
                raise NotFoundError(f"no round with id {round_id}")
            model = s.scalar(select(db.Model).where(db.Model.round_id == round_id))
            return self._round_record(row, model)

    def unfinished_round(self, project_id: int) -> records.RoundInfo | None:
        """The latest round if it has not reached ``done`` (a crashed or interrupted one)."""
        rounds = self.rounds(project_id)
        return rounds[-1] if rounds and rounds[-1].state != "done" else None

    def start_round(self, project_id: int, strategy: str, query_size: int, *,
                    params: dict[str, Any] | None = None) -> records.RoundInfo:
        """A new round numbered after the last one; ``LockedError`` if another process just made it.

        ``strategy``: the strategy's registry name (``seed`` for the seed
        round); ``params``: its parameters (``Strategy.params()``), stored as
        JSON so that an interrupted round is finished with the same strategy.
        """
        params = _strategy_params(strategy, params)
        try:
            with self._session() as s:
                last = s.scalar(select(func.max(db.Round.number)).where(db.Round.project_id == project_id))
                row = db.Round(project_id=project_id, number=0 if last is None else last + 1, state="open",
                               strategy=strategy, strategy_params=params, query_size=int(query_size), timings={})
                s.add(row)
                s.flush()
                return self._round_record(row, None)
        except IntegrityError:
            raise LockedError("another process started a round on this project at the same time") from None

    def set_round_state(self, round_id: int, state: str, *, labels_used: int | None = None,
                        timings: dict[str, float] | None = None) -> None:
        """Move a round forward; ``timings`` are merged into what is stored."""
        if state not in db.ROUND_STATES:
            raise ValueError(f"round state must be one of {db.ROUND_STATES}")
        with self._session() as s:
            row = s.get(db.Round, round_id)
            if row is None:
                raise NotFoundError(f"no round with id {round_id}")
            row.state = state
            if labels_used is not None:
                row.labels_used = int(labels_used)
            if timings:
                row.timings = {**(row.timings or {}), **{k: float(v) for k, v in timings.items()}}
            if state == "done":
                row.finished_at = db.utcnow()

    def finish_round(self, round_id: int, timings: dict[str, float] | None = None) -> None:
        self.set_round_state(round_id, "done", timings=timings)

    def record_model(self, round_id: int, path: str | Path, metrics: records.EvalMetrics | None,
                     labels_used: int, stop_agreement: float | None = None,
                     robustness: Sequence[records.RobustnessRow] | None = None) -> None:
        """Store (or replace, on a rerun) the round's model and mark the round ``trained``.

        ``robustness``: the model's suite, stored in the same transaction
        (replacing the round's rows); None leaves the stored rows alone.
        """
        with self._session() as s:
            if robustness is not None:
                self._replace_robustness(s, round_id, robustness)
            row = s.scalar(select(db.Model).where(db.Model.round_id == round_id))
            if row is None:
                row = db.Model(round_id=round_id)
                s.add(row)
            row.path = str(path)
            row.labels_used = int(labels_used)
            row.accuracy = None if metrics is None else float(metrics.accuracy)
            row.fgsm_accuracy = None if metrics is None or metrics.fgsm_accuracy is None else float(
                metrics.fgsm_accuracy)
            row.pgd_accuracy = None if metrics is None or metrics.pgd_accuracy is None else float(metrics.pgd_accuracy)
            row.n_test = None if metrics is None else int(metrics.n)
            row.stop_agreement = None if stop_agreement is None else float(stop_agreement)
            rnd = s.get(db.Round, round_id)
            assert rnd is not None
            rnd.labels_used = int(labels_used)
            if db.ROUND_STATES.index(rnd.state) < db.ROUND_STATES.index("trained"):
                rnd.state = "trained"

    # -------------------------------------------------------------- robustness
    def save_robustness(self, round_id: int, rows: Sequence[records.RobustnessRow]) -> None:
        """The round's robustness suite (replacing whatever the round had): one row per (attack, eps)."""
        with self._session() as s:
            if s.get(db.Round, round_id) is None:
                raise NotFoundError(f"no round with id {round_id}")
            self._replace_robustness(s, round_id, rows)

    @staticmethod
    def _replace_robustness(s: Session, round_id: int, rows: Sequence[records.RobustnessRow]) -> None:
        s.execute(delete(db.Robustness).where(db.Robustness.round_id == round_id))
        unique = {(r.attack, float(r.eps)): r for r in rows}  # the last of a repeated (attack, eps)
        s.add_all(db.Robustness(round_id=round_id, attack=r.attack[:32], eps=float(r.eps), norm=r.norm[:8],
                                radius=float(r.radius), accuracy=float(r.accuracy), n=int(r.n),
                                seconds=float(r.seconds)) for r in unique.values())

    def round_robustness(self, round_id: int) -> tuple[records.RobustnessRow, ...]:
        """A round's stored suite, in the order it was measured (empty when it has none)."""
        with self._session() as s:
            rows = s.scalars(select(db.Robustness).where(db.Robustness.round_id == round_id)
                             .order_by(db.Robustness.id))
            return tuple(_robustness_record(r) for r in rows)

    def robustness(self, project_id: int) -> dict[int, tuple[records.RobustnessRow, ...]]:
        """Every round's stored suite keyed by round *number* (rounds without one are absent)."""
        out: dict[int, list[records.RobustnessRow]] = {}
        with self._session() as s:
            rows = s.execute(select(db.Round.number, db.Robustness)
                             .join(db.Robustness, db.Robustness.round_id == db.Round.id)
                             .where(db.Round.project_id == project_id)
                             .order_by(db.Round.number, db.Robustness.id))
            for number, row in rows:
                out.setdefault(int(number), []).append(_robustness_record(row))
        return {k: tuple(v) for k, v in out.items()}

    def add_selection(self, round_id: int, selection: records.Selection) -> int:
        """Save a round's selection (best first) and mark the round ``selected``; returns rows added.

        One transaction, unique (round, item): after a crash either the whole
        selection is there or none of it, and saving it again adds nothing.
        """
        n = len(selection)
        added = 0
        with self._session() as s:
            have = set(s.scalars(select(db.Selection.item_id).where(db.Selection.round_id == round_id)))
            for rank in range(n):
                item_id = int(selection.item_ids[rank])
                if item_id in have:
                    continue
                s.add(db.Selection(
                    round_id=round_id, item_id=item_id, score=float(selection.scores[rank]), rank=rank,
                    state="requested",
                    predicted=None if selection.predicted is None else int(selection.predicted[rank]),
                    confidence=None if selection.confidence is None else float(selection.confidence[rank])))
                have.add(item_id)
                added += 1
            rnd = s.get(db.Round, round_id)
            assert rnd is not None
            rnd.selected = len(have)
            if db.ROUND_STATES.index(rnd.state) < db.ROUND_STATES.index("selected"):
                rnd.state = "selected"
        return added

    def selection(self, round_id: int, *, state: str | None = None) -> records.Selection:
        """A round's selection as saved, best first (optionally only items in ``state``)."""
        with self._session() as s:
            strategy = records.strategy_text(*(s.execute(select(db.Round.strategy, db.Round.strategy_params)
                                                         .where(db.Round.id == round_id)).first() or ("", {})))
            query = select(db.Selection).where(db.Selection.round_id == round_id).order_by(db.Selection.rank)
            if state is not None:
                query = query.where(db.Selection.state == state)
            rows = list(s.scalars(query))
        return _selection_record(rows, strategy)

    def pending(self, project_id: int) -> list[tuple[int, records.Selection]]:
        """Requests still waiting for an answer: ``(round_id, selection)`` per round, oldest first."""
        with self._session() as s:
            rows = list(s.execute(select(db.Selection, db.Round.strategy, db.Round.strategy_params)
                                  .join(db.Round, db.Round.id == db.Selection.round_id)
                                  .where(db.Round.project_id == project_id, db.Selection.state == "requested")
                                  .order_by(db.Round.number, db.Selection.rank)))
        out: dict[int, tuple[str, list[db.Selection]]] = {}
        for sel, strategy, params in rows:
            out.setdefault(sel.round_id, (records.strategy_text(strategy, params or {}), []))[1].append(sel)
        return [(rid, _selection_record(sels, strategy)) for rid, (strategy, sels) in out.items()]

    def set_task_ids(self, round_id: int, task_ids: dict[int, int] | dict[int, str]) -> None:
        """Remember the annotation tool's task id of each selected item (Label Studio)."""
        with self._session() as s:
            for item_id, task_id in task_ids.items():
                s.execute(update(db.Selection).where(db.Selection.round_id == round_id,
                                                     db.Selection.item_id == int(item_id))
                          .values(external_task_id=str(task_id)))

    def task_ids(self, round_id: int) -> dict[int, str]:
        with self._session() as s:
            rows = s.execute(select(db.Selection.item_id, db.Selection.external_task_id)
                             .where(db.Selection.round_id == round_id, db.Selection.external_task_id.is_not(None)))
            return {int(item): str(task) for item, task in rows}

    # ------------------------------------------------------------------ status
    def status(self, project_id: int) -> records.ProjectStatus:
        """Counts and the per-round table for ``activeadv status``."""
        project = self._by_id(project_id)
        pid = project.id
        with self._session() as s:
            splits = dict(s.execute(select(db.Item.split, func.count()).where(db.Item.project_id == pid)
                                    .group_by(db.Item.split)).all())
            labeled = s.scalar(select(func.count()).select_from(db.Label).join(db.Item, db.Item.id == db.Label.item_id)
                               .where(db.Label.project_id == pid, db.Label.superseded_at.is_(None),
                                      db.Item.split == "pool")) or 0
            states = dict(s.execute(select(db.Selection.state, func.count(func.distinct(db.Selection.item_id)))
                                    .join(db.Round, db.Round.id == db.Selection.round_id)
                                    .where(db.Round.project_id == pid).group_by(db.Selection.state)).all())
            rejected = s.scalar(select(func.count()).select_from(db.LabelReject)
                                .where(db.LabelReject.project_id == pid)) or 0
        return records.ProjectStatus(project=project, pool=splits.get("pool", 0), test=splits.get("test", 0),
                                     labeled=labeled, pending=states.get("requested", 0),
                                     skipped=states.get("skipped", 0), rejected=rejected,
                                     rounds=tuple(self.rounds(pid)))

    def _by_id(self, project_id: int) -> records.ProjectInfo:
        with self._session() as s:
            row = s.get(db.Project, project_id)
            if row is None:
                raise NotFoundError(f"no project with id {project_id}")
            return self._project_record(row)

    # -------------------------------------------------------------- simulation
    def save_simulation(self, dataset: str, settings: dict, points: Sequence[records.CurvePoint],
                        summary: dict) -> int:
        """Store a ``simulate`` run and its learning-curve points; returns the run id."""
        with self._session() as s:
            run = db.SimulationRun(dataset=dataset, settings=_jsonable(settings), summary=_jsonable(summary))
            s.add(run)
            s.flush()
            unique = {(p.strategy, int(p.seed), int(p.round)): p for p in points}
            s.add_all(db.CurvePoint(run_id=run.id, strategy=p.strategy, seed=int(p.seed), round=int(p.round),
                                    labels=int(p.labels), accuracy=float(p.accuracy),
                                    fgsm_accuracy=None if p.fgsm_accuracy is None else float(p.fgsm_accuracy))
                      for p in unique.values())
            return run.id

    def simulations(self, dataset: str | None = None) -> list[records.SimulationInfo]:
        """Stored simulation runs (of one dataset spec, if given) with their points, oldest first."""
        with self._session() as s:
            query = select(db.SimulationRun).order_by(db.SimulationRun.id)
            if dataset is not None:
                query = query.where(db.SimulationRun.dataset == dataset)
            out = []
            for run in s.scalars(query):
                pts = s.scalars(select(db.CurvePoint).where(db.CurvePoint.run_id == run.id)
                                .order_by(db.CurvePoint.strategy, db.CurvePoint.seed, db.CurvePoint.round))
                out.append(records.SimulationInfo(
                    id=run.id, dataset=run.dataset, settings=dict(run.settings), summary=dict(run.summary),
                    created_at=_from_db_time(run.created_at),  # type: ignore[arg-type]
                    points=tuple(records.CurvePoint(p.strategy, p.seed, p.round, p.labels, p.accuracy,
                                                    p.fgsm_accuracy) for p in pts)))
            return out

    # ------------------------------------------------------ events (serve)
    def add_event(self, project_id: int, dedupe_key: str, action: str, payload: dict[str, Any]) -> int | None:
        """Store a webhook delivery before anything acts on it; its id, or None when the same key is stored.

        The unique (project, key) makes a duplicate delivery a no-op even when
        two arrive at once.
        """
        try:
            with self._session() as s:
                row = db.Event(project_id=project_id, dedupe_key=dedupe_key[:200], action=action[:64],
                               payload=_jsonable(payload))
                s.add(row)
                s.flush()
                return int(row.id)
        except IntegrityError:
            return None

    def pending_events(self, project_id: int, limit: int = 1000) -> list[records.EventInfo]:
        """Stored deliveries not acted on yet, oldest first."""
        with self._session() as s:
            rows = s.scalars(select(db.Event).where(db.Event.project_id == project_id, db.Event.processed_at.is_(None))
                             .order_by(db.Event.id).limit(limit))
            return [_event_record(r) for r in rows]

    def events(self, project_id: int) -> list[records.EventInfo]:
        with self._session() as s:
            return [_event_record(r) for r in s.scalars(select(db.Event).where(db.Event.project_id == project_id)
                                                        .order_by(db.Event.id))]

    def finish_events(self, event_ids: Sequence[int], *, error: str | None = None) -> None:
        """Mark events processed (``error`` None), or count a failed attempt and keep them pending."""
        with self._session() as s:
            for chunk in _chunks(list(event_ids)):
                values: dict[str, Any] = {"attempts": db.Event.attempts + 1, "error": error}
                if error is None:
                    values["processed_at"] = db.utcnow()
                s.execute(update(db.Event).where(db.Event.id.in_(chunk)).values(**values))

    # ------------------------------------------------------- disagreements
    def set_disagreements(self, project_id: int, found: Sequence[records.Disagreement],
                          changed: Iterable[int] = ()) -> None:
        """Store each item's current disagreement; items in ``changed`` that no longer disagree lose their row."""
        now = db.utcnow()
        by_item = {int(d.item_id): d for d in found}
        with self._session() as s:
            items = sorted(set(by_item) | {int(i) for i in changed})
            known: set[int] = set()
            rows: dict[int, db.Disagreement] = {}
            for chunk in _chunks(items):
                known.update(s.scalars(select(db.Item.id).where(db.Item.project_id == project_id,
                                                                db.Item.id.in_(chunk))))
                for stored in s.scalars(select(db.Disagreement).where(db.Disagreement.project_id == project_id,
                                                                      db.Disagreement.item_id.in_(chunk))):
                    rows[stored.item_id] = stored
            for item in items:
                d, row = by_item.get(item), rows.get(item)
                if d is None:
                    if row is not None:
                        s.delete(row)
                elif item in known:
                    votes = {str(k): int(v) for k, v in d.votes.items()}
                    if row is None:
                        s.add(db.Disagreement(project_id=project_id, item_id=item, label=d.label, votes=votes,
                                              tie=bool(d.tie), rule=d.rule, updated_at=now))
                    else:
                        row.label, row.votes, row.tie, row.rule, row.updated_at = d.label, votes, bool(d.tie), \
                            d.rule, now

    def disagreements(self, project_id: int) -> list[records.DisagreementRow]:
        with self._session() as s:
            return [records.DisagreementRow(r.item_id, r.label, dict(r.votes), bool(r.tie), r.rule,
                                            _from_db_time(r.updated_at))  # type: ignore[arg-type]
                    for r in s.scalars(select(db.Disagreement).where(db.Disagreement.project_id == project_id)
                                       .order_by(db.Disagreement.item_id))]

    # ------------------------------------------------------------------- locks
    @contextmanager
    def lock(self, project_id: int, *, force: bool = False, stale_after: float = 300.0,
             heartbeat: float = 30.0) -> Iterator[None]:
        """Hold the project's round lock for the block; ``LockedError`` if a live process holds it.

        The lock is a row keyed by project id, so a second insert fails on
        every backend.  A lock is taken over when its holder is gone: same host
        and the pid no longer exists, or no heartbeat for ``stale_after``
        seconds, or ``force`` (``--force-unlock``).  A thread refreshes the
        heartbeat every ``heartbeat`` seconds while the block runs.
        """
        owner = self._acquire(project_id, force=force, stale_after=stale_after)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat):
                try:
                    with self._session() as s:
                        s.execute(update(db.Lock).where(db.Lock.project_id == project_id, db.Lock.owner == owner)
                                  .values(heartbeat_at=db.utcnow()))
                except Exception as exc:  # keep the round running; a missed beat only ages the lock
                    log.warning("lock heartbeat failed: %s", exc)

        thread = threading.Thread(target=beat, name="activeadv-lock-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with self._session() as s:
                s.execute(delete(db.Lock).where(db.Lock.project_id == project_id, db.Lock.owner == owner))

    def _acquire(self, project_id: int, *, force: bool, stale_after: float) -> str:
        owner, host, pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        for _attempt in range(3):
            try:
                with self._session() as s:
                    s.add(db.Lock(project_id=project_id, owner=owner, pid=pid, host=host))
                return owner
            except IntegrityError:
                pass
            with self._session() as s:
                held = s.get(db.Lock, project_id)
                if held is None:
                    continue  # released in between: try again
                age = (db.utcnow() - held.heartbeat_at).total_seconds()
                dead = held.host == host and not pid_alive(held.pid)
                if not (force or dead or age > stale_after):
                    since = _from_db_time(held.acquired_at).isoformat(timespec="seconds")  # type: ignore[union-attr]
                    raise LockedError(
                        f"a round, push or sync is already running on this project (pid {held.pid} on {held.host}, "
                        f"since {since}); wait for it, or use --force-unlock if that process is gone")
                why = "forced" if force else "holder process is gone" if dead else f"no heartbeat for {age:.0f}s"
                log.warning("taking over the lock of pid %s on %s (%s)", held.pid, held.host, why)
                s.execute(delete(db.Lock).where(db.Lock.project_id == project_id, db.Lock.owner == held.owner))
        raise LockedError("could not take the project lock: another process keeps taking it")

    def lock_holder(self, project_id: int) -> tuple[int, str, datetime] | None:
        """``(pid, host, heartbeat)`` of whoever holds the project's lock, or None."""
        with self._session() as s:
            held = s.get(db.Lock, project_id)
            if held is None:
                return None
            return held.pid, held.host, _from_db_time(held.heartbeat_at)  # type: ignore[return-value]


_ITEM_COLUMNS = ("project_id", "key", "content_hash", "split", "created_at")


def _bulk_insert_items(s: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new ``items`` rows inside the session's transaction, fast at a million rows.

    PostgreSQL through psycopg 3: one ``COPY ... FROM STDIN`` (about 10x
    executemany's rate); other drivers and SQLite: executemany in chunks of 5,000.
    """
    if not rows:
        return
    conn = s.connection()
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        raw: Any = conn.connection.dbapi_connection  # a psycopg.Connection: its cursor has copy()
        with raw.cursor() as cursor:
            with cursor.copy(f"COPY items ({', '.join(_ITEM_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(row[c] for c in _ITEM_COLUMNS))
        return
    for chunk in _chunks(rows, 5000):
        s.execute(insert(db.Item), list(chunk))


def _robustness_record(row: db.Robustness) -> records.RobustnessRow:
    return records.RobustnessRow(attack=row.attack, eps=float(row.eps), accuracy=float(row.accuracy), n=int(row.n),
                                 norm=row.norm, radius=float(row.radius), seconds=float(row.seconds))


def _event_record(row: db.Event) -> records.EventInfo:
    return records.EventInfo(row.id, row.dedupe_key, row.action, dict(row.payload),
                             _from_db_time(row.received_at), _from_db_time(row.processed_at),  # type: ignore[arg-type]
                             int(row.attempts or 0), row.error)


def _strategy_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` as the JSON the column stores, or ``ConfigError`` (the name must fit its column too)."""
    if not name or len(name) > TEXT_LIMIT:
        raise ConfigError(f"a strategy name must be 1 to {TEXT_LIMIT} characters, got {name!r}")
    params = _jsonable(dict(params or {}))
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy parameters of '{name}' cannot be stored as JSON: {exc}") from None
    return params


def _selection_record(rows: Sequence[db.Selection], strategy: str) -> records.Selection:
    predicted = [r.predicted for r in rows]
    confidence = [r.confidence for r in rows]
    return records.Selection(
        item_ids=np.array([r.item_id for r in rows], dtype=np.int64),
        scores=np.array([r.score for r in rows], dtype=np.float64),
        strategy=strategy,
        predicted=None if not rows or any(p is None for p in predicted) else np.array(predicted, dtype=np.int64),
        confidence=None if not rows or any(c is None for c in confidence) else np.array(confidence,
                                                                                       dtype=np.float64))


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and paths made JSON-safe for the JSON columns."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, datetime, timedelta)):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
