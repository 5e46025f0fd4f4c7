"""``activeadv serve`` against the real Label Studio of ``LABEL_STUDIO_URL``: webhooks, events, ML backend, rounds.

The service runs in-process (uvicorn in a thread, on a free port of 127.0.0.1) so that a test can stop it
between storing an event and acting on it.  Label Studio must be allowed to call 127.0.0.1
(``SSRF_PROTECTION_ENABLED=false`` in its environment).  Tiny on purpose: digits, one epoch, entropy, 4-6 items.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from ls_gate import TOKEN, URL  # noqa: E402  (the gate: skip, or fail in CI)
from waiting import free_port, wait_for  # noqa: E402

from activeadv import labelstudio as L
from activeadv.cli import cli
from activeadv.labelstudio.client import _as_dict

pytestmark = pytest.mark.labelstudio

SECRET = "serve-test-secret-0123456789"
FAST = {"epochs": 1, "min_steps": 15, "unlabeled_min_steps": 15}
ROUND_FAST = ("--epochs", "1", "--min-steps", "15", "--unlabeled-steps", "15", "--strategy", "entropy", "-q")


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


class Running:
    """One service in a thread; ``stop()`` is a clean uvicorn shutdown (the worker's step in flight finishes)."""

    def __init__(self, *, run_worker: bool = True, min_new_labels: int | None = 4, port: int | None = None,
                 seed_round: int | None = None) -> None:
        import uvicorn

        from activeadv.service import ServiceConfig
        from activeadv.service.http import build_service, create_app

        self.port = port or free_port()
        self.cfg = ServiceConfig(port=self.port, min_new_labels=min_new_labels, seed_round=seed_round,
                                 strategy="entropy", query_size=4,
                                 device="cpu", train_overrides=dict(FAST), retry_seconds=1.0)
        self.service = build_service(self.cfg, SECRET)
        self.url = self.cfg.url
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.service, run_worker=run_worker), host="127.0.0.1",
                                                   port=self.port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 30)

    def post(self, path: str, payload: Any, secret: str | None = SECRET) -> httpx.Response:
        headers = {} if secret is None else {"X-ActiveAdv-Secret": secret}
        return httpx.post(self.url + path, json=payload, headers=headers, timeout=60)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.service.ws.close()


@pytest.fixture()
def seeded(cli_env) -> Iterator[tuple[Any, int]]:
    """A digits project linked to Label Studio with a seed round of 6 tasks; the LS project is deleted after."""
    from activeadv.store import Store

    run("init", "demo", "--dataset", "digits", "--label-studio", URL, "-q")  # type: ignore[arg-type]
    run("round", "--initial", "6", "--query-size", "4", *ROUND_FAST)
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        ls_pid = int(store.get_project().ls_project_id)  # type: ignore[arg-type]
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    yield client, ls_pid
    client.sdk.projects.delete(ls_pid)


@pytest.fixture()
def service(seeded) -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


def store():
    from activeadv.store import Store

    return Store.open(os.environ["ACTIVEADV_DATABASE_URL"])


def labeled_items() -> set[int]:
    with store() as s:
        ids, _ = s.labels(s.get_project().id)
    return {int(i) for i in ids}


def register(running: Running, ml_backend: bool = False) -> None:
    from activeadv.app.webhooks import register as do_register
    from activeadv.app.workspace import Workspace

    with Workspace() as ws:
        do_register(ws, None, running.url, SECRET, header="X-ActiveAdv-Secret", basic_user="activeadv",
                    ml_backend=ml_backend)


def open_tasks(client, ls_pid: int) -> list[tuple[int, int]]:
    return [(t, i) for t, i in client.open_tasks(ls_pid) if i is not None]


def truth(item_id: int) -> str:
    from activeadv.app.workspace import Workspace

    with Workspace() as ws:
        pool = ws.dataset(ws.project()).pool
        return str(int(pool.targets([item_id])[0]))


# ------------------------------------------------------------------------------------------------- auth
def test_requests_without_the_secret_are_refused_and_the_secret_is_never_logged(service, caplog):
    caplog.set_level(logging.DEBUG)
    payload = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}}
    assert service.post("/webhook/labelstudio", payload, secret=None).status_code == 401
    assert service.post("/webhook/labelstudio", payload, secret="wrong-secret-wrong-secret").status_code == 401
    assert service.post("/predict", {"tasks": []}, secret=None).status_code == 401
    assert service.post("/webhook", payload, secret=None).status_code == 401
    assert httpx.get(service.url + "/status").status_code == 401
    assert httpx.get(service.url + "/health").json()["status"] == "UP"
    with store() as s:
        assert s.events(s.get_project().id) == []  # refused deliveries are not stored
    assert "refused POST /webhook/labelstudio" in caplog.text
    assert SECRET not in caplog.text and "wrong-secret" not in caplog.text


# --------------------------------------------------------------------- stored before acting, dedupe
def test_an_event_is_stored_before_acting_and_a_restart_processes_it_once(seeded):
    client, ls_pid = seeded
    task_id, item_id = open_tasks(client, ls_pid)[0]
    ann_id = client.annotate(task_id, truth(item_id))
    ann = _as_dict(client.sdk.annotations.get(ann_id))
    payload = {"action": "ANNOTATION_CREATED", "project": {"id": ls_pid}, "annotation": ann,
               "task": {"id": task_id, "data": {"item_id": item_id}}}

    crashed = Running(run_worker=False)  # stores, never acts: a service killed right after the answer
    try:
        first = crashed.post("/webhook/labelstudio", payload)
        again = crashed.post("/webhook/labelstudio", payload)  # Label Studio delivers it twice
    finally:
        crashed.stop()
    assert first.status_code == 200 and first.json()["stored"] is True
    assert again.status_code == 200 and again.json()["stored"] is False
    with store() as s:
        [event] = s.events(s.get_project().id)
    assert event.processed_at is None and item_id not in labeled_items()

    restarted = Running()
    try:
        wait_for(lambda: item_id in labeled_items(), 30)
        with store() as s:
            wait_for(lambda: s.pending_events(s.get_project().id) == [], 10)
            [event] = s.events(s.get_project().id)
        assert event.processed_at is not None and event.attempts == 1
        assert restarted.post("/webhook/labelstudio", payload).json()["stored"] is False  # a late duplicate
    finally:
        restarted.stop()
    with store() as s:
        assert len(s.events(s.get_project().id)) == 1
        assert len([r for r in s.label_rows(s.get_project().id, history=True) if r.item_id == item_id]) == 1


def test_a_flood_of_deliveries_is_stored_once_each_and_synced_in_few_steps(seeded, record_property):
    """2,000 deliveries (500 distinct changes, each delivered 4 times) from 8 threads at once: each change is
    stored once, every one is processed, the label is in SQL, /health answers throughout, and the worker
    needs far fewer syncs than events (wake-ups coalesce; the events wait in SQL, not in the bounded queue)."""
    from concurrent.futures import ThreadPoolExecutor

    client, ls_pid = seeded
    task_id, item_id = open_tasks(client, ls_pid)[0]
    ann = _as_dict(client.sdk.annotations.get(client.annotate(task_id, truth(item_id))))
    payloads = [{"action": "ANNOTATION_UPDATED", "project": {"id": ls_pid},
                 "annotation": {**ann, "updated_at": f"2026-11-26T07:{k // 60:02d}:{k % 60:02d}.000000Z"},
                 "task": {"id": task_id, "data": {"item_id": item_id}}} for k in range(500)]
    deliveries = [p for p in payloads for _ in range(4)]
    running = Running(min_new_labels=10_000)  # no round: this is about events
    health: list[int] = []
    try:
        with httpx.Client(timeout=60) as http:
            def deliver(payload: dict) -> bool:
                answer = http.post(running.url + "/webhook/labelstudio", json=payload,
                                   headers={"X-ActiveAdv-Secret": SECRET})
                assert answer.status_code == 200, answer.text
                return bool(answer.json()["stored"])

            flooding = threading.Event()
            flooding.set()

            def probe_health() -> None:  # a second client asking while the flood is on
                with httpx.Client(timeout=60) as other:
                    while flooding.is_set():
                        health.append(other.get(running.url + "/health").status_code)
                        time.sleep(0.1)

            prober = threading.Thread(target=probe_health)
            started = time.monotonic()
            prober.start()
            with ThreadPoolExecutor(8) as pool:
                stored = list(pool.map(deliver, deliveries))
            seconds = time.monotonic() - started
            flooding.clear()
            prober.join(60)
        assert sum(stored) == 500 and health and set(health) == {200}
        with store() as s:
            wait_for(lambda: s.pending_events(s.get_project().id) == [], 120, every=0.5)
            events = s.events(s.get_project().id)
        assert len(events) == 500 and all(e.processed_at is not None for e in events)
        assert item_id in labeled_items()
        syncs = running.service.worker.state.syncs
        assert 0 < syncs < 100
        record_property("flood_deliveries_per_s", round(len(deliveries) / seconds, 1))
        record_property("flood_syncs", syncs)
    finally:
        running.stop()


# --------------------------------------------------------------- real webhooks: labels, deletes
def test_label_studio_webhooks_bring_labels_and_deletions_to_sql(service, seeded):
    client, ls_pid = seeded
    register(service)
    register(service)  # registering again updates, never doubles deliveries
    hooks = [h for h in client.sdk.webhooks.list(project=str(ls_pid)) if h.url.startswith(service.url)]
    assert len(hooks) == 1

    task_id, item_id = open_tasks(client, ls_pid)[0]
    ann_id = client.annotate(task_id, truth(item_id))
    wait_for(lambda: item_id in labeled_items(), 30)

    client.sdk.annotations.delete(ann_id)  # Label Studio sends ANNOTATIONS_DELETED
    wait_for(lambda: item_id not in labeled_items(), 30)
    with store() as s:
        project = s.get_project()
        actions = [e.action for e in s.events(project.id)]
        history = [r for r in s.label_rows(project.id, history=True) if r.item_id == item_id]
    assert "ANNOTATION_CREATED" in actions and "ANNOTATIONS_DELETED" in actions
    assert len(history) == 1  # retracted (superseded), never deleted


def test_disagreements_between_annotators_are_stored_and_reported(service, seeded, tmp_path):
    client, ls_pid = seeded
    register(service)
    other = client.sdk.users.create(email=f"second-{ls_pid}@activeadv.local", username=f"second{ls_pid}",
                                    first_name="Second")
    task_id, item_id = open_tasks(client, ls_pid)[0]
    right = truth(item_id)
    wrong = str((int(right) + 1) % 10)
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [wrong]}}]
    client.sdk.annotations.create(task_id, result=result, completed_by=int(other.id))  # type: ignore[call-arg]
    client.annotate(task_id, right)
    with store() as s:
        pid = s.get_project().id
        rows = wait_for(lambda: s.disagreements(pid), 30)
    [row] = rows
    assert row.item_id == item_id and row.tie and row.votes == {right: 1, wrong: 1} and "tie" in row.rule
    assert "1 item(s) where annotators disagree" in run("status").output
    run("report", "--out", str(tmp_path / "rep"))
    assert f"{item_id}," in (tmp_path / "rep" / "disagreements.csv").read_text()


# ------------------------------------------------------------------------------------- ML backend
def test_label_studio_accepts_the_predict_payload(seeded, cli_env):
    client, ls_pid = seeded
    run("annotate-sim", "-q")
    run("round", "--initial", "6", "--query-size", "4", *ROUND_FAST)  # round 1: a model to predict with
    running = Running(min_new_labels=100)
    try:
        register(running, ml_backend=True)  # Label Studio checks /health and /setup here
        # tasks of earlier rounds get the current model's guess when an annotator opens them
        assert _as_dict(client.sdk.projects.get(ls_pid))["evaluate_predictions_automatically"] is True
        with store() as s:  # an item nobody was asked about yet: a task an admin adds by hand
            item_id = int(s.candidates(s.get_project().id)[0])
        [task_id] = client.sdk.projects.import_tasks(ls_pid, request=[{"data": {"image": _image(item_id),
                                                                                "item_id": item_id}}],
                                                     return_task_ids=True).task_ids
        client.sdk.actions.create(id="retrieve_tasks_predictions", project=ls_pid,
                                  selected_items={"all": False, "included": [task_id]})
        task = _as_dict(client.sdk.tasks.get(task_id))
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "1" and 0.0 < prediction["score"] <= 1.0
        assert prediction["result"][0]["value"]["choices"][0] in [str(d) for d in range(10)]
    finally:
        running.stop()


def _image(item_id: int) -> str:
    from activeadv.app.workspace import Workspace
    from activeadv.labelstudio import pool_image_refs

    with Workspace() as ws:
        return pool_image_refs(ws.dataset(ws.project()).pool, [item_id])[item_id]


# ----------------------------------------------------------------------------- restart mid-round
def test_a_round_killed_before_its_push_is_finished_by_the_service(seeded):
    from activeadv.app.rounds import RoundPlan, run_round
    from activeadv.app.workspace import Workspace

    client, ls_pid = seeded
    run("annotate-sim", "-q")

    class Killed(Exception):
        pass

    def die(phase: str) -> None:
        if phase == "selected":
            raise Killed

    with Workspace() as ws, pytest.raises(Killed):
        run_round(ws, None, RoundPlan(strategy="entropy", query_size=4, device="cpu", train_overrides=dict(FAST)),
                  on_phase=die)
    assert client.project_counts(ls_pid)["tasks"] == 6
    running = Running(min_new_labels=100)
    try:
        wait_for(lambda: client.project_counts(ls_pid)["tasks"] == 10, 60, every=0.5)
        with store() as s:  # the round's last step (a final collect) follows the push
            wait_for(lambda: s.unfinished_round(s.get_project().id) is None, 30)
            assert [r.number for r in s.rounds(s.get_project().id)] == [0, 1]  # resumed, not a new round
    finally:
        running.stop()


def test_a_project_without_rounds_waits_or_gets_its_seed_round_from_the_service(cli_env):
    """Without --seed-round the service leaves the first round to a person; with it, the service sends that many
    random items to Label Studio by itself (round 0), and only once."""
    from activeadv.store import Store

    run("init", "fresh", "--dataset", "digits", "--label-studio", URL, "-q")  # type: ignore[arg-type]
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as s:
        ls_pid = int(s.get_project().ls_project_id)  # type: ignore[arg-type]
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    try:
        waiting = Running()
        try:
            wait_for(lambda: waiting.service.worker.state.history, 30, every=0.2)  # its first step ran
            assert client.project_counts(ls_pid)["tasks"] == 0
            with store() as s:
                assert s.rounds(s.get_project().id) == []
        finally:
            waiting.stop()
        seeding = Running(seed_round=6)
        try:
            wait_for(lambda: client.project_counts(ls_pid)["tasks"] == 6, 120, every=0.5)
            with store() as s:
                wait_for(lambda: s.unfinished_round(s.get_project().id) is None, 30)
                assert [r.number for r in s.rounds(s.get_project().id)] == [0]
            seeding.service.worker.wake()
            time.sleep(2)  # another step: the seed round is not repeated
            assert client.project_counts(ls_pid)["tasks"] == 6
        finally:
            seeding.stop()
    finally:
        client.sdk.projects.delete(ls_pid)


# ------------------------------------------------------------------------------------- full flow
def test_annotations_through_the_api_run_rounds_by_themselves(service, seeded, record_property):
    client, ls_pid = seeded
    register(service)
    to_sql: list[float] = []
    to_tasks: list[float] = []
    tasks_before = 6
    for _ in range(2):  # two rounds of 4 labels each
        answered = open_tasks(client, ls_pid)[:4]
        assert len(answered) == 4
        for task_id, item_id in answered:
            start = time.monotonic()
            client.annotate(task_id, truth(item_id))
            wait_for(lambda item=item_id: item in labeled_items(), 30, every=0.02)
            to_sql.append(time.monotonic() - start)
        start = time.monotonic()
        wait_for(lambda n=tasks_before: client.project_counts(ls_pid)["tasks"] >= n + 4, 180, every=0.25)
        to_tasks.append(time.monotonic() - start)
        tasks_before += 4
    with store() as s:  # the tasks are out before the round's last step (a final collect) marks it done
        wait_for(lambda: [r.state for r in s.rounds(s.get_project().id)] == ["done"] * 3, 30)
        rounds = s.rounds(s.get_project().id)
    assert rounds[-1].labels_used == 8
    record_property("submit_to_sql_median_s", statistics.median(to_sql))
    record_property("nth_label_to_new_tasks_s", to_tasks)
    print(f"\nsubmit -> label in SQL: median {statistics.median(to_sql):.3f}s over {len(to_sql)} "
          f"(min {min(to_sql):.3f}, max {max(to_sql):.3f}); N-th label -> new tasks: "
          f"{', '.join(f'{t:.2f}s' for t in to_tasks)}")


# ------------------------------------------------------------------------- Label Studio down
def test_a_push_refused_while_label_studio_is_down_is_retried_and_nothing_is_lost(seeded, monkeypatch):
    from activeadv.errors import LabelStudioError
    from activeadv.labelstudio.client import LabelStudioClient

    client, ls_pid = seeded
    run("annotate-sim", "-q")  # 6 labels waiting: the service's first step runs round 1
    real_push = LabelStudioClient.push_tasks
    calls: list[int] = []

    def down_once(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise LabelStudioError("Label Studio at http://127.0.0.1:8092 is unreachable (simulated)")
        return real_push(self, *args, **kwargs)

    monkeypatch.setattr(LabelStudioClient, "push_tasks", down_once)
    running = Running()
    try:
        wait_for(lambda: client.project_counts(ls_pid)["tasks"] == 10, 120, every=0.5)
        with store() as s:
            wait_for(lambda: s.unfinished_round(s.get_project().id) is None, 30)
            rounds = s.rounds(s.get_project().id)
        assert len(calls) >= 2 and [r.number for r in rounds] == [0, 1]  # the same round, resumed, not a new one
        # the worker counts the round just after the store marks it done: wait for that, do not race it
        wait_for(lambda: running.service.worker.state.rounds == 1, 30)
        assert running.service.worker.state.last_error is None
    finally:
        running.stop()


# ------------------------------------------------------------------------------------------- CLI
def test_serve_detach_register_status_stop(seeded, cli_env, monkeypatch):
    client, ls_pid = seeded
    monkeypatch.delenv("ACTIVEADV_WEBHOOK_SECRET", raising=False)
    port = free_port()
    state = cli_env / "serve-state"
    out = run("serve", "--port", str(port), "--strategy", "entropy", "--query-size", "4", "--min-new-labels", "4",
              "--device", "cpu", "--detach", "--register", "--state-dir", str(state)).output
    try:
        assert f"registered webhook http://127.0.0.1:{port}/webhook/labelstudio" in out
        secret_file = state / "webhook-secret"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_text().strip()
        assert secret not in out
        assert [b.url for b in client.sdk.ml.list(project=ls_pid)] == [f"http://127.0.0.1:{port}"]
        # only the secured webhook: the one Label Studio adds for a new ML backend (no secret) is removed
        assert [h.url for h in client.sdk.webhooks.list(project=str(ls_pid))] == \
            [f"http://127.0.0.1:{port}/webhook/labelstudio"]
        out = run("serve", "status", "--state-dir", str(state)).output
        assert f"running at http://127.0.0.1:{port}" in out and "healthy" in out and secret not in out

        task_id, item_id = open_tasks(client, ls_pid)[0]
        client.annotate(task_id, truth(item_id))
        wait_for(lambda: item_id in labeled_items(), 30)
    finally:
        assert "stopped" in run("serve", "stop", "--state-dir", str(state)).output
    assert "not running" in run("serve", "status", "--state-dir", str(state)).output
    assert "no service was running" in run("serve", "stop", "--state-dir", str(state)).output
    log_text = (state / "serve.log").read_text()
    assert secret not in log_text and "synced after" in log_text
