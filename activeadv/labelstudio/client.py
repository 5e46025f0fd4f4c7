"""Label Studio adapter: the only module that imports ``label_studio_sdk``.

It turns the project's records into Label Studio tasks and back:

* ``connect(url, token)`` checks the server and the token once and returns a
  ``LabelStudioClient``; every SDK and network failure becomes a one-line
  ``LabelStudioError`` (the SDK raises a raw ``httpx.ConnectError`` when the
  server is down) whose text never holds the token.
* ``ensure_project`` creates or links a single-choice image-classification
  project whose ``<Choices>`` are exactly the class names.
* ``push_tasks`` imports items as tasks carrying ``data.item_id``, the image
  and the model's prediction as a pre-annotation.  Label Studio does not dedupe,
  so the push is made safe to re-run: it looks the items up on the server
  (``filter:tasks:data.item_id``) as well as in the caller's item -> task map,
  imports in small chunks with the SDK's retries *off* (a retried POST after a
  dropped connection could import twice) and reports every chunk's task ids
  through ``on_created`` as soon as they come back.
* ``pull_annotations`` returns what annotators did since a cursor: every vote,
  the label per item resolved by majority (ties flagged, never trained on),
  skipped tasks, and annotations refused because their label is not a class
  (Label Studio stores any choice without complaint).

Reads (GET) use the SDK's own retry with exponential backoff on connection
errors and 5xx answers (``max_retries``), so no hand-written retry loop here.
The parsing functions work on plain JSON dicts and are unit-tested with canned
payloads; everything else is tested against a real server.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import httpx
import numpy as np
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from activeadv.errors import LabelStudioError, LabelStudioNotFoundError
from activeadv.records import Annotation, Disagreement, RejectedAnnotation, Selection

log = logging.getLogger(__name__)

#: names used in the labeling config: ``<Image name=IMAGE>`` and ``<Choices name=CONTROL>``
IMAGE = "image"
CONTROL = "label"
#: a task's ``updated_at`` may be written a moment after an annotation's; query with this overlap
CURSOR_SLACK = timedelta(seconds=5)
#: Label Studio's Datetime filter only parses this exact format (an ISO offset answers 500)
_LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
#: an annotation updated later than this after its creation was edited (creation itself differs by microseconds)
EDIT_GRACE = timedelta(seconds=1)
_NETWORK_ERRORS = (httpx.TransportError,)
TASK_PAGE = 100  # tasks per list request


# ------------------------------------------------------------------ config XML
def label_config(class_names: Sequence[str]) -> str:
    """Single-choice image classification config with one ``<Choice>`` per class (order kept)."""
    names = list(class_names)
    if not names:
        raise LabelStudioError("a Label Studio project needs at least one class name")
    if len(set(names)) != len(names):
        raise LabelStudioError("class names must be unique")
    choices = "".join(f"<Choice value={quoteattr(str(n))}/>" for n in names)
    return (f'<View><Image name="{IMAGE}" value="${IMAGE}"/>'
            f'<Choices name="{CONTROL}" toName="{IMAGE}" choice="single" showInline="true">{choices}</Choices></View>')


def config_choices(xml: str) -> list[str]:
    """The choice values of the ``<Choices name="label">`` control of a config, in order ([] if absent)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelStudioError(f"the Label Studio project's labeling config is not valid XML: {exc}") from None
    for node in root.iter("Choices"):
        if node.get("name") == CONTROL:
            return [c.get("value", "") for c in node.iter("Choice")]
    return []


# -------------------------------------------------------------- image payloads
def png_data_uri(pixels: np.ndarray, *, min_size: int = 64) -> str:
    """An in-memory image as a ``data:image/png;base64,...`` URI, upscaled nearest-neighbour.

    ``pixels``: ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)`` (channels first, as a
    ``Pool`` loads them) or ``(H, W, 3)``; float in [0, 1] or uint8.  Images whose
    shorter side is below ``min_size`` are enlarged by an integer factor with
    nearest-neighbour sampling so that an 8x8 digit becomes a visible 64x64
    block image, not a blur.  Label Studio stores the URI verbatim in the task,
    so keep this to small images (MNIST-sized: about 1 KB each).
    """
    from PIL import Image

    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise LabelStudioError(f"cannot render an image of shape {np.asarray(pixels).shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    short = min(arr.shape[0], arr.shape[1])
    factor = max(1, math.ceil(min_size / max(short, 1)))
    if factor > 1:
        arr = arr.repeat(factor, axis=0).repeat(factor, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def local_file_url(path: Path | str, files_root: Path | str) -> str:
    """The URL under which Label Studio's local-files serving shows ``path``.

    ``files_root`` is the server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``;
    the project also needs a Local Files storage over the image folder
    (``ensure_local_storage``), or the image answers 404.
    """
    path = Path(path).expanduser().resolve()
    root = Path(files_root).expanduser().resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise LabelStudioError(f"{path} is outside Label Studio's local files root {root}; "
                               "start the server with --files-root covering it") from None
    return "/data/local-files/?d=" + quote(rel.as_posix(), safe="/")


def served_from_disk(pool: Any, files_root: Path | str | None) -> bool:
    """True when ``pool`` is an image folder below ``files_root`` (Label Studio can serve its files)."""
    root = getattr(pool, "root", None)
    if files_root is None or root is None or not hasattr(pool, "path_of"):
        return False
    try:
        Path(root).expanduser().resolve().relative_to(Path(files_root).expanduser().resolve())
    except ValueError:
        return False
    return True


def pool_image_refs(pool: Any, item_ids: Sequence[int], *, files_root: Path | str | None = None,
                    min_size: int = 64) -> dict[int, str]:
    """``item_id -> image reference`` for a ``data.Pool`` (duck-typed: no torch import here).

    Folder pools (``path_of``) below ``files_root`` become local-file URLs;
    in-memory pools (digits, IDX, npz), and folders Label Studio cannot serve,
    become inline PNG data URIs.
    """
    ids = [int(i) for i in item_ids]
    if served_from_disk(pool, files_root):
        return {i: local_file_url(pool.path_of(i), files_root) for i in ids}  # type: ignore[arg-type]
    if hasattr(pool, "path_of") and files_root is not None:
        log.warning("image folder %s is outside Label Studio's files root %s: sending images inline",
                    getattr(pool, "root", "?"), files_root)
    if not getattr(pool, "is_image", True):
        raise LabelStudioError("this dataset holds feature vectors, not images: annotators could not see them")
    out: dict[int, str] = {}
    for start in range(0, len(ids), 256):
        chunk = ids[start:start + 256]
        pixels = pool.load(chunk)
        pixels = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
        for item_id, px in zip(chunk, pixels):
            out[item_id] = png_data_uri(px, min_size=min_size)
    return out


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


@dataclass(frozen=True)
class SyncResult:
    """What ``pull_annotations`` found since the cursor.

    ``annotations``: one per item whose annotations changed, with the label
    resolved over all its annotators (majority; latest answer per annotator);
    skipped tasks as ``label=None, skipped=True``; ties are *not* here but in
    ``disagreements`` with ``tie=True``.  ``votes``: every individual valid
    annotation, skips included (disagreement kept).  ``rejects``: refused annotations (label not
    a class, no or several choices, task without item_id).  ``cursor``: pass it
    as ``since`` next time.
    """

    annotations: list[Annotation] = field(default_factory=list)
    votes: list[Annotation] = field(default_factory=list)
    rejects: list[RejectedAnnotation] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    cursor: datetime | None = None
    tasks_seen: int = 0
    # item id -> the Label Studio annotation ids its task has now, for every task that changed (deletions too)
    present: dict[int, frozenset[str]] = field(default_factory=dict)

    @property
    def skipped(self) -> list[int]:
        return [a.item_id for a in self.annotations if a.skipped]

    @property
    def ties(self) -> list[int]:
        return [d.item_id for d in self.disagreements if d.tie]

    def for_store(self) -> list[Annotation]:
        """The labels and skips, plus each refused annotation of a known item as an ``Annotation``
        whose ``rejected`` says why, so that the store keeps it among its rejects (reported, never
        trained on): unknown labels, several choices, and no choice at all."""
        refused = [Annotation(r.item_id, r.label, "annotator", r.annotator, r.external_id, r.updated_at,
                              rejected=r.reason)
                   for r in self.rejects if r.item_id is not None]
        # what each changed task still has: a label whose annotation was deleted in Label Studio is retracted
        snapshots = [Annotation(item_id, None, "annotator", present=ids) for item_id, ids in self.present.items()]
        return [*snapshots, *self.annotations, *refused]


# -------------------------------------------------------------------- parsing
def parse_time(value: Any) -> datetime | None:
    """A Label Studio timestamp (``...Z``, ``+00:00`` or a datetime) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip().replace(" ", "T", 1)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def ls_time(value: datetime) -> str:
    """A datetime in the one format Label Studio's Datetime filter accepts."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime(_LS_TIME)


def task_item_id(task: dict[str, Any]) -> int | None:
    """``task.data.item_id`` as an int, or None when missing or not an integer."""
    raw = (task.get("data") or {}).get("item_id")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() else None
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw.strip())
    return None


def _choices(result: Any) -> list[str] | None:
    """The chosen values of our ``label`` control in an annotation result; None when there is none."""
    if not isinstance(result, list):
        return None
    for region in result:
        if not isinstance(region, dict):
            continue
        if region.get("from_name") == CONTROL and region.get("type", "choices").lower() == "choices":
            value = region.get("value") or {}
            chosen = value.get("choices")
            if isinstance(chosen, list):
                return [str(c) for c in chosen]
    return None


def _annotator(raw: dict[str, Any], users: dict[int, str]) -> str | None:
    who = raw.get("completed_by")
    if isinstance(who, dict):  # some endpoints inline the user
        return who.get("email") or (str(who["id"]) if "id" in who else None)
    if who is None:
        return None
    try:
        return users.get(int(who), str(who))
    except (TypeError, ValueError):
        return str(who)


def parse_task(task: dict[str, Any], class_names: Sequence[str], users: dict[int, str] | None = None
               ) -> tuple[list[Annotation], list[RejectedAnnotation], dict[str, datetime | None]]:
    """Every annotation of one task as ``Annotation`` votes (source "annotator") or rejects.

    Cancelled/skipped annotations become ``Annotation(label=None, skipped=True)``.
    ``external_id`` is the Label Studio annotation id; an annotation edited after
    it was submitted gets ``"ID@UPDATED_AT"`` and ``created_at = updated_at``, so
    that a store keyed by external id records the correction as a newer label
    instead of dropping it as a duplicate.
    A label is refused when it is not one of ``class_names``, when there is no
    choice or more than one, or when the task has no usable ``item_id``.
    Returns ``(votes, rejects, updated)`` where ``updated`` maps the annotation
    id to its ``updated_at`` (for the cursor).
    """
    users = users or {}
    classes = set(class_names)
    item_id = task_item_id(task)
    votes: list[Annotation] = []
    rejects: list[RejectedAnnotation] = []
    updated: dict[str, datetime | None] = {}
    for raw in task.get("annotations") or []:
        if not isinstance(raw, dict):
            continue
        ext = str(raw.get("id")) if raw.get("id") is not None else None
        created = parse_time(raw.get("created_at"))
        changed = parse_time(raw.get("updated_at")) or created
        if ext is not None and created is not None and changed is not None and changed - created > EDIT_GRACE:
            # Edited after submission: a new version of the label.  The store keeps one
            # label per external id, so the version gets its own id and its own time.
            ext, created = f"{ext}@{ls_time(changed)}", changed
        who = _annotator(raw, users)
        updated[ext or ""] = changed
        if item_id is None:
            rejects.append(RejectedAnnotation(None, None, f"task {task.get('id')} has no integer data.item_id",
                                              who, ext, changed))
            continue
        if raw.get("was_cancelled"):
            votes.append(Annotation(item_id, None, "annotator", who, ext, created, skipped=True))
            continue
        chosen = _choices(raw.get("result"))
        if not chosen:
            rejects.append(RejectedAnnotation(item_id, None, "no choice in the annotation", who, ext, changed))
        elif len(chosen) > 1:
            rejects.append(RejectedAnnotation(item_id, ",".join(chosen), "several choices for a single-label item",
                                              who, ext, changed))
        elif chosen[0] not in classes:
            rejects.append(RejectedAnnotation(item_id, chosen[0], f"label '{chosen[0]}' is not one of the project's "
                                              "classes", who, ext, changed))
        else:
            votes.append(Annotation(item_id, chosen[0], "annotator", who, ext, created))
    return votes, rejects, updated


def resolve(votes: Sequence[Annotation], updated: dict[str, datetime | None] | None = None
            ) -> tuple[Annotation | None, Disagreement | None]:
    """One item's label from its annotators' votes: the stated rule.

    * Each annotator counts once, with their latest answer (by ``updated``, else
      ``created_at``, else annotation id); a skip is an answer too.
    * The label chosen by most annotators wins; its ``Annotation`` is the most
      recent vote for it (so ``external_id`` is a real annotation id).
    * A tie between the top labels gives no label (``Disagreement(tie=True)``):
      flagged for a person, never trained on.
    * Only skips: the item is skipped (``skipped=True``).
    * Any disagreement is returned as ``Disagreement`` so it is kept.
    """
    if not votes:
        return None, None
    updated = updated or {}
    epoch = datetime.min.replace(tzinfo=timezone.utc)

    def when(v: Annotation) -> tuple[datetime, int]:
        t = updated.get(v.external_id or "") or v.created_at or epoch
        try:
            num = int(v.external_id or 0)
        except ValueError:
            num = 0
        return t, num

    latest: dict[str, Annotation] = {}
    for i, vote in enumerate(sorted(votes, key=when)):
        latest[vote.annotator or f"anonymous-{vote.external_id or i}"] = vote
    answers = list(latest.values())
    labelled = [v for v in answers if not v.skipped and v.label is not None]
    item_id = votes[0].item_id
    if not labelled:
        last_skip = max(answers, key=when)
        return last_skip, None
    counts = Counter(v.label for v in labelled)
    ranked = counts.most_common()
    top = ranked[0][1]
    leaders = sorted(label for label, n in ranked if n == top)  # type: ignore[misc]
    if len(leaders) > 1:
        return None, Disagreement(item_id, None, dict(counts), tie=True)  # type: ignore[arg-type]
    winner = max((v for v in labelled if v.label == leaders[0]), key=when)
    disagreement = Disagreement(item_id, leaders[0], dict(counts), tie=False) if len(counts) > 1 else None  # type: ignore[arg-type]
    return winner, disagreement


def parse_tasks(tasks: Iterable[dict[str, Any]], class_names: Sequence[str], since: datetime | None = None,
                users: dict[int, str] | None = None) -> SyncResult:
    """Build a ``SyncResult`` from task JSON (``fields=all``), keeping only tasks with news after ``since``.

    A task has news when one of its annotations was created or updated after
    ``since``; then all its annotations are re-resolved, so a second annotator or
    a corrected label changes the item's label.  The cursor is the newest
    ``updated_at`` seen (``since`` when nothing is new), which makes a repeated
    pull return nothing.
    """
    result = SyncResult(cursor=since)
    cursor = since
    seen = 0
    for task in tasks:
        votes, rejects, updated = parse_task(task, class_names, users)
        stamps = [t for t in updated.values() if t is not None]
        task_changed = parse_time(task.get("updated_at"))  # Label Studio bumps it when an annotation is deleted
        if task_changed is not None and (updated or since is not None):  # (it also moves on every annotation)
            stamps.append(task_changed)
        if since is not None and not any(t > since for t in stamps):
            continue
        item_id = task_item_id(task)
        if item_id is not None:
            result.present[item_id] = frozenset(str(raw["id"]) for raw in task.get("annotations") or []
                                                if isinstance(raw, dict) and raw.get("id") is not None)
        if not updated:  # no annotation (any more): nothing to resolve; the snapshot retracts a deleted one's label
            if stamps:
                cursor = max(stamps) if cursor is None else max(cursor, *stamps)
            continue
        seen += 1
        if stamps:
            newest = max(stamps)
            cursor = newest if cursor is None or newest > cursor else cursor
        result.votes.extend(votes)
        result.rejects.extend(r for r in rejects if since is None or r.updated_at is None or r.updated_at > since)
        label, disagreement = resolve(votes, updated)
        if label is not None:
            result.annotations.append(label)
        if disagreement is not None:
            result.disagreements.append(disagreement)
    return SyncResult(result.annotations, result.votes, result.rejects, result.disagreements, cursor, seen,
                      result.present)


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
                pager = self.sdk.tasks.list(  # type: ignore[arg-type]
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
        that ``known`` lacked), so the caller can store the map before the next chunk.  ``progress(n)`` is told how many items were handled.
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
        log.info("pushed %d new tasks (%d already there) to project %d", len(todo), len(items) - len(todo), project_id)
        return PushResult(mapping, [i.item_id for i in todo])

    def _import_chunk(self, project_id: int, chunk: list[PushItem], model_version: str | int | None
                      ) -> dict[int, int]:
        """Import one chunk; ``{item_id: task_id}``.  After a failure the chunk is looked up by item id: an
        import that the server finished although the answer never came (a timeout) is taken as done."""
        payload = [task_payload(i, model_version) for i in chunk]
        try:
            with _errors(self.url, f"import tasks into project {project_id} (nothing is doubled: run the push again)"):
                response = self.sdk.projects.import_tasks(project_id, request=payload,  # type: ignore[arg-type]
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
            return {int(u.id): str(u.email or u.username or u.id) for u in self.sdk.users.list(request_options=self._read)}

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


# ---------------------------------------------------------------------- oracle
class LabelStudioOracle:
    """The ``Oracle`` protocol over Label Studio, with the bookkeeping left to the caller.

    It imports nothing from the store: the caller passes what it needs as plain
    callables, so the CLI/loop decides where the item -> task map and the sync
    cursor live (the database), and tests can pass dicts.

    * ``image_ref(item_ids) -> {item_id: image}``: e.g. ``partial(pool_image_refs, pool, files_root=...)``.
    * ``known_tasks() -> {item_id: task_id}`` and ``on_created(round_id, {item_id: task_id})``: the task map.
    * ``get_cursor() -> datetime | None`` and ``set_cursor(datetime)``: the sync cursor; the cursor
      should be saved by the caller *after* it stored the annotations ``collect`` returned.
    * ``top_k``: how many of a selection to send (None: all).
    * ``model_version(round_id) -> str``: the predictions' ``model_version`` (default the id itself;
      the store wiring uses the round number people see in ``activeadv status``).
    """

    def __init__(self, client: LabelStudioClient, project_id: int, class_names: Sequence[str], *,
                 image_ref: Callable[[Sequence[int]], dict[int, str]],
                 known_tasks: Callable[[], dict[int, int]] | None = None,
                 on_created: Callable[[int, dict[int, int]], None] | None = None,
                 get_cursor: Callable[[], datetime | None] | None = None,
                 set_cursor: Callable[[datetime], None] | None = None,
                 top_k: int | None = None,
                 model_version: Callable[[int], str] = str) -> None:
        self.client = client
        self.model_version = model_version
        self.project_id = int(project_id)
        self.class_names = list(class_names)
        self.image_ref = image_ref
        self._tasks: dict[int, int] = {}
        self.known_tasks = known_tasks or (lambda: dict(self._tasks))
        self._on_created = on_created
        self._cursor: datetime | None = None
        self.get_cursor = get_cursor or (lambda: self._cursor)
        self.set_cursor = set_cursor or self._remember_cursor
        self.top_k = top_k
        self.last_sync: SyncResult | None = None
        self._pending: datetime | None = None

    def _remember_cursor(self, cursor: datetime) -> None:
        self._cursor = cursor


    def request(self, selection: Selection, round_id: int) -> None:
        """Send the selection's top items (with the model's prediction) as tasks; model_version = round."""
        n = len(selection) if self.top_k is None else min(self.top_k, len(selection))
        ids = [int(i) for i in selection.item_ids[:n]]
        images = self.image_ref(ids)
        items = []
        for pos, item_id in enumerate(ids):
            predicted = score = None
            if selection.predicted is not None:
                cls = int(selection.predicted[pos])
                predicted = self.class_names[cls] if 0 <= cls < len(self.class_names) else None
            if selection.confidence is not None:
                score = float(selection.confidence[pos])
            items.append(PushItem(item_id, images[item_id], predicted, score))
        def created(new: dict[int, int]) -> None:
            self._tasks.update(new)
            if self._on_created:
                self._on_created(round_id, new)

        self.client.push_tasks(self.project_id, items, model_version=self.model_version(round_id),
                               known=self.known_tasks(), on_created=created)

    def collect(self) -> list[Annotation]:
        """Resolved labels (and skips) since the last stored cursor; never blocks.

        Refused labels come too (``SyncResult.for_store``): the store checks every
        label against the classes and keeps unknown ones as rejects.

        The cursor moves lazily: the cursor of one ``collect`` is saved (through
        ``set_cursor``) at the start of the next one, or by ``commit()``, i.e. once
        the caller has had the chance to store the labels.  A crash in between
        only means the same annotations are pulled again, which the store
        ignores by ``external_id``.  Rejects and ties of the last pull: ``last_sync``.
        """
        self.commit()
        result = self.client.pull_annotations(self.project_id, self.class_names, self.get_cursor())
        self.last_sync = result
        self._pending = result.cursor
        return result.for_store()

    def commit(self) -> None:
        """Save the cursor of the last ``collect`` (call after its labels are stored)."""
        if self._pending is not None:
            self.set_cursor(self._pending)
            self._pending = None
