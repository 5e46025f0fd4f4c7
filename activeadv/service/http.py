"""The Starlette app: Label Studio's ML-backend protocol and the project webhook receiver.

Every route but ``/health`` needs the shared secret (``secret.authorized``):
a request without it, or with a wrong one, gets 401 and a log line naming the
path and the client, never what it sent.  A webhook delivery is written to the
``events`` table inside the request, before the answer and before the worker
sees it; the worker is only woken.  Database and model work runs in the
thread pool, so the event loop keeps answering.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from activeadv.service import events as ev
from activeadv.service.secret import authorized

if TYPE_CHECKING:
    from activeadv.app.workspace import Workspace
    from activeadv.service.config import ServiceConfig
    from activeadv.service.predict import Predictor
    from activeadv.service.worker import Worker

log = logging.getLogger(__name__)


class Service:
    """What the routes share: the workspace, the project, the worker and the predictor."""

    def __init__(self, ws: Workspace, cfg: ServiceConfig, secret: str, worker: Worker, predictor: Predictor) -> None:
        self.ws = ws
        self.cfg = cfg
        self._secret = secret
        self.worker = worker
        self.predictor = predictor

    def authorized(self, request: Request) -> bool:
        if authorized(request.headers, self._secret):
            return True
        client = request.client.host if request.client else "?"
        log.warning("refused %s %s from %s: missing or wrong secret", request.method, request.url.path, client)
        return False

    def store_event(self, payload: dict[str, Any]) -> tuple[int | None, str]:
        """Store one delivery for the linked project; ``(event id or None for a duplicate, action)``."""
        project = self.ws.project(self.cfg.project)
        action = ev.action_of(payload)
        about = ev.project_of(payload)
        if about is not None and project.ls_project_id is not None and about != int(project.ls_project_id):
            raise _Ignored(f"event for Label Studio project {about}, not {project.ls_project_id}")
        event_id = self.ws.store.add_event(project.id, ev.dedupe_key(payload), action, payload)
        return event_id, action

    def status(self) -> dict[str, Any]:
        project = self.ws.project(self.cfg.project)
        st = self.worker.state
        return {"project": project.name, "label_studio_project": project.ls_project_id,
                "pending_events": len(self.ws.store.pending_events(project.id)), "syncs": st.syncs,
                "rounds": st.rounds, "events_processed": st.events_processed, "busy": st.busy,
                "last_round": st.last_round, "last_error": st.last_error, "history": list(st.history),
                "model_version": self.predictor.model_version}


class _Ignored(Exception):
    """A delivery that is not for this service's project: acknowledged, not stored."""


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "unauthorized"}, status_code=401)


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def create_app(service: Service, *, run_worker: bool = True) -> Starlette:
    """The ASGI app; ``run_worker`` False leaves the worker stopped (tests drive ``worker.step`` themselves)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "UP", "model_class": "activeadv", "v2": True})

    async def setup(request: Request) -> JSONResponse:
        if not service.authorized(request):
            return _unauthorized()
        version = await run_in_threadpool(lambda: service.predictor.model_version)
        return JSONResponse({"model_version": version})

    async def predict(request: Request) -> JSONResponse:
        if not service.authorized(request):
            return _unauthorized()
        body = await _json_object(request)
        if body is None or not isinstance(body.get("tasks"), list):
            return JSONResponse({"error": "expected a JSON object with a list of tasks"}, status_code=400)
        results, version = await run_in_threadpool(service.predictor.predict, body["tasks"])
        return JSONResponse({"results": results, "model_version": version})

    async def receive(request: Request, *, status_code: int) -> JSONResponse:
        if not service.authorized(request):
            return _unauthorized()
        payload = await _json_object(request)
        if payload is None:
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        try:
            event_id, action = await run_in_threadpool(service.store_event, payload)
        except _Ignored as exc:
            log.info("ignored a delivery: %s", exc)
            return JSONResponse({"ignored": str(exc)})
        if event_id is None:
            log.info("duplicate %s delivery ignored", action)
        else:
            log.info("stored %s as event %d", action, event_id)
            service.worker.wake()
        return JSONResponse({"stored": event_id is not None, "event": event_id, "action": action},
                            status_code=status_code)

    async def project_webhook(request: Request) -> JSONResponse:
        return await receive(request, status_code=200)

    async def ml_webhook(request: Request) -> JSONResponse:  # training events sent to the ML backend
        return await receive(request, status_code=201)

    async def status(request: Request) -> JSONResponse:
        if not service.authorized(request):
            return _unauthorized()
        return JSONResponse(await run_in_threadpool(service.status))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if run_worker:
            service.worker.start()
            service.worker.wake()
        try:
            yield
        finally:
            if run_worker:
                await run_in_threadpool(service.worker.stop)

    routes = [
        Route("/", health, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/setup", setup, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/webhook", ml_webhook, methods=["POST"]),
        Route("/webhook/labelstudio", project_webhook, methods=["POST"]),
        Route("/status", status, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def build_service(cfg: ServiceConfig, secret: str) -> Service:
    """The service for ``cfg``: opens the database (schema checked) and the project (it must exist)."""
    from activeadv.app.workspace import Workspace
    from activeadv.service.predict import Predictor
    from activeadv.service.worker import Worker
    from activeadv.training import resolve_device

    ws = Workspace(cfg.database_url)
    ws.project(cfg.project)  # a missing project or stale schema fails here, before the port opens
    worker = Worker(ws, cfg)
    predictor = Predictor(ws, cfg.project, device=str(resolve_device(cfg.device)), batch_size=cfg.predict_batch)
    return Service(ws, cfg, secret, worker, predictor)
