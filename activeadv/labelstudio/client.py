"""The Label Studio server: the only module that imports ``label_studio_sdk`` and ``httpx``.

* ``connect(url, token)`` checks the server and the token once and returns a
  ``LabelStudioClient``; every SDK and network failure becomes a one-line
  ``LabelStudioError`` (the SDK raises a raw ``httpx.ConnectError`` when the
  server is down) whose text never holds the token (``masked_url``, ``clean_token``).
* ``ensure_project`` creates or links a single-choice image-classification
  project whose ``<Choices>`` are exactly the class names.
* ``push_tasks`` imports items (``PushItem`` -> ``task_payload``) as tasks carrying
  ``data.item_id``, the image and the model's prediction as a pre-annotation.
  Label Studio does not dedupe, so the push is made safe to re-run: it looks the
  items up on the server (``filter:tasks:data.item_id``) as well as in the
  caller's item -> task map, imports in small chunks with the SDK's retries *off*
  (a retried POST after a dropped connection could import twice) and reports
  every chunk's task ids through ``on_created`` as soon as they come back.
* ``pull_annotations`` fetches the tasks changed since a cursor and hands them to
  ``annotations.parse_tasks``, which holds every parsing rule.

Reads (GET) use the SDK's own retry with exponential backoff on connection
errors and 5xx answers (``max_retries``), so no hand-written retry loop here.
This module is tested against a real server.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from activeadv.errors import LabelStudioError, LabelStudioNotFoundError
from activeadv.labelstudio.annotations import SyncResult, ls_time, parse_tasks, task_item_id
from activeadv.labelstudio.config import CONTROL, IMAGE, config_choices, label_config

log = logging.getLogger(__name__)

#: a task's ``updated_at`` may be written a moment after an annotation's; query with this overlap
CURSOR_SLACK = timedelta(seconds=5)
_NETWORK_ERRORS = (httpx.TransportError,)
TASK_PAGE = 100  # tasks per list request


# -------------------------------------------------------------------- records
class PushItem(NamedTuple):
    """One item to send: its id, image reference, and the model's guess (class name, probability)."""

    item_id: int
    image: str
    predicted: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class PushResult:
    """``tasks``: item_id -> task_id for every item pushed; ``created``: items that got a new task now."""

    tasks: dict[int, int]
    created: list[int]

    @property
    def existing(self) -> int:
        return len(self.tasks) - len(self.created)


def task_payload(item: PushItem, model_version: str | int | None) -> dict[str, Any]:
    """The import JSON for one item: ``data.image``, ``data.item_id`` and the prediction, if any."""
    payload: dict[str, Any] = {"data": {IMAGE: item.image, "item_id": int(item.item_id)}}
    if item.predicted is not None:
        pred: dict[str, Any] = {"result": [{"from_name": CONTROL, "to_name": IMAGE, "type": "choices",
                                            "value": {"choices": [str(item.predicted)]}}]}
        if model_version is not None:
            pred["model_version"] = str(model_version)
        if item.score is not None and math.isfinite(float(item.score)):
            pred["score"] = float(item.score)
        payload["predictions"] = [pred]
    return payload


# ---------------------------------------------------------------------- errors
def _detail(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        text = body.get("detail") or body.get("validation_errors") or body
    else:
        text = body
    text = " ".join(str(text).split())
    if text.lstrip().startswith("<"):  # an HTML error page (e.g. import into a missing project)
        return ""
    return text[:200]


@contextmanager
def _errors(url: str, what: str) -> Iterator[None]:
    """Map SDK/network exceptions to a one-line ``LabelStudioError`` (the token never appears)."""
    try:
        yield
    except LabelStudioError:
        raise
    except ApiError as exc:
        code = exc.status_code
        if code in (401, 403):
            raise LabelStudioError(f"Label Studio at {url} refused the API token ({code}) while trying to {what}; "
                                   "check LABEL_STUDIO_API_KEY") from None
        if code == 404:
            raise LabelStudioNotFoundError(f"Label Studio at {url}: not found (404) while trying to {what}; "
                                   "was it deleted in Label Studio?") from None
        detail = _detail(exc)
        raise LabelStudioError(f"Label Studio at {url} answered {code} while trying to {what}"
                               + (f": {detail}" if detail else "")) from None
    except _NETWORK_ERRORS as exc:
        raise LabelStudioError(f"Label Studio at {url} is unreachable while trying to {what} "
                               f"({type(exc).__name__}); is the server running?") from None


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    return obj.dict()  # pragma: no cover - pydantic v1


# ---------------------------------------------------------------------- client
#: told ``{item_id: task_id}`` for each imported chunk (and once for tasks found on the server)
OnCreated = Callable[[dict[int, int]], None]


class LabelStudioClient:
    """A connected, authenticated Label Studio; obtain one with ``connect``."""

    def __init__(self, sdk: LabelStudio, url: str, *, max_retries: int = 3, chunk_size: int = 50) -> None:
        self.sdk = sdk  # the raw SDK client, for tests and one-off admin calls
        self.url = url
        self.max_retries = max_retries
        self.chunk_size = chunk_size
        self.user_id: int | None = None
        self.user_email: str | None = None

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r}, user={self.user_email!r})"

    # -- helpers
    @property
    def _read(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries}

    _write_once: dict[str, Any] = {"max_retries": 0}

    def _tasks(self, project_id: int, items: list[dict[str, Any]] | None = None, *, conjunction: str = "and",
               fields: str = "all", include: str | None = None, what: str = "list tasks") -> list[dict[str, Any]]:
        query = json.dumps({"filters": {"conjunction": conjunction, "items": items}}) if items else None
        tasks: list[dict[str, Any]] = []
        page = 1
        with _errors(self.url, what):
            while True:  # page by page up to the server's total: the SDK's pager asked for one page past the
                # last, which Label Studio answers with a 404 and a traceback in its log, every sync
                pager: Any = self.sdk.tasks.list(
                    project=project_id, fields=fields, include=include, query=query, page=page, page_size=TASK_PAGE,
                    request_options=self._read)
                batch = pager.items or []
                tasks.extend(_as_dict(t) for t in batch)
                total = getattr(pager.response, "total", None)
                if len(batch) < TASK_PAGE or (total is not None and len(tasks) >= total):
                    return tasks
                page += 1

    # -- identity and projects
    def whoami(self) -> tuple[int, str]:
        with _errors(self.url, "check the API token"):
            me = self.sdk.users.whoami(request_options=self._read)
        self.user_id, self.user_email = int(me.id), str(me.email or me.username or me.id)
        return self.user_id, self.user_email

    def project_choices(self, project_id: int) -> list[str]:
        with _errors(self.url, f"open project {project_id}"):
            project = self.sdk.projects.get(project_id, request_options=self._read)
        return config_choices(project.label_config or "")

    def ensure_project(self, title: str, class_names: Sequence[str], project_id: int | None = None) -> int:
        """Create a project for ``class_names`` (``project_id`` None) or check a linked one has the same choices."""
        if project_id is not None:
            choices = self.project_choices(project_id)
            if choices != list(class_names):
                raise LabelStudioError(f"Label Studio project {project_id} offers choices {choices}, "
                                       f"but this project's classes are {list(class_names)}")
            return int(project_id)
        xml = label_config(class_names)
        with _errors(self.url, "create a project"):
            project = self.sdk.projects.create(title=title[:50], label_config=xml, request_options=self._write_once)
        log.info("created Label Studio project %s (%s)", project.id, title)
        return int(project.id)

    def ensure_local_storage(self, project_id: int, path: Path | str) -> int:
        """A Local Files import storage over ``path`` on the project (needed to serve its images); not synced.

        It is never synced: syncing would import every file as a task; we import
        only the items selected, with their ids and predictions.
        """
        path = str(Path(path).expanduser().resolve())
        with _errors(self.url, "set up local files storage"):
            for storage in self.sdk.import_storage.local.list(project=project_id, request_options=self._read):
                if storage.path == path:
                    return int(storage.id)
            storage = self.sdk.import_storage.local.create(project=project_id, path=path, use_blob_urls=True,
                                                           title="activeadv images", request_options=self._write_once)
        log.info("added local files storage %s on project %s", path, project_id)
        return int(storage.id)

    # -- webhooks and ML backend (``activeadv serve --register``)
    def ensure_webhook(self, project_id: int, url: str, headers: dict[str, str], actions: Sequence[str]) -> int:
        """A project webhook to ``url`` sending ``headers`` (the shared secret) for ``actions``; updated in place
        when one to the same URL exists, so registering again never doubles deliveries.  Returns its id."""
        with _errors(self.url, f"register a webhook on project {project_id}"):
            for hook in self.sdk.webhooks.list(project=str(project_id), request_options=self._read):
                if hook.url == url and getattr(hook, "project", project_id) in (project_id, None):
                    self.sdk.webhooks.update(int(hook.id), url=url, send_payload=True,
                                             send_for_all_actions=False, actions=list(actions),
                                             headers=headers, is_active=True, request_options=self._write_once)
                    return int(hook.id)
            hook = self.sdk.webhooks.create(url=url, project=project_id, send_payload=True, send_for_all_actions=False,
                                            actions=list(actions), headers=headers, is_active=True,
                                            request_options=self._write_once)
        log.info("registered webhook %s on project %s", url, project_id)
        return int(hook.id)

    def drop_webhooks(self, project_id: int, url: str) -> int:
        """Delete the project's webhooks to ``url``; returns how many there were."""
        dropped = 0
        with _errors(self.url, f"remove a webhook from project {project_id}"):
            for hook in self.sdk.webhooks.list(project=str(project_id), request_options=self._read):
                if hook.url == url and getattr(hook, "project", project_id) in (project_id, None):
                    self.sdk.webhooks.delete(int(hook.id), request_options=self._write_once)
                    dropped += 1
        return dropped

    def ensure_ml_backend(self, project_id: int, url: str, *, user: str, password: str, title: str) -> int:
        """The project's ML backend at ``url`` with basic auth (``password``: the shared secret); updated in place
        when one with the same URL exists.  Label Studio checks ``/health`` and ``/setup`` when it is saved."""
        with _errors(self.url, f"connect the ML backend on project {project_id}"):
            for backend in self.sdk.ml.list(project=project_id, request_options=self._read):
                if backend.url.rstrip("/") == url.rstrip("/"):
                    self.sdk.ml.update(int(backend.id), project=project_id, url=url, auth_method="BASIC_AUTH",
                                       basic_auth_user=user, basic_auth_pass=password, title=title,
                                       request_options=self._write_once)
                    return int(backend.id)
            backend = self.sdk.ml.create(project=project_id, url=url, auth_method="BASIC_AUTH", basic_auth_user=user,
                                         basic_auth_pass=password, title=title, is_interactive=False,
                                         request_options=self._write_once)
        log.info("connected ML backend %s to project %s", url, project_id)
        return int(backend.id)

    def predict_on_open(self, project_id: int) -> None:
        """Label Studio asks the ML backend for a prediction when an annotator opens a task that has none from the
        current model version (so tasks pushed by earlier rounds show the latest model's guess too)."""
        with _errors(self.url, f"turn on automatic predictions on project {project_id}"):
            self.sdk.projects.update(project_id, evaluate_predictions_automatically=True,
                                     request_options=self._write_once)

    # -- push
    def find_tasks(self, project_id: int, item_ids: Sequence[int]) -> dict[int, list[int]]:
        """``item_id -> [task ids]`` of the tasks that exist for these items (sorted; >1 means duplicates)."""
        return {item: [task for task, _ in tasks] for item, tasks in self._find_answered(project_id, item_ids).items()}

    def _find_answered(self, project_id: int, item_ids: Sequence[int]) -> dict[int, list[tuple[int, bool]]]:
        """``item_id -> [(task id, answered)]`` sorted by task id; answered = annotated or skipped."""
        found: dict[int, list[tuple[int, bool]]] = {}
        ids = sorted({int(i) for i in item_ids})
        for start in range(0, len(ids), self.chunk_size):
            chunk = ids[start:start + self.chunk_size]
            items = [{"filter": "filter:tasks:data.item_id", "operator": "equal", "type": "Number", "value": i}
                     for i in chunk]
            wanted = set(chunk)
            for task in self._tasks(project_id, items, conjunction="or", fields="task_only",
                                    include="id,data,total_annotations,cancelled_annotations",
                                    what=f"look up tasks in project {project_id}"):
                item = task_item_id(task)
                if item in wanted:
                    answered = bool(task.get("total_annotations") or task.get("cancelled_annotations"))
                    found.setdefault(item, []).append((int(task["id"]), answered))
        for tasks in found.values():
            tasks.sort()
        return found

    def _remove_duplicates(self, project_id: int, item_id: int, tasks: list[tuple[int, bool]],
                           known: int | None) -> int:
        """One task per item again: keep the answered ones (people's work is never deleted), else the one the
        caller knows, else the oldest; delete the other unanswered copies.  Returns the task to use."""
        answered = [task for task, done in tasks if done]
        keep = answered or [known if known in {t for t, _ in tasks} else tasks[0][0]]
        extra = [task for task, done in tasks if task not in keep and not done]
        with _errors(self.url, f"remove duplicate tasks of item {item_id}"):
            for task in extra:
                self.sdk.tasks.delete(task, request_options=self._write_once)
        log.warning("item %d had %d tasks in Label Studio project %d: removed the unanswered copies %s, kept %s",
                    item_id, len(tasks), project_id, extra, keep)
        return known if known in keep else keep[0]

    def push_tasks(self, project_id: int, items: Sequence[PushItem], *, model_version: str | int | None = None,
                   known: dict[int, int] | None = None, on_created: OnCreated | None = None,
                   progress: Callable[[int], None] | None = None) -> PushResult:
        """Import ``items`` as tasks unless they already have one; ``PushResult.tasks`` maps every item.

        Safe to re-run after any failure: items are looked up on the server
        first, so a chunk that was imported before a crash is found, not
        imported again.  ``known`` (the caller's map) is trusted only where the
        task still exists; a task deleted in Label Studio is imported again.
        ``on_created({item_id: task_id})`` is called with every chunk's new
        tasks right after the import (and once with tasks found on the server
        that ``known`` lacked), so the caller can store the map before the next
        chunk.  ``progress(n)`` is told how many items were handled.
        """
        known = dict(known or {})
        items = list(items)
        if len({i.item_id for i in items}) != len(items):
            raise LabelStudioError("push_tasks got the same item twice")
        existing = self._find_answered(project_id, [i.item_id for i in items])
        mapping: dict[int, int] = {}
        found: dict[int, int] = {}
        todo: list[PushItem] = []
        for item in items:
            tasks = existing.get(item.item_id)
            if tasks:
                if len(tasks) > 1:  # an import answered too late and sent again: repair it here
                    task_id = self._remove_duplicates(project_id, item.item_id, tasks, known.get(item.item_id))
                else:
                    task_id = tasks[0][0]
                mapping[item.item_id] = task_id
                if known.get(item.item_id) != task_id:
                    found[item.item_id] = task_id
            else:
                if item.item_id in known:
                    log.warning("task %d of item %d is gone from Label Studio; importing it again",
                                known[item.item_id], item.item_id)
                todo.append(item)
        if found and on_created:
            on_created(found)
        if progress and len(items) - len(todo):
            progress(len(items) - len(todo))
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start:start + self.chunk_size]
            new = self._import_chunk(project_id, chunk, model_version)
            mapping.update(new)
            if on_created:
                on_created(new)
            if progress:
                progress(len(chunk))
        if model_version is not None and any(i.predicted is not None for i in items):  # also on a re-run
            self.show_model_version(project_id, str(model_version))
        log.info("pushed %d new tasks (%d already there) to project %d", len(todo), len(items) - len(todo), project_id)
        return PushResult(mapping, [i.item_id for i in todo])

    def show_model_version(self, project_id: int, model_version: str) -> None:
        """Make ``model_version`` the predictions annotators see pre-selected.

        Label Studio's labeling stream ("Label All Tasks") shows only the
        predictions of the project's ``model_version``, which it sets once, from
        the first import that carries predictions, and never moves: without this,
        every round after the first would reach annotators with nothing pre-selected.
        """
        with _errors(self.url, f"set the model version of project {project_id}"):
            current = getattr(self.sdk.projects.get(project_id, request_options=self._read), "model_version", None)
            if current != model_version:
                self.sdk.projects.update(project_id, model_version=model_version, request_options=self._write_once)
                log.info("project %d now shows the predictions of model version %s", project_id, model_version)

    def _import_chunk(self, project_id: int, chunk: list[PushItem], model_version: str | int | None
                      ) -> dict[int, int]:
        """Import one chunk; ``{item_id: task_id}``.  After a failure the chunk is looked up by item id: an
        import that the server finished although the answer never came (a timeout) is taken as done."""
        payload = [task_payload(i, model_version) for i in chunk]
        try:
            with _errors(self.url, f"import tasks into project {project_id} (nothing is doubled: run the push again)"):
                response = self.sdk.projects.import_tasks(project_id, request=payload,
                                                          return_task_ids=True, request_options=self._write_once)
        except LabelStudioError:
            try:
                there = self.find_tasks(project_id, [i.item_id for i in chunk])
            except LabelStudioError:
                there = {}
            if all(i.item_id in there for i in chunk):
                log.warning("the import of %d task(s) failed to answer, but Label Studio has them: continuing",
                            len(chunk))
                return {i.item_id: there[i.item_id][0] for i in chunk}
            raise
        task_ids = list(response.task_ids or [])
        if len(task_ids) != len(chunk):
            raise LabelStudioError(f"Label Studio returned {len(task_ids)} task ids for {len(chunk)} items; "
                                   "run the push again to reconcile")
        return {item.item_id: int(task_id) for item, task_id in zip(chunk, task_ids)}

    def existing_task_ids(self, project_id: int) -> set[int]:
        """Ids of every task in the project (to find tasks an admin deleted)."""
        return {int(t["id"]) for t in self._tasks(project_id, fields="task_only", include="id",
                                                  what=f"list tasks of project {project_id}")}

    # -- pull
    def users(self) -> dict[int, str]:
        """``user id -> email`` for naming annotators."""
        with _errors(self.url, "list users"):
            return {int(u.id): str(u.email or u.username or u.id)
                    for u in self.sdk.users.list(request_options=self._read)}

    def pull_annotations(self, project_id: int, class_names: Sequence[str], since: datetime | None = None
                         ) -> SyncResult:
        """Annotations created or updated after ``since`` (all when None); see ``parse_tasks`` for the rules."""
        items = None
        if since is not None:
            items = [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                      "value": ls_time(since - CURSOR_SLACK)}]
        tasks = self._tasks(project_id, items, what=f"read annotations of project {project_id}")
        result = parse_tasks(tasks, class_names, since, self.users())
        for reject in result.rejects:
            log.warning("refused annotation %s on item %s by %s: %s", reject.external_id, reject.item_id,
                        reject.annotator, reject.reason)
        return result

    def project_counts(self, project_id: int) -> dict[str, int]:
        """``{"tasks", "open", "annotated", "skipped"}``: open = no annotation and no skip yet."""
        counts = {"tasks": 0, "open": 0, "annotated": 0, "skipped": 0}
        for task in self._tasks(project_id, fields="task_only", include="id,total_annotations,cancelled_annotations",
                                what=f"count tasks of project {project_id}"):
            counts["tasks"] += 1
            if int(task.get("total_annotations") or 0) > 0:
                counts["annotated"] += 1
            elif int(task.get("cancelled_annotations") or 0) > 0:
                counts["skipped"] += 1
            else:
                counts["open"] += 1
        return counts

    def open_tasks(self, project_id: int) -> list[tuple[int, int | None]]:
        """``(task_id, item_id)`` of tasks nobody has answered or skipped, oldest first."""
        items = [{"filter": f"filter:tasks:{name}", "operator": "equal", "type": "Number", "value": 0}
                 for name in ("total_annotations", "cancelled_annotations")]
        tasks = self._tasks(project_id, items, fields="task_only", include="id,data,total_annotations,"
                            "cancelled_annotations", what=f"list open tasks of project {project_id}")
        return sorted((int(t["id"]), task_item_id(t)) for t in tasks
                      if not t.get("total_annotations") and not t.get("cancelled_annotations"))

    def annotate(self, task_id: int, label: str | None) -> int:
        """Submit one annotation as the token's user (``label`` None: skip the task); returns its id."""
        with _errors(self.url, f"annotate task {task_id}"):
            if label is None:
                ann = self.sdk.annotations.create(task_id, result=[], was_cancelled=True,
                                                  request_options=self._write_once)
            else:
                result = [{"from_name": CONTROL, "to_name": IMAGE, "type": "choices", "value": {"choices": [label]}}]
                ann = self.sdk.annotations.create(task_id, result=result, request_options=self._write_once)
        return int(ann.id)

    def annotate_open_tasks(self, project_id: int, answer: Callable[[int], str | None], *, limit: int | None = None,
                            progress: Callable[[int], None] | None = None) -> int:
        """Answer open tasks with ``answer(item_id)`` (a simulated annotator); returns how many were answered.

        Re-running after a failure continues where it stopped: answered tasks are
        no longer open.
        """
        done = 0
        for task_id, item_id in self.open_tasks(project_id):
            if limit is not None and done >= limit:
                break
            if item_id is None:
                log.warning("task %d has no item_id; left open", task_id)
                continue
            self.annotate(task_id, answer(item_id))
            done += 1
            if progress:
                progress(1)
        return done


def masked_url(url: str) -> str:
    """``url`` with a password in it replaced by ``***``: what error lines and logs may show."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def clean_token(token: str | None) -> str:
    """The token as an HTTP header can carry it: surrounding whitespace (a pasted newline) removed.

    Anything else that is not printable ASCII is refused in one line that never
    shows the token; before, a trailing newline made httpx fail deep inside and
    the error read "server unreachable".
    """
    if not token or not token.strip():
        raise LabelStudioError("no Label Studio API token: set LABEL_STUDIO_API_KEY")
    token = token.strip()
    if not all("!" <= ch <= "~" for ch in token):
        raise LabelStudioError("the Label Studio API token holds spaces or characters outside printable ASCII; "
                               "check LABEL_STUDIO_API_KEY (or the token file)")
    return token


def _reachable(url: str, timeout: float = 5.0) -> None:
    """Raise the usual one-line "unreachable" error when nothing answers at ``url``."""
    with _errors(masked_url(url), "reach the server"):
        httpx.get(url + "/health", timeout=timeout)


def connect(url: str, token: str | None, *, timeout: float = 30.0, max_retries: int = 3,
            chunk_size: int = 50) -> LabelStudioClient:
    """A client for ``url`` after checking that the server answers and accepts ``token``.

    ``max_retries`` applies to reads (GET), with the SDK's exponential backoff
    (1 s, 2 s, 4 s ...); writes are never retried blindly.
    """
    if not url:
        raise LabelStudioError("no Label Studio URL: pass --label-studio URL or set LABEL_STUDIO_URL")
    url = url.rstrip("/")
    if not token or not token.strip():
        _reachable(url)  # a server that is down is the first thing to say, before a missing token
    token = clean_token(token)
    sdk = LabelStudio(base_url=url, api_key=token, timeout=timeout, max_retries=max_retries)
    client = LabelStudioClient(sdk, masked_url(url), max_retries=max_retries, chunk_size=chunk_size)
    client.whoami()
    return client
