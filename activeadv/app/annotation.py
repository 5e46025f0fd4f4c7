"""Label Studio use cases: link a project, push requested items, sync annotations, a simulated annotator.

Every operation that writes tasks or the sync cursor runs under the project
lock (``Workspace.locked``), the same lock a round holds: two pushes at once,
or a push beside a round's own push, doubled every task before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activeadv.app.workspace import Workspace, data_manager_url, linked_project_id
from activeadv.errors import ConfigError, LabelStudioError, LabelStudioNotFoundError
from activeadv.progress import bar as progress_bar
from activeadv.records import ProjectInfo

if TYPE_CHECKING:
    from activeadv.data import Pool
    from activeadv.labelstudio import LabelStudioClient, LabelStudioOracle
    from activeadv.store import Store

log = logging.getLogger(__name__)


# ------------------------------------------------------------------- the book
class StoreTaskBook:
    """The Label Studio oracle's bookkeeping in the database: item -> task map, sync cursor, model version."""

    def __init__(self, store: Store, project: ProjectInfo) -> None:
        self.store = store
        self.project = project

    def known_tasks(self) -> dict[int, int]:
        return {item: int(task) for rid, _ in self.store.pending(self.project.id)
                for item, task in self.store.task_ids(rid).items()}

    def tasks_created(self, round_id: int, new: dict[int, int]) -> None:
        self.store.set_task_ids(round_id, new)

    def cursor(self) -> datetime | None:
        return self.store.get_project(self.project.name).ls_last_sync

    def save_cursor(self, when: datetime) -> None:
        self.store.set_sync_cursor(self.project.id, when)

    def model_version(self, round_id: int) -> str:
        return str(self.store.get_round(round_id).number)  # the round number people see in `status`


def store_oracle(ws: Workspace, project: ProjectInfo, pool: Pool | None, client: LabelStudioClient, *,
                 files_root: Path | None = None, top_k: int | None = None) -> LabelStudioOracle:
    """A ``LabelStudioOracle`` whose task map and sync cursor live in the project's database.

    ``pool`` None: an oracle that only collects (``sync``), with no dataset loaded.
    """
    from functools import partial

    from activeadv.labelstudio import LabelStudioOracle, pool_image_refs

    def no_images(item_ids: Sequence[int]) -> dict[int, str]:
        raise ConfigError("this Label Studio connection was opened to collect labels, not to send tasks")

    image_ref = no_images if pool is None else partial(pool_image_refs, pool, files_root=files_root)
    return LabelStudioOracle(client, linked_project_id(project), project.class_names, image_ref=image_ref,
                             book=StoreTaskBook(ws.store, project), top_k=top_k)


# ------------------------------------------------------------------------ link
def link_project(store: Store, project: ProjectInfo, client: LabelStudioClient, *, ls_project_id: int | None = None,
                 files_root: Path | None = None, pool: Pool | None = None) -> ProjectInfo:
    """Create (or link and check) the Label Studio project of an activeadv project; returns the updated project.

    Stores only the URL and the Label Studio project id, never the token.  A
    linked project deleted in Label Studio gets a new one (synced from
    scratch).  For image folders under ``files_root`` a Local Files storage over
    the folder is added so that annotators see the images.
    """
    from activeadv.labelstudio import served_from_disk

    title, classes = f"activeadv {project.name}", list(project.class_names)
    relinked: dict[str, Any] = {}
    if ls_project_id is not None:  # asked for by id: it must exist
        pid = client.ensure_project(title, classes, ls_project_id)
    elif project.ls_project_id is not None and (project.ls_url or "").rstrip("/") == client.url.rstrip("/"):
        try:  # already linked: check it still exists and matches
            pid = client.ensure_project(title, classes, project.ls_project_id)
        except LabelStudioNotFoundError:
            log.warning("Label Studio project %d is gone: creating a new one", project.ls_project_id)
            pid = client.ensure_project(title, classes, None)
            relinked = {"ls_last_sync": None}
    else:
        pid = client.ensure_project(title, classes, None)
    if pool is not None and served_from_disk(pool, files_root):
        client.ensure_local_storage(pid, pool.root)  # type: ignore[attr-defined]
    return store.update_project(project.id, ls_url=client.url, ls_project_id=pid, **relinked)


@dataclass(frozen=True)
class LinkResult:
    project: ProjectInfo
    url: str
    resent: int  # open requests sent again to a new Label Studio project


def link(ws: Workspace, name: str | None, *, ls_url: str | None = None, ls_project_id: int | None = None,
         files_root: Path | None = None) -> LinkResult:
    """``activeadv labelstudio link``: link (or relink) and, for a new Label Studio project, re-send open requests."""
    with ws.locked(name) as before:
        client = ws.connect(ls_url, before if ls_url is None else None)
        root = ws.files_root(files_root, client.url)
        pool = ws.dataset(before).pool if root is not None else None
        project = link_project(ws.store, before, client, ls_project_id=ls_project_id, files_root=root, pool=pool)
        resent = 0
        if before.ls_project_id is not None and project.ls_project_id != before.ls_project_id:
            resent = push_requested(ws, project, client, root).created
    return LinkResult(project, client.url, resent)


# ------------------------------------------------------------------------ push
@dataclass(frozen=True)
class PushOutcome:
    created: int
    already_there: int
    requested: int
    url: str = ""
    ls_project_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "already_there": self.already_there, "requested": self.requested,
                "label_studio_project": self.ls_project_id, "url": self.url}


def push(ws: Workspace, name: str | None, *, top_k: int | None = None, ls_url: str | None = None,
         files_root: Path | None = None, progress: bool = False) -> PushOutcome:
    """``activeadv push``: send requested items without a task (best first, at most ``top_k``) to Label Studio."""
    with ws.locked(name) as project:
        linked_project_id(project)
        client = ws.connect(ls_url, project)
        return push_requested(ws, project, client, ws.files_root(files_root, client.url), top_k=top_k,
                              progress=progress)


def push_requested(ws: Workspace, project: ProjectInfo, client: LabelStudioClient, root: Path | None, *,
                   top_k: int | None = None, progress: bool = False) -> PushOutcome:
    """Send the project's requested items as tasks (those without one limited to ``top_k``); caller holds the lock.

    Items whose task exists are found by item id and never doubled; a task
    deleted in Label Studio is sent again.  One oracle ``request`` per round,
    so the tasks carry that round's predictions and model version.
    """
    from activeadv.records import Selection

    ls_pid = linked_project_id(project)
    store = ws.store
    pending = store.pending(project.id)
    known = StoreTaskBook(store, project).known_tasks()
    requested = sum(len(sel) for _, sel in pending)
    budget = top_k
    chosen: list[tuple[int, Selection]] = []
    for round_id, sel in pending:
        keep = [pos for pos, item in enumerate(sel.item_ids) if int(item) in known]
        for pos, item in enumerate(sel.item_ids):
            if int(item) not in known and (budget is None or budget > 0):
                keep.append(pos)
                budget = None if budget is None else budget - 1
        if keep:
            keep.sort()
            chosen.append((round_id, _subset(sel, keep)))
    total = sum(len(sel) for _, sel in chosen)
    if not total:
        return PushOutcome(0, 0, requested, client.url, ls_pid)
    pool = ws.dataset(project).pool
    oracle = store_oracle(ws, project, pool, client, files_root=root)
    created = 0
    with progress_bar(progress, total=total, desc="push", unit="item", leave=False) as bar:
        for round_id, sel in chosen:
            created += len(oracle.push(sel, round_id, progress=bar.update).created)
    return PushOutcome(created, total - created, requested, client.url, ls_pid)


def _subset(sel: Any, positions: Sequence[int]) -> Any:
    from dataclasses import replace

    return replace(sel, item_ids=sel.item_ids[positions], scores=sel.scores[positions],
                   predicted=None if sel.predicted is None else sel.predicted[positions],
                   confidence=None if sel.confidence is None else sel.confidence[positions])


# ------------------------------------------------------------------------ sync
@dataclass(frozen=True)
class SyncOutcome:
    added: int
    duplicates: int
    superseded: int
    retracted: int
    skipped: int
    rejects: list[Any] = field(default_factory=list)
    ties: list[int] = field(default_factory=list)
    disagreements: list[Any] = field(default_factory=list)
    cursor: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.added, "duplicates": self.duplicates, "superseded": self.superseded,
                "retracted": self.retracted, "skipped": self.skipped,
                "rejected": [r.__dict__ for r in self.rejects], "ties": self.ties,
                "disagreements": [d.__dict__ for d in self.disagreements], "cursor": self.cursor}


def sync(ws: Workspace, name: str | None, *, ls_url: str | None = None, progress: bool = False) -> SyncOutcome:
    """``activeadv sync``: store the annotations made since the last sync, then move the cursor.

    The oracle's own ``collect``/``commit`` pair, so a round and a sync read
    Label Studio the same way: the cursor moves only once the labels are stored.
    """
    with ws.locked(name) as project:
        linked_project_id(project)
        client = ws.connect(ls_url, project)
        oracle = store_oracle(ws, project, None, client)
        batch = oracle.collect()
        with progress_bar(progress, total=len(batch), desc="sync", unit="label", leave=False) as bar:
            counts = ws.store.add_labels(project.id, batch)
            bar.update(len(batch))
        result = oracle.last_sync
        assert result is not None
        # kept per item (votes, the rule applied) for `status` / `report`; before the cursor moves past them
        ws.store.set_disagreements(project.id, result.disagreements, changed=result.present.keys())
        oracle.commit()
    return SyncOutcome(counts.added, counts.duplicates, counts.superseded, counts.retracted, counts.skipped,
                       list(result.rejects), list(result.ties), list(result.disagreements), result.cursor)


# ----------------------------------------------------------- simulated people
def simulated_annotator(client: LabelStudioClient, ls_project_id: int, pool: Pool, class_names: Sequence[str],
                        accuracy: float, seed: int) -> Callable[..., int]:
    """``answer(limit=None, progress=None) -> n``: answers open tasks of the project from the dataset's labels.

    Wrong with probability ``1 - accuracy`` (a random other class); one seeded
    generator for the whole run, so a run is reproducible.  Used by
    ``annotate-sim`` and ``run --auto-annotate``.
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

    def answer(limit: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        return client.annotate_open_tasks(ls_project_id, label_for, limit=limit, progress=progress)

    return answer


@dataclass(frozen=True)
class AnnotateOutcome:
    answered: int
    user: str
    ls_project_id: int
    counts: dict[str, int]


def annotate_sim(ws: Workspace, name: str | None, *, accuracy: float = 1.0, limit: int | None = None,
                 ls_url: str | None = None, seed: int = 0, progress: bool = False) -> AnnotateOutcome:
    """``activeadv annotate-sim``: answer open tasks through Label Studio's API, as a person would."""
    if not 0.0 <= accuracy <= 1.0:
        raise ConfigError("--accuracy must be in [0, 1]")
    project = ws.project(name)
    ls_pid = linked_project_id(project)
    client = ws.connect(ls_url, project)
    pool = ws.dataset(project).pool
    if not pool.has_targets:
        raise ConfigError(f"dataset {project.dataset} has no known labels to simulate an annotator with")
    answer = simulated_annotator(client, ls_pid, pool, project.class_names, accuracy, seed)
    open_now = client.project_counts(ls_pid)["open"]
    total = open_now if limit is None else min(limit, open_now)
    with progress_bar(progress, total=total, desc="annotate", unit="item", leave=False) as bar:
        done = answer(limit=limit, progress=bar.update)
    return AnnotateOutcome(done, client.user_email or "?", ls_pid, client.project_counts(ls_pid))


# ---------------------------------------------------------------------- status
def label_studio_summary(ws: Workspace, project: ProjectInfo) -> dict[str, Any] | None:
    """Label Studio's side of a linked project: task counts, or ``error`` when unreachable (never raises).

    No retries, so a down server costs about a second.
    """
    if project.ls_project_id is None:
        return None
    out: dict[str, Any] = {"url": project.ls_url, "project_id": int(project.ls_project_id),
                           "data_manager": data_manager_url(project)}
    try:
        client = ws.connect(None, project, max_retries=0, timeout=10.0)
        out.update(client.project_counts(int(project.ls_project_id)))
        out["error"] = None
    except LabelStudioError as exc:
        out["error"] = str(exc)
    return out
