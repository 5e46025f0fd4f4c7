"""Against a REAL Label Studio server: ``LABEL_STUDIO_URL`` with token ``LABEL_STUDIO_API_KEY``.

CI starts one with ``activeadv labelstudio start --port 8089`` before pytest (see
docs/labelstudio.md).  Every test makes its own project and deletes it after, so
the tests can share one server and run in any order.  The restart test starts a
second, private server (own data dir and port) with ``activeadv.lsserver``.
"""

from __future__ import annotations

import base64
import io
import socket
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from ls_gate import FILES_ROOT, TOKEN, URL, require  # noqa: E402  (the gate: skip, or fail in CI)

from activeadv import labelstudio as L
from activeadv import lsserver
from activeadv.errors import LabelStudioError
from activeadv.labelstudio.client import _as_dict

pytestmark = pytest.mark.labelstudio

CLASSES = ["zero", "one", "two"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def digit(i: int) -> np.ndarray:
    """A recognisable fake 8x8 'digit' in [0, 1]."""
    x = np.zeros((1, 8, 8), np.float32)
    x[0, i % 8, :] = 1.0
    return x


def items(ids, predicted="one", score=0.75) -> list[L.PushItem]:
    return [L.PushItem(i, L.png_data_uri(digit(i)), predicted, score) for i in ids]


@pytest.fixture(scope="module")
def client() -> L.LabelStudioClient:
    return L.connect(URL, TOKEN)  # type: ignore[arg-type]


@pytest.fixture()
def project(client):
    pid = client.ensure_project(f"activeadv-test-{uuid.uuid4().hex[:8]}", CLASSES)
    yield pid
    try:
        client.sdk.projects.delete(pid)
    except Exception:  # already deleted by the test
        pass


def all_tasks(client, pid) -> list[dict]:
    return [_as_dict(t) for t in client.sdk.tasks.list(project=pid, fields="all")]


def second_user(client) -> int:
    email = "activeadv-second@example.com"
    for user in client.sdk.users.list():
        if user.email == email:
            return int(user.id)
    return int(client.sdk.users.create(email=email, username="activeadv-second", password=uuid.uuid4().hex).id)


# ------------------------------------------------------------------ projects
def test_connect_reports_the_token_user(client):
    assert client.user_id is not None and client.user_email


def test_project_config_has_the_class_names_as_single_choices(client, project):
    assert client.project_choices(project) == CLASSES
    assert client.ensure_project("ignored", CLASSES, project_id=project) == project


def test_linking_a_project_with_other_choices_is_refused(client, project):
    with pytest.raises(LabelStudioError, match="offers choices"):
        client.ensure_project("x", ["cat", "dog"], project_id=project)


def test_deleted_project_is_a_one_line_error(client):
    pid = client.ensure_project("activeadv-test-deleted", CLASSES)
    client.sdk.projects.delete(pid)
    with pytest.raises(LabelStudioError, match="404") as info:
        client.ensure_project("x", CLASSES, project_id=pid)
    assert "\n" not in str(info.value)
    with pytest.raises(LabelStudioError, match="404"):
        client.push_tasks(pid, items([1]))
    with pytest.raises(LabelStudioError):
        client.pull_annotations(pid, CLASSES)


def test_task_listing_stops_at_the_last_page(client, project):
    """Exactly two full pages: the SDK's pager asked for a third (a 404 and a traceback in the server log)."""
    client.push_tasks(project, items(range(2 * L.TASK_PAGE)))
    pages: list[int] = []
    real = client.sdk.tasks.list

    def counting(*args, **kwargs):
        pages.append(kwargs.get("page", 1))
        return real(*args, **kwargs)

    client.sdk.tasks.list = counting  # type: ignore[method-assign]
    try:
        tasks = client._tasks(project)
    finally:
        client.sdk.tasks.list = real  # type: ignore[method-assign]
    assert sorted(t["data"]["item_id"] for t in tasks) == list(range(2 * L.TASK_PAGE))
    assert pages == [1, 2]


# --------------------------------------------------------------------- push
def test_push_creates_tasks_with_item_id_image_and_prediction(client, project):
    created: dict[int, int] = {}
    mapping = client.push_tasks(project, items([5, 3, 9], score=0.625), model_version=2,
                                on_created=created.update).tasks
    assert set(mapping) == {5, 3, 9} and created == mapping
    tasks = {t["data"]["item_id"]: t for t in all_tasks(client, project)}
    assert set(tasks) == {5, 3, 9}
    for item_id, task in tasks.items():
        assert task["id"] == mapping[item_id]
        uri = task["data"]["image"]
        from PIL import Image

        img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert img.size == (64, 64)  # 8x8 upscaled for people
        [pred] = task["predictions"]
        assert pred["model_version"] == "2" and pred["score"] == pytest.approx(0.625)
        assert pred["result"][0]["value"]["choices"] == ["one"]
    # the labeling stream pre-selects only the project's model version: each push moves it to the newest round
    assert client.sdk.projects.get(project).model_version == "2"
    client.push_tasks(project, items([4], score=0.5), model_version=3)
    assert client.sdk.projects.get(project).model_version == "3"


def test_repush_creates_no_duplicates_even_without_the_map(client, project):
    first = client.push_tasks(project, items(range(0, 60)), model_version=1).tasks  # two chunks of 50
    result = client.push_tasks(project, items(range(0, 70)), model_version=1, known={})  # map lost
    again = result.tasks
    assert {k: again[k] for k in first} == first and result.created == list(range(60, 70))
    ids = [t["data"]["item_id"] for t in all_tasks(client, project)]
    assert sorted(ids) == list(range(70))


def test_push_interrupted_after_server_side_import_is_reconciled(client, project, monkeypatch):
    """The import of chunk 2 reaches the server but the answer is lost: the push looks the chunk up by item id
    and goes on (before, it stopped, and the advised re-run could double tasks still being imported)."""
    real = client.sdk.projects.import_tasks
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 2:
            raise httpx.RemoteProtocolError("server disconnected without sending a response")
        return result

    monkeypatch.setattr(client.sdk.projects, "import_tasks", flaky)
    saved: dict[int, int] = {}
    result = client.push_tasks(project, items(range(120)), model_version=1, on_created=saved.update)
    assert calls["n"] == 3 and result.created == list(range(120)) and saved == result.tasks
    monkeypatch.setattr(client.sdk.projects, "import_tasks", real)
    again = client.push_tasks(project, items(range(120)), model_version=1, known=saved, on_created=saved.update)
    assert again.created == [] and again.tasks == saved
    ids = sorted(t["data"]["item_id"] for t in all_tasks(client, project))
    assert ids == list(range(120))


def test_task_deleted_by_admin_is_pushed_again(client, project):
    mapping = client.push_tasks(project, items([1, 2]), model_version=1).tasks
    client.sdk.tasks.delete(mapping[1])
    result = client.push_tasks(project, items([1, 2]), model_version=1, known=mapping)
    again = result.tasks
    assert result.created == [1]
    assert again[2] == mapping[2] and again[1] != mapping[1]
    assert sorted(t["data"]["item_id"] for t in all_tasks(client, project)) == [1, 2]
    assert client.existing_task_ids(project) == set(again.values())


def test_push_repairs_duplicates_and_keeps_the_answered_copy(client, project):
    """Duplicates left by an older version (or a crash between import and answer) are removed by the next push."""
    payload = [L.task_payload(i, 1) for i in items([7, 7, 7, 8])]
    ids = list(client.sdk.projects.import_tasks(project, request=payload, return_task_ids=True).task_ids)
    answered = ids[1]
    client.annotate(answered, "two")
    mapping = client.push_tasks(project, items([7, 8]), model_version=1, known={7: ids[0]}).tasks
    assert mapping[7] == answered  # people's answer wins over the caller's map
    left = sorted((t["data"]["item_id"], t["id"]) for t in all_tasks(client, project))
    assert left == [(7, answered), (8, ids[3])]


# --------------------------------------------------------------------- pull
def test_pull_labels_skips_rejects_majority_ties_and_nothing_new_twice(client, project):
    m = client.push_tasks(project, items(range(6)), model_version=1).tasks
    other = second_user(client)
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["two"]}}]
    client.annotate(m[0], "two")
    client.annotate(m[1], None)  # skipped
    client.annotate(m[2], "zebra")  # not a class
    client.annotate(m[3], "zero")  # tie: zero vs one
    client.sdk.annotations.create(m[3], result=[dict(result[0], value={"choices": ["one"]})], completed_by=other)
    client.annotate(m[4], "two")  # majority is not possible with 2 voters unless they agree
    client.sdk.annotations.create(m[4], result=result, completed_by=other)

    first = client.pull_annotations(project, CLASSES)
    labels = {a.item_id: (a.label, a.skipped) for a in first.annotations}
    assert labels == {0: ("two", False), 1: (None, True), 4: ("two", False)}
    assert [(r.item_id, r.label) for r in first.rejects] == [(2, "zebra")]
    assert first.ties == [3]
    assert all(a.source == "annotator" and a.external_id and a.created_at for a in first.annotations)
    assert {a.annotator for a in first.votes if a.item_id == 4} == {client.user_email, "activeadv-second@example.com"}
    assert client.project_counts(project) == {"tasks": 6, "open": 1, "annotated": 4, "skipped": 1}

    second = client.pull_annotations(project, CLASSES, first.cursor)
    assert second.annotations == [] and second.rejects == [] and second.disagreements == []
    assert second.cursor == first.cursor

    # an annotator corrects a label: it comes back as a newer version of the same annotation
    ann_id = int(next(a.external_id for a in first.annotations if a.item_id == 0))
    import time

    time.sleep(1.2)
    client.sdk.annotations.update(ann_id, result=[dict(result[0], value={"choices": ["zero"]})])
    third = client.pull_annotations(project, CLASSES, first.cursor)
    [fixed] = third.annotations
    assert fixed.item_id == 0 and fixed.label == "zero" and fixed.external_id.startswith(f"{ann_id}@")
    assert third.cursor > first.cursor


def test_simulated_annotator_answers_open_tasks_only_once(client, project):
    m = client.push_tasks(project, items(range(8)), model_version=1).tasks
    truth = {i: CLASSES[i % 3] for i in m}
    assert client.annotate_open_tasks(project, truth.__getitem__, limit=5) == 5
    assert client.annotate_open_tasks(project, truth.__getitem__) == 3
    assert client.annotate_open_tasks(project, truth.__getitem__) == 0
    pulled = client.pull_annotations(project, CLASSES)
    assert {a.item_id: a.label for a in pulled.annotations} == truth


def test_oracle_round_trip(client, project):
    from activeadv.records import Selection

    refs = {i: L.png_data_uri(digit(i)) for i in range(10)}
    oracle = L.LabelStudioOracle(client, project, CLASSES, image_ref=lambda ids: {i: refs[i] for i in ids}, top_k=4)
    sel = Selection(np.arange(10), np.linspace(1, 0, 10), "margin", predicted=np.zeros(10, np.int64),
                    confidence=np.full(10, 0.5))
    oracle.request(sel, round_id=1)
    oracle.request(sel, round_id=1)  # a retried request doubles nothing
    assert client.project_counts(project)["tasks"] == 4
    client.annotate_open_tasks(project, lambda item: "two")
    collected = oracle.collect()
    assert sorted(a.item_id for a in collected if a.present is None) == [0, 1, 2, 3]  # the labels
    assert {a.item_id: len(a.present) for a in collected if a.present is not None} == {0: 1, 1: 1, 2: 1, 3: 1}
    assert oracle.collect() == []


# ---------------------------------------------------------------- images
def test_image_files_are_served_through_local_files_storage(client, project):
    require(bool(FILES_ROOT), "set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to the server's files root")
    from PIL import Image

    folder = Path(FILES_ROOT) / f"activeadv-test-{uuid.uuid4().hex[:8]}"  # type: ignore[arg-type]
    folder.mkdir(parents=True)
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(folder / "a.png")
    url = L.local_file_url(folder / "a.png", FILES_ROOT)  # type: ignore[arg-type]
    headers = {"Authorization": f"Token {TOKEN}"}
    assert httpx.get(URL + url, headers=headers).status_code == 404  # no storage yet: Label Studio refuses
    client.ensure_local_storage(project, folder)
    assert client.ensure_local_storage(project, folder) == client.ensure_local_storage(project, folder)
    client.push_tasks(project, [L.PushItem(1, url, "one", 0.5)])
    resp = httpx.get(URL + url, headers=headers)
    assert resp.status_code == 200 and resp.content[:4] == b"\x89PNG"
    assert client.project_counts(project)["tasks"] == 1  # the storage is never synced into tasks


# ---------------------------------------------------------------- failures
def test_wrong_token_is_a_one_line_error_without_the_token():
    secret = "wrong-" + uuid.uuid4().hex
    with pytest.raises(LabelStudioError, match="refused the API token") as info:
        L.connect(URL, secret)  # type: ignore[arg-type]
    assert secret not in str(info.value) and "\n" not in str(info.value)


def test_unreachable_server_is_a_one_line_error():
    with pytest.raises(LabelStudioError, match="unreachable") as info:
        L.connect(f"http://127.0.0.1:{free_port()}", TOKEN, max_retries=0)
    assert TOKEN not in str(info.value)  # type: ignore[operator]


@pytest.mark.slow
def test_server_stopped_mid_push_then_restarted(tmp_path):
    """A private server: push part, stop it, the push fails in one line, restart, the re-push completes exactly."""
    require(lsserver.label_studio_bin().exists(), "Label Studio is not installed in $ACTIVEADV_HOME/ls-venv")
    cfg = lsserver.ServerConfig(data_dir=tmp_path / "ls", port=free_port(), token="restart-" + uuid.uuid4().hex,
                                files_root=tmp_path)
    info = lsserver.start(cfg, timeout=240)
    try:
        own = L.connect(info.url, cfg.token, max_retries=0)
        pid = own.ensure_project("restart", CLASSES)
        saved: dict[int, int] = {}
        real = own.sdk.projects.import_tasks
        calls = {"n": 0}

        def stop_after_first(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                assert lsserver.stop(cfg.data_dir)
            return real(*args, **kwargs)

        own.sdk.projects.import_tasks = stop_after_first  # type: ignore[method-assign]
        with pytest.raises(LabelStudioError, match="unreachable"):
            own.push_tasks(pid, items(range(80)), model_version=1, on_created=saved.update)
        assert len(saved) == 50 and not lsserver.status(cfg.data_dir)["running"]
        with pytest.raises(LabelStudioError, match="unreachable"):
            own.pull_annotations(pid, CLASSES)

        info = lsserver.start(cfg, timeout=120)  # restart: same data, same token
        own = L.connect(info.url, cfg.token)
        own.push_tasks(pid, items(range(80)), model_version=1, known=saved, on_created=saved.update)
        ids = sorted(t["data"]["item_id"] for t in all_tasks(own, pid))
        assert ids == list(range(80)) and len(saved) == 80
        _assert_private(cfg.data_dir)
    finally:
        lsserver.stop(cfg.data_dir)
    assert not lsserver.status(cfg.data_dir)["healthy"]


def _assert_private(data_dir: Path) -> None:
    """The data dir holds the token, the admin password and the server's database: this user's only."""
    assert data_dir.stat().st_mode & 0o777 == 0o700
    databases = list(data_dir.glob("*.sqlite3"))
    assert databases, sorted(p.name for p in data_dir.iterdir())
    for path in [data_dir / "token", data_dir / "admin-password", *databases]:
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"


def test_the_test_server_data_dir_is_private():
    """The server scripts/test.sh started (through `activeadv labelstudio start`) keeps its data private."""
    import os

    data = os.environ.get("ACTIVEADV_TEST_LS_DATA")
    require(bool(data), "ACTIVEADV_TEST_LS_DATA is not set (scripts/test.sh sets it)")
    _assert_private(Path(data))
