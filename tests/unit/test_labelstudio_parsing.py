"""Parsing Label Studio JSON without a server: canned task payloads as ``tasks.list(fields="all")`` returns them."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest
from label_studio_sdk.core.api_error import ApiError

from activeadv import labelstudio as L
from activeadv.errors import LabelStudioError
from activeadv.labelstudio.client import _errors
from activeadv.records import Selection

CLASSES = ["cat", "dog", "bird"]
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ann(ann_id: int, label: str | list[str] | None, *, user: int | dict = 1, at: float = 0,
        updated: float | None = None, cancelled: bool = False, from_name: str = "label") -> dict:
    labels = [label] if isinstance(label, str) else (label or [])
    result = [] if label is None else [{"from_name": from_name, "to_name": "image", "type": "choices",
                                        "value": {"choices": labels}}]
    return {"id": ann_id, "result": result, "completed_by": user, "was_cancelled": cancelled,
            "created_at": ts(at), "updated_at": ts(at if updated is None else updated)}


def task(task_id: int, item_id, *annotations: dict) -> dict:
    return {"id": task_id, "data": {"image": "data:image/png;base64,AAAA", "item_id": item_id},
            "annotations": list(annotations)}


USERS = {1: "ann@example.com", 2: "bob@example.com", 3: "eve@example.com"}


def test_single_annotation_becomes_label_with_annotator_email_and_external_id():
    res = L.parse_tasks([task(10, 7, ann(100, "dog", at=5))], CLASSES, users=USERS)
    [a] = res.annotations
    assert (a.item_id, a.label, a.source, a.annotator, a.external_id) == (7, "dog", "annotator", "ann@example.com",
                                                                          "100")
    assert a.created_at == T0 + timedelta(seconds=5) and not a.skipped
    assert res.cursor == T0 + timedelta(seconds=5) and res.tasks_seen == 1
    assert res.rejects == [] and res.disagreements == []


def test_tasks_without_annotations_are_ignored():
    res = L.parse_tasks([task(10, 7), task(11, 8, ann(101, "cat"))], CLASSES)
    assert [a.item_id for a in res.annotations] == [8] and res.tasks_seen == 1


def test_cancelled_annotation_is_a_skip():
    res = L.parse_tasks([task(10, 7, ann(100, None, cancelled=True))], CLASSES, users=USERS)
    [a] = res.annotations
    assert a.skipped and a.label is None and res.skipped == [7]


def test_unknown_label_is_rejected_never_returned_as_label():
    res = L.parse_tasks([task(10, 7, ann(100, "zebra", at=3))], CLASSES, users=USERS)
    assert res.annotations == [] and res.votes == []
    [r] = res.rejects
    assert (r.item_id, r.label, r.external_id, r.annotator) == (7, "zebra", "100", "ann@example.com")
    assert "not one of the project's classes" in r.reason
    assert res.cursor == T0 + timedelta(seconds=3)  # the cursor still moves past it


@pytest.mark.parametrize("annotation, reason", [
    (ann(100, ["cat", "dog"]), "several choices"),
    (ann(100, None), "no choice"),
    (ann(100, "cat", from_name="other"), "no choice"),
])
def test_malformed_choices_are_rejected(annotation, reason):
    res = L.parse_tasks([task(10, 7, annotation)], CLASSES)
    assert res.annotations == [] and reason in res.rejects[0].reason


@pytest.mark.parametrize("item_id", [None, "abc", 1.5, True])
def test_task_without_usable_item_id_is_rejected(item_id):
    res = L.parse_tasks([task(10, item_id, ann(100, "cat"))], CLASSES)
    assert res.annotations == [] and res.rejects[0].item_id is None and "item_id" in res.rejects[0].reason


def test_item_id_as_numeric_string_is_accepted():
    assert L.task_item_id({"data": {"item_id": "42"}}) == 42
    assert L.task_item_id({"data": {"item_id": 42.0}}) == 42


def test_majority_of_three_annotators_wins_and_disagreement_is_kept():
    t = task(10, 7, ann(100, "cat", user=1, at=1), ann(101, "dog", user=2, at=2), ann(102, "cat", user=3, at=3))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    [a] = res.annotations
    assert a.label == "cat" and a.external_id == "102"  # the latest vote of the winning label
    [d] = res.disagreements
    assert d.item_id == 7 and d.label == "cat" and d.votes == {"cat": 2, "dog": 1} and not d.tie
    assert sorted(v.external_id for v in res.votes) == ["100", "101", "102"]


def test_tie_is_flagged_and_gives_no_label():
    t = task(10, 7, ann(100, "cat", user=1), ann(101, "dog", user=2))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    assert res.annotations == []
    [d] = res.disagreements
    assert d.tie and d.label is None and d.votes == {"cat": 1, "dog": 1}
    assert res.ties == [7]


def test_agreement_is_not_a_disagreement():
    t = task(10, 7, ann(100, "bird", user=1), ann(101, "bird", user=2))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    assert [a.label for a in res.annotations] == ["bird"] and res.disagreements == []


def test_one_annotator_counts_once_with_their_latest_answer():
    # the same user labelled twice: only the newer counts, so it is no 2-vs-1 majority
    t = task(10, 7, ann(100, "cat", user=1, at=1), ann(101, "dog", user=1, at=5), ann(102, "cat", user=2, at=2))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    assert res.annotations == [] and res.disagreements[0].tie


def test_skip_and_label_from_different_annotators_gives_the_label():
    t = task(10, 7, ann(100, None, user=1, cancelled=True), ann(101, "dog", user=2, at=1))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    assert [(a.label, a.skipped) for a in res.annotations] == [("dog", False)]


def test_rejected_vote_does_not_count_towards_majority():
    t = task(10, 7, ann(100, "zebra", user=1), ann(101, "dog", user=2, at=1))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    assert [a.label for a in res.annotations] == ["dog"] and len(res.rejects) == 1


def test_updated_annotation_is_returned_again_with_the_new_label():
    first = L.parse_tasks([task(10, 7, ann(100, "cat", at=1))], CLASSES)
    assert first.annotations[0].label == "cat"
    # the annotator corrected it later: same annotation id, newer updated_at
    second = L.parse_tasks([task(10, 7, ann(100, "dog", at=1, updated=30))], CLASSES, since=first.cursor)
    [a] = second.annotations
    assert (a.label, a.external_id) == ("dog", "100@" + ts(30))  # a new version, newer than the first
    assert a.created_at == T0 + timedelta(seconds=30)
    assert second.cursor == T0 + timedelta(seconds=30)


def test_pull_since_cursor_returns_nothing_new_and_keeps_the_cursor():
    tasks = [task(10, 7, ann(100, "cat", at=1)), task(11, 8, ann(101, None, cancelled=True, at=2))]
    first = L.parse_tasks(tasks, CLASSES)
    again = L.parse_tasks(tasks, CLASSES, since=first.cursor)
    assert again.annotations == [] and again.rejects == [] and again.tasks_seen == 0
    assert again.cursor == first.cursor


def test_new_second_annotator_re_resolves_the_whole_task():
    old = ann(100, "cat", user=1, at=1)
    first = L.parse_tasks([task(10, 7, old)], CLASSES)
    res = L.parse_tasks([task(10, 7, old, ann(101, "dog", user=2, at=10))], CLASSES, since=first.cursor)
    assert res.annotations == [] and res.ties == [7]


def test_inline_user_object_and_unknown_user_id():
    t = task(10, 7, ann(100, "cat", user={"id": 2, "email": "bob@example.com"}), ann(101, "cat", user=9))
    res = L.parse_tasks([t], CLASSES, users=USERS)
    assert sorted(v.annotator for v in res.votes) == ["9", "bob@example.com"]


def test_parse_time_formats():
    assert L.parse_time("2026-01-01T12:00:00.000000Z") == T0
    assert L.parse_time("2026-01-01 12:00:00+00:00") == T0
    assert L.parse_time(T0.replace(tzinfo=None)) == T0
    assert L.parse_time("garbage") is None and L.parse_time(None) is None
    assert L.ls_time(T0) == "2026-01-01T12:00:00.000000Z"


# ------------------------------------------------------------------ payloads
def test_label_config_round_trips_choices_and_escapes_names():
    names = ["cat", 'say "hi"', "a<b&c"]
    xml = L.label_config(names)
    assert L.config_choices(xml) == names
    assert 'choice="single"' in xml and 'value="$image"' in xml
    with pytest.raises(LabelStudioError):
        L.label_config(["a", "a"])
    with pytest.raises(LabelStudioError):
        L.label_config([])


def test_config_choices_of_foreign_config_is_empty():
    assert L.config_choices('<View><Text name="t" value="$text"/></View>') == []
    with pytest.raises(LabelStudioError):
        L.config_choices("<View")


def test_task_payload_carries_item_id_image_and_prediction():
    p = L.task_payload(L.PushItem(5, "data:x", "dog", 0.875), model_version=3)
    assert p["data"] == {"image": "data:x", "item_id": 5}
    [pred] = p["predictions"]
    assert pred["model_version"] == "3" and pred["score"] == 0.875
    assert pred["result"][0]["value"] == {"choices": ["dog"]} and pred["result"][0]["from_name"] == "label"
    assert "predictions" not in L.task_payload(L.PushItem(5, "data:x"), model_version=3)


def _decode(uri: str):
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_png_data_uri_upscales_tiny_digits_nearest_neighbour():
    x = np.zeros((1, 8, 8), dtype=np.float32)
    x[0, 0, 0] = 1.0
    img = _decode(L.png_data_uri(x))
    assert img.size == (64, 64) and img.mode == "L"
    px = np.asarray(img)
    assert px[:8, :8].min() == 255 and px[8:, :].max() == 0  # a sharp 8x8 block, no blur


def test_png_data_uri_rgb_channels_first_and_uint8():
    x = np.full((3, 32, 32), 0.5, dtype=np.float32)
    assert _decode(L.png_data_uri(x)).size == (64, 64)
    assert _decode(L.png_data_uri(np.zeros((100, 80, 3), np.uint8))).size == (80, 100)


def test_local_file_url_is_relative_to_files_root(tmp_path):
    f = tmp_path / "imgs" / "a b.png"
    f.parent.mkdir()
    f.write_bytes(b"x")
    assert L.local_file_url(f, tmp_path) == "/data/local-files/?d=imgs/a%20b.png"
    with pytest.raises(LabelStudioError, match="outside"):
        L.local_file_url(f, tmp_path / "other")


class _ArrayPool:
    """The part of the ``Pool`` interface that rendering uses: ``batches`` (what ``data.stream`` reads)."""

    is_image = True

    def load(self, ids):
        return np.stack([np.full((1, 8, 8), i / 10, np.float32) for i in ids])

    def batches(self, ids, batch_size):
        import torch

        for start in range(0, len(ids), batch_size):
            chunk = np.asarray(ids[start:start + batch_size])
            yield chunk, torch.from_numpy(self.load(chunk))


class _FolderPool(_ArrayPool):
    def __init__(self, root):
        self.root = root

    def path_of(self, item_id):
        return self.root / f"{item_id}.png"


def test_pool_image_refs_folder_below_files_root_is_served_from_disk(tmp_path):
    pool = _FolderPool(tmp_path / "imgs")
    assert L.pool_image_refs(pool, [3], files_root=tmp_path) == {3: "/data/local-files/?d=imgs/3.png"}
    elsewhere = L.pool_image_refs(pool, [3], files_root=tmp_path / "other")  # cannot be served: inline
    assert elsewhere[3].startswith("data:image/png")
    assert L.pool_image_refs(pool, [3])[3].startswith("data:image/png")


def test_pool_image_refs_in_memory_pool_inline():
    refs = L.pool_image_refs(_ArrayPool(), [1, 2])
    assert set(refs) == {1, 2} and all(v.startswith("data:image/png") for v in refs.values())


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("exc, fragment", [
    (httpx.ConnectError("refused"), "unreachable"),
    (ApiError(status_code=401, body={"detail": "Invalid token."}), "refused the API token"),
    (ApiError(status_code=404, body="<html>not found</html>"), "not found (404)"),
    (ApiError(status_code=400, body={"detail": "bad config"}), "answered 400"),
])
def test_errors_become_one_line_label_studio_errors(exc, fragment):
    with pytest.raises(LabelStudioError, match=r"^[^\n]*$") as info:
        with _errors("http://ls:8080", "do something"):
            raise exc
    assert fragment in str(info.value)


def test_connect_needs_url_and_token():
    with pytest.raises(LabelStudioError, match="unreachable"):  # nothing there: that is said before the token
        L.connect("http://127.0.0.1:1", None)
    with pytest.raises(LabelStudioError, match="URL"):
        L.connect("", "token")


# -------------------------------------------------------------------- oracle
class _FakeClient:
    """Records what the oracle sends; answers pulls from a canned list."""

    def __init__(self, pulls):
        self.pushed = []
        self.pulls = list(pulls)
        self.since = []

    def push_tasks(self, project_id, items, *, model_version=None, known=None, on_created=None, progress=None):
        self.pushed.append((project_id, list(items), model_version, dict(known or {})))
        new = {item.item_id: 1000 + n for n, item in enumerate(items) if item.item_id not in (known or {})}
        on_created(new)
        return L.PushResult(new, list(new))

    def pull_annotations(self, project_id, class_names, since=None):
        self.since.append(since)
        return self.pulls.pop(0)


def test_oracle_request_sends_top_k_with_predicted_class_names_and_round():
    client = _FakeClient([])
    created = {}

    class Book(L.MemoryTaskBook):
        def tasks_created(self, round_id, new):
            super().tasks_created(round_id, new)
            created.update({(round_id, k): v for k, v in new.items()})

    oracle = L.LabelStudioOracle(client, 4, CLASSES, image_ref=lambda ids: {i: f"img{i}" for i in ids},
                                 book=Book(), top_k=2)
    sel = Selection(np.array([9, 3, 5]), np.array([0.9, 0.5, 0.1]), "margin",
                    predicted=np.array([1, 2, 0]), confidence=np.array([0.6, 0.4, 0.9]))
    oracle.request(sel, round_id=7)
    [(pid, items, version, known)] = client.pushed
    assert pid == 4 and version == "7" and known == {}
    assert items == [L.PushItem(9, "img9", "dog", 0.6), L.PushItem(3, "img3", "bird", 0.4)]
    assert created == {(7, 9): 1000, (7, 3): 1001}
    oracle.request(sel, round_id=8)  # its own map is passed on the next push
    assert client.pushed[1][3] == {9: 1000, 3: 1001}


def test_oracle_collect_moves_the_cursor_only_after_the_next_collect_or_commit():
    first = L.SyncResult(cursor=T0)
    second = L.SyncResult(cursor=T0 + timedelta(seconds=9))
    client = _FakeClient([first, second, L.SyncResult(cursor=None)])
    saved = []

    class Book(L.MemoryTaskBook):
        def cursor(self):
            return saved[-1] if saved else None

        def save_cursor(self, when):
            saved.append(when)

    oracle = L.LabelStudioOracle(client, 4, CLASSES, image_ref=dict, book=Book())
    oracle.collect()
    assert saved == []  # not saved until the caller had the chance to store the labels
    oracle.collect()
    assert saved == [T0] and client.since == [None, T0]
    oracle.commit()
    assert saved == [T0, T0 + timedelta(seconds=9)]


def test_a_password_in_the_label_studio_url_is_masked():
    from activeadv.labelstudio import masked_url

    assert masked_url("http://admin:s3cret@ls.example:8080/x") == "http://admin:***@ls.example:8080/x"
    assert masked_url("http://ls.example:8080") == "http://ls.example:8080"
    assert masked_url("http://user@ls.example") == "http://user@ls.example"


def test_a_pasted_token_is_stripped_and_an_illegal_one_refused_without_showing_it():
    from activeadv.errors import LabelStudioError
    from activeadv.labelstudio import clean_token, connect

    assert clean_token("  abc123def\n") == "abc123def"
    for bad in ("abc def", "tökén-123", "abc\x00def"):
        with pytest.raises(LabelStudioError) as err:
            clean_token(bad)
        assert bad not in str(err.value) and "LABEL_STUDIO_API_KEY" in str(err.value)
    with pytest.raises(LabelStudioError, match="no Label Studio API token"):
        clean_token(" \n")
    with pytest.raises(LabelStudioError) as err:  # server down: one line, password masked
        connect("http://admin:pw-secret@127.0.0.1:9", "tok123456", timeout=2, max_retries=0)
    assert "pw-secret" not in str(err.value) and "unreachable" in str(err.value)


def test_every_refused_annotation_of_a_known_item_goes_to_the_store_with_its_reason():
    res = L.parse_tasks([task(10, 7, ann(100, None)), task(11, 8, ann(101, ["cat", "dog"])),
                         task(12, 9, ann(102, "zebra")), task(13, None, ann(103, "cat"))], CLASSES)
    stored = {a.item_id: a for a in res.for_store()}
    assert set(stored) == {7, 8, 9}  # the task without an item id cannot be stored against an item
    assert "no choice" in stored[7].rejected and stored[7].label is None and not stored[7].skipped
    assert "several choices" in stored[8].rejected and "not one of" in stored[9].rejected


def test_a_task_whose_annotations_were_deleted_yields_a_snapshot():
    """Label Studio bumps a task's updated_at when an annotation is deleted: the sync sees the task again."""
    since = T0 + timedelta(seconds=10)
    emptied = {**task(10, 7), "updated_at": ts(20)}
    untouched = {**task(11, 8, ann(101, "cat", at=1)), "updated_at": ts(1)}
    res = L.parse_tasks([emptied, untouched], CLASSES, since)
    assert res.present == {7: frozenset()} and res.annotations == []
    assert res.cursor == T0 + timedelta(seconds=20)
    (snapshot,) = res.for_store()
    assert (snapshot.item_id, snapshot.label, snapshot.present) == (7, None, frozenset())
