"""The Label Studio commands end to end through ``CliRunner``, against the real server of ``LABEL_STUDIO_URL``."""

from __future__ import annotations

import os
import socket

import pytest
from click.testing import CliRunner
from ls_gate import TOKEN, URL, require  # noqa: E402  (the gate: skip, or fail in CI)

from activeadv import labelstudio as L
from activeadv.cli import cli
from activeadv.labelstudio.client import _as_dict

pytestmark = pytest.mark.labelstudio


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_link_push_annotate_sync_round_trip(cli_env):
    from activeadv.store import Store

    run("init", "demo", "--dataset", "digits", "-q")
    run("round", "--query-size", "6", "--initial", "6", "-q")  # seed round: 6 random items requested
    out = run("labelstudio", "link").output
    assert "linked to Label Studio project" in out
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        ls_pid = store.get_project().ls_project_id
    try:
        assert "pushed 4 new task(s)" in run("push", "--top", "4", "-q").output
        assert "pushed 2 new task(s)" in run("push", "-q").output
        assert "pushed 0 new task(s)" in run("push", "-q").output
        tasks = [_as_dict(t) for t in client.sdk.tasks.list(project=ls_pid, fields="all")]
        assert len(tasks) == 6 and all(t["data"]["image"].startswith("data:image/png;base64,") for t in tasks)
        assert all(t["predictions"] == [] or t["predictions"][0]["model_version"] == "0" for t in tasks)

        client.sdk.tasks.delete(tasks[0]["id"])  # an admin deletes a task: the next push sends it again
        assert "pushed 1 new task(s)" in run("push", "-q").output

        out = run("annotate-sim", "--accuracy", "1.0", "--limit", "5", "-q").output
        assert "answered 5 task(s)" in out and "1 open" in out
        [(task_id, _)] = client.open_tasks(ls_pid)
        client.annotate(task_id, "not-a-digit")

        out = run("sync", "-q").output
        assert "synced 5 new label(s)" in out and "1 refused" in out and "not-a-digit" in out
        assert "synced 0 new label(s)" in run("sync", "-q").output
        with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
            status = store.status(store.get_project().id)
        assert (status.labeled, status.pending, status.rejected) == (5, 1, 1)

        # an annotation deleted in Label Studio after the sync: its label is retracted, its request open again
        annotated = [t for t in (_as_dict(t) for t in client.sdk.tasks.list(project=ls_pid, fields="all"))
                     if any(a.get("result") and a["result"][0]["value"]["choices"][0] != "not-a-digit"
                            for a in t["annotations"])]
        gone = annotated[0]
        client.sdk.annotations.delete(gone["annotations"][0]["id"])
        out = run("sync", "-q").output
        assert "1 retracted" in out, out
        with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
            project = store.get_project()
            status = store.status(project.id)
            ids, _ = store.labels(project.id)
            history = store.label_rows(project.id, history=True)
        assert (status.labeled, status.pending) == (4, 2) and gone["data"]["item_id"] not in ids
        assert len(history) == 5  # superseded, never deleted
    finally:
        client.sdk.projects.delete(ls_pid)


def test_failures_are_one_line_errors_without_the_token(cli_env, monkeypatch):
    run("init", "demo", "--dataset", "digits", "-q")
    result = run("push", ok=False)
    assert result.exit_code == 1 and "not linked to Label Studio" in result.output

    secret = "wrong-token-123456"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", secret)
    result = run("labelstudio", "link", ok=False)
    assert result.exit_code == 1 and "refused the API token" in result.output
    assert secret not in result.output and len(result.output.strip().splitlines()) == 1

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("labelstudio", "link", "--url", f"http://127.0.0.1:{port}", ok=False)
    assert result.exit_code == 1 and "unreachable" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_rounds_with_the_label_studio_oracle_wired_to_the_store(cli_env):
    """loop.run_round with store_oracle: seed round pushes, a person (simulated) answers, the next round trains."""
    from activeadv.app.annotation import link_project, store_oracle
    from activeadv.app.workspace import Workspace
    from activeadv.loop import RoundOptions, project_dataset, run_round, train_config_for

    run("init", "demo", "--dataset", "digits", "-q")
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    with Workspace(os.environ["ACTIVEADV_DATABASE_URL"]) as ws:
        store = ws.store
        project = link_project(store, store.get_project(), client)
        try:
            data = project_dataset(store, project)
            cfg = train_config_for(project, epochs=1, min_steps=5, unlabeled_min_steps=5, adv="none", device="cpu")
            opts = RoundOptions(strategy="entropy", query_size=5, initial=10)
            oracle = store_oracle(ws, project, data.pool, client)
            run_round(store, project, data, oracle, cfg, opts, cli_env / "ckpt")
            assert client.project_counts(project.ls_project_id)["open"] == 10
            assert len(store.task_ids(store.rounds(project.id)[0].id)) == 10  # the map is in the store

            truth = {int(i): data.class_names[int(t)] for i, t in zip(data.pool.ids, data.pool.targets(data.pool.ids))}
            client.annotate_open_tasks(project.ls_project_id, truth.__getitem__)
            oracle = store_oracle(ws, project, data.pool, client)  # a new process knows only the store
            result = run_round(store, project, data, oracle, cfg, opts, cli_env / "ckpt")
            oracle.commit()
            assert result.labels == 10 and len(result.selection) == 5
            tasks = [_as_dict(t) for t in client.sdk.tasks.list(project=project.ls_project_id, fields="all")]
            assert len(tasks) == 15  # nothing pushed twice although pending requests are re-sent each round
            newest = [t for t in tasks if t["predictions"] and t["predictions"][0]["model_version"] == "1"]  # round 1
            assert len(newest) == 5 and all(0 < t["predictions"][0]["score"] <= 1 for t in newest)
            assert store.get_project(project.name).ls_last_sync is not None
        finally:
            client.sdk.projects.delete(project.ls_project_id)


def test_image_folder_is_served_from_disk(cli_env):
    require(bool(os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")),
            "set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to the server's files root")
    import uuid

    import httpx
    import numpy as np
    from PIL import Image

    from activeadv.store import Store

    files_root = os.environ["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"]
    folder = os.path.join(files_root, f"activeadv-cli-{uuid.uuid4().hex[:8]}")
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(folder, cls))
        for i in range(3):
            Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(os.path.join(folder, cls, f"{i}.png"))
    run("init", "pets", "--dataset", f"folder:{folder}", "-q")
    run("round", "--query-size", "2", "--initial", "2", "-q")
    run("labelstudio", "link", "--files-root", files_root)
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        ls_pid = store.get_project().ls_project_id
    try:
        assert "pushed 2 new task(s)" in run("push", "--files-root", files_root, "-q").output
        for task in client.sdk.tasks.list(project=ls_pid, fields="all"):
            image = _as_dict(task)["data"]["image"]
            assert image.startswith("/data/local-files/?d=")
            resp = httpx.get(URL + image, headers={"Authorization": f"Token {TOKEN}"})  # type: ignore[operator]
            assert resp.status_code == 200 and resp.content[:4] == b"\x89PNG"
    finally:
        client.sdk.projects.delete(ls_pid)


def test_two_pushes_at_once_never_double_a_task(cli_env):
    """Before pushes took the project lock, two at once created every task twice (600 tasks for 300 items)."""
    import subprocess
    import sys

    from activeadv.store import Store

    run("init", "demo", "--dataset", "digits", "-q")
    run("round", "--query-size", "60", "--initial", "60", "-q")  # 60 requested items
    run("labelstudio", "link")
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        ls_pid = store.get_project().ls_project_id
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    try:
        cmd = [sys.executable, "-m", "activeadv", "push", "-q"]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        for code, out, err in outs:  # each either pushed or was told, in one line, that the other one runs
            assert code == 0 or (code == 1 and "already running" in err), (code, out, err)
        run("push", "-q")  # finishes whatever a refused one left
        ids = [t["data"]["item_id"] for t in (_as_dict(t) for t in client.sdk.tasks.list(project=ls_pid))]
        assert len(ids) == 60 and len(set(ids)) == 60
    finally:
        client.sdk.projects.delete(ls_pid)


def test_relinking_after_the_label_studio_project_was_deleted_makes_a_new_one_and_resends(cli_env):
    """The documented fix (`labelstudio link`) failed with 404 on the old project id."""
    from activeadv.store import Store

    run("init", "demo", "--dataset", "digits", "-q")
    run("round", "--query-size", "5", "--initial", "5", "-q")
    run("labelstudio", "link")
    run("push", "-q")
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    url = os.environ["ACTIVEADV_DATABASE_URL"]
    with Store.open(url) as store:
        old = store.get_project().ls_project_id
    client.sdk.projects.delete(old)
    out = run("labelstudio", "link").output
    with Store.open(url) as store:
        new = store.get_project().ls_project_id
    try:
        assert new != old and "5 open request(s) sent again" in out
        ids = sorted(t["data"]["item_id"] for t in (_as_dict(t) for t in client.sdk.tasks.list(project=new)))
        with Store.open(url) as store:
            pending = sorted(int(i) for _, sel in store.pending(store.get_project().id) for i in sel.item_ids)
        assert ids == pending and len(ids) == 5
        assert "pushed 0 new task(s)" in run("push", "-q").output  # nothing doubled afterwards
    finally:
        client.sdk.projects.delete(new)
