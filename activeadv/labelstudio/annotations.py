"""Label Studio task JSON -> the project's records: pure functions, no HTTP.

They take tasks as plain dicts, as ``tasks.list(fields="all")`` returns them, so that every rule
(who counts, which label wins, what is refused, where the cursor goes) is unit-tested with canned
payloads and the client only fetches:

* ``parse_task``: one task's annotations as votes (``Annotation``) or refusals (``RejectedAnnotation``);
  an annotation edited after submission becomes a new version with its own external id.
* ``resolve``: one item's label from its votes (majority of annotators, latest answer each; ties
  are flagged, never trained on).
* ``parse_tasks``: a whole pull as a ``SyncResult`` with the cursor for the next one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from activeadv.labelstudio.config import CONTROL
from activeadv.records import Annotation, Disagreement, RejectedAnnotation

#: Label Studio's Datetime filter only parses this exact format (an ISO offset answers 500)
_LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
#: an annotation updated later than this after its creation was edited (creation itself differs by microseconds)
EDIT_GRACE = timedelta(seconds=1)


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
    leaders = sorted(str(label) for label, n in ranked if n == top)  # labelled: every label is set
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
