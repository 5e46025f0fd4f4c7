"""Label Studio webhook payloads -> what the service stores: the action and a dedupe key (pure functions).

Label Studio may deliver the same event twice (a retry after a slow answer)
and in any order.  The key is built from what identifies the change: the
action and each annotation's id with its ``updated_at`` (an edit is a new
change; a second delivery of the same one is not).  Payloads without
annotations fall back to a hash of their canonical JSON.  Order does not matter
because the worker never applies a payload: it syncs, reading the state Label
Studio has now.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: the project webhook's actions the worker acts on (any other is stored and acknowledged, nothing more)
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


def action_of(payload: dict[str, Any]) -> str:
    """The payload's action (``UNKNOWN`` when absent), upper-case, at most 64 characters."""
    action = payload.get("action") if isinstance(payload, dict) else None
    return (str(action).strip().upper() or "UNKNOWN")[:64] if action is not None else "UNKNOWN"


def _annotations(payload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[Any] = []
    if isinstance(payload.get("annotation"), dict):
        found.append(payload["annotation"])
    if isinstance(payload.get("annotations"), list):
        found.extend(payload["annotations"])
    return [a for a in found if isinstance(a, dict) and a.get("id") is not None]


def dedupe_key(payload: dict[str, Any]) -> str:
    """``ACTION:sha256`` of the change's identity; equal for two deliveries of the same change."""
    action = action_of(payload)
    anns = _annotations(payload)
    if anns:
        identity = ",".join(sorted(f"{a['id']}@{a.get('updated_at') or a.get('created_at') or ''}" for a in anns))
    else:
        identity = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"{action}:{hashlib.sha256(identity.encode()).hexdigest()}"


def project_of(payload: dict[str, Any]) -> int | None:
    """The Label Studio project id the payload is about (``project`` as an object or an id), else None."""
    raw = payload.get("project")
    if isinstance(raw, dict):
        raw = raw.get("id")
    if raw is None:
        task = payload.get("task")
        raw = task.get("project") if isinstance(task, dict) else None
    try:
        return int(raw) if raw is not None and not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        return None
