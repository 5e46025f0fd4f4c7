"""The service's worker: stored events -> an incremental sync -> (after enough new labels) a round.

One background thread, woken through a bounded queue.  The queue carries no
data, only "look at the events table": when a flood of deliveries fills it,
further wake-ups are dropped, never events (they are already in the
database).  Every step reads the database, so a service killed at any moment
and started again finds unprocessed events and an unfinished round there and
finishes both.  Label Studio down, or the project lock held by a CLI command:
the step fails, nothing is marked done, and it is tried again after
``retry_seconds``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from activeadv.errors import ActiveAdvError

if TYPE_CHECKING:
    from activeadv.app.workspace import Workspace
    from activeadv.service.config import ServiceConfig

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """What the worker did last (``GET /status``); plain values only."""

    syncs: int = 0
    rounds: int = 0
    events_processed: int = 0
    last_error: str | None = None
    last_round: int | None = None
    busy: str | None = None  # "sync" | "round" while it runs
    history: list[dict[str, object]] = field(default_factory=list)  # the last few steps with their timing


class Worker:
    """Processes stored events in one thread; ``wake()`` is cheap and never blocks the HTTP handlers."""

    def __init__(self, ws: Workspace, cfg: ServiceConfig, *, on_step: Callable[[str], None] | None = None) -> None:
        self.ws = ws
        self.cfg = cfg
        self.state = WorkerState()
        self._queue: queue.Queue[None] = queue.Queue(maxsize=max(1, cfg.queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry = True  # first step: catch up on whatever happened while the service was down
        self._on_step = on_step or (lambda what: None)

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="activeadv-serve-worker", daemon=True)
        self._thread.start()
        self.wake()  # the first step now (catch up, a seed round), not after a retry interval

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Ask for a step soon; dropped when enough wake-ups already wait (the events are in the database)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue.get(timeout=self.cfg.retry_seconds)
            except queue.Empty:
                pass
            while True:  # one step answers every wake-up that is waiting
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            if self._stop.is_set():
                break
            try:
                self.step()
            except Exception:  # the thread must survive anything; the next step tries again
                log.exception("worker step failed")
                self._retry = True

    # ------------------------------------------------------------------- work
    def step(self) -> None:
        """Sync when events wait (or a earlier try failed), then run a round when one is due."""
        project = self.ws.project(self.cfg.project)
        events = self.ws.store.pending_events(project.id)
        if events or self._retry:
            self._sync([e.id for e in events])
        if not self._retry and self.round_due():
            self._round()

    def _sync(self, event_ids: list[int]) -> None:
        from activeadv.app.annotation import sync

        self.state.busy = "sync"
        started = time.monotonic()
        try:
            outcome = sync(self.ws, self.cfg.project)
        except ActiveAdvError as exc:  # Label Studio down, lock held elsewhere: the events stay pending
            self._failed("sync", exc)
            if event_ids:
                self.ws.store.finish_events(event_ids, error=str(exc)[:500])
            return
        finally:
            self.state.busy = None
        self.ws.store.finish_events(event_ids)
        self._retry = False
        self.state.syncs += 1
        self.state.events_processed += len(event_ids)
        self.state.last_error = None
        self._remember("sync", started, events=len(event_ids), labels=outcome.added, retracted=outcome.retracted)
        log.info("synced after %d event(s): %d new label(s), %d retracted", len(event_ids), outcome.added,
                 outcome.retracted)
        self._on_step("sync")

    def round_due(self) -> bool:
        """An interrupted round waits, or ``min_new_labels`` new labels arrived (or every request is answered)."""
        from activeadv import loop

        project = self.ws.project(self.cfg.project)
        store = self.ws.store
        if store.unfinished_round(project.id) is not None:
            return True
        if not store.rounds(project.id):  # the seed round: --seed-round N, else a person's `activeadv round`
            return self.cfg.seed_round is not None
        status = store.status(project.id)
        new = loop.new_labels(store, project, status)
        target = self.cfg.min_new_labels or self.cfg.query_size
        return new >= target or (status.pending == 0 and new > 0)

    def _round(self) -> None:
        from activeadv.app.rounds import RoundPlan, run_round

        plan = RoundPlan(strategy=self.cfg.strategy, query_size=self.cfg.query_size, initial=self.cfg.seed_round,
                         oracle="labelstudio",
                         device=self.cfg.device, checkpoint_dir=self.cfg.checkpoint_dir,
                         train_overrides=dict(self.cfg.train_overrides), execution=self.cfg.execution)
        self.state.busy = "round"
        started = time.monotonic()
        try:
            report = run_round(self.ws, self.cfg.project, plan)
        except ActiveAdvError as exc:  # e.g. Label Studio down while pushing: the round resumes next time
            self._failed("round", exc)
            return
        finally:
            self.state.busy = None
        self.state.rounds += 1
        self.state.last_round = report.result.round
        self.state.last_error = None
        self._remember("round", started, round=report.result.round, selected=len(report.result.selection or []))
        log.info("round %d done: %d item(s) sent to Label Studio", report.result.round,
                 len(report.result.selection or []))
        self._on_step("round")

    def _failed(self, what: str, exc: Exception) -> None:
        self._retry = True
        self.state.last_error = f"{what}: {exc}"
        log.warning("%s failed (%s); trying again in %gs", what, exc, self.cfg.retry_seconds)

    def _remember(self, what: str, started: float, **facts: object) -> None:
        self.state.history.append({"step": what, "seconds": round(time.monotonic() - started, 3),
                                   "at": time.time(), **facts})
        del self.state.history[:-20]
