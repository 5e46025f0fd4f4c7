"""``activeadv serve --register``: connect a linked Label Studio project to the service.

Two registrations on the project, both carrying the shared secret: a project
webhook for annotation events (header ``X-ActiveAdv-Secret``) and the ML
backend (basic auth, the secret as password) so annotators see the latest
model's guess; automatic predictions are turned on, so a task pushed by an
earlier round shows the current model's guess when opened.  Registering
again updates both in place.  The unauthenticated
webhook Label Studio adds by itself for a new ML backend is removed.  The secret is passed
through, never stored in the database or logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from activeadv.app.workspace import Workspace, linked_project_id

log = logging.getLogger(__name__)

#: the annotation events the service acts on (Label Studio 1.23 names)
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
WEBHOOK_PATH = "/webhook/labelstudio"
ML_WEBHOOK_PATH = "/webhook"  # the ML backend's training events (Label Studio's "Start training": basic auth)


@dataclass(frozen=True)
class Registration:
    ls_project_id: int
    webhook_id: int
    ml_backend_id: int | None
    webhook_url: str
    ml_url: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"label_studio_project": self.ls_project_id, "webhook": self.webhook_id, "webhook_url": self.webhook_url,
                "ml_backend": self.ml_backend_id, "ml_url": self.ml_url}


def register(ws: Workspace, name: str | None, service_url: str, secret: str, *, header: str, basic_user: str,
             ml_backend: bool = True, ls_url: str | None = None) -> Registration:
    """Register the webhook (and, with ``ml_backend``, the ML backend) of ``service_url`` on the linked project.

    Label Studio calls the ML backend's ``/health`` and ``/setup`` when it is
    saved, so the service must already answer at ``service_url``.
    """
    project = ws.project(name)
    pid = linked_project_id(project)
    client = ws.connect(ls_url, project)
    base = service_url.rstrip("/")
    hook = client.ensure_webhook(pid, base + WEBHOOK_PATH, {header: secret}, WEBHOOK_ACTIONS)
    backend = None
    if ml_backend:
        backend = client.ensure_ml_backend(pid, base, user=basic_user, password=secret,
                                           title=f"activeadv {project.name}")
        # Label Studio adds a webhook of its own to ML_URL/webhook for every action when an ML backend is created,
        # without the secret: each annotation would be a refused (401) delivery.  The secured hook above carries
        # the same events, so that one goes.
        if client.drop_webhooks(pid, base + ML_WEBHOOK_PATH):
            log.info("removed Label Studio's unauthenticated webhook to %s%s", base, ML_WEBHOOK_PATH)
        client.predict_on_open(pid)  # tasks of earlier rounds get the latest model's guess when opened
    return Registration(pid, hook, backend, base + WEBHOOK_PATH, base if ml_backend else None)
