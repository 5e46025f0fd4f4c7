"""``activeadv serve``'s pure parts and its tables: event dedupe, the /predict payload, the secret, disagreements."""

from __future__ import annotations

import base64

import pytest

from activeadv.records import Disagreement
from activeadv.service.events import action_of, dedupe_key, project_of
from activeadv.service.predict import no_prediction, prediction_payload
from activeadv.service.secret import HEADER, authorized, load_secret

CREATED = {"action": "ANNOTATION_CREATED", "project": {"id": 7},
           "annotation": {"id": 41, "created_at": "2026-01-01T10:00:00.1Z", "updated_at": "2026-01-01T10:00:00.1Z"},
           "task": {"id": 3, "data": {"item_id": 12}}}


def test_the_same_change_gets_the_same_key_whatever_else_differs():
    again = {**CREATED, "task": {"id": 3, "data": {"item_id": 12}, "updated_at": "later"}}
    assert dedupe_key(CREATED) == dedupe_key(again)
    assert dedupe_key(CREATED).startswith("ANNOTATION_CREATED:") and len(dedupe_key(CREATED)) <= 200


def test_an_edit_a_delete_or_another_annotation_is_a_new_event():
    edited = {**CREATED, "action": "ANNOTATION_UPDATED",
              "annotation": {**CREATED["annotation"], "updated_at": "2026-01-01T10:05:00Z"}}
    edited_twice = {**edited, "annotation": {**edited["annotation"], "updated_at": "2026-01-01T10:06:00Z"}}
    other = {**CREATED, "annotation": {**CREATED["annotation"], "id": 42}}
    deleted = {"action": "ANNOTATIONS_DELETED", "project": {"id": 7}, "annotations": [{"id": 41}]}
    keys = {dedupe_key(p) for p in (CREATED, edited, edited_twice, other, deleted)}
    assert len(keys) == 5
    # a bulk delete delivered with its ids in another order is the same event
    assert dedupe_key({**deleted, "annotations": [{"id": 2}, {"id": 1}]}) == \
        dedupe_key({**deleted, "annotations": [{"id": 1}, {"id": 2}]})


def test_payloads_without_annotations_fall_back_to_their_json():
    assert dedupe_key({"action": "START_TRAINING", "project": {"id": 1}}) == \
        dedupe_key({"project": {"id": 1}, "action": "START_TRAINING"})
    assert action_of({}) == "UNKNOWN" and action_of({"action": "annotation_created"}) == "ANNOTATION_CREATED"


def test_project_of_reads_an_object_an_id_or_the_task():
    assert project_of(CREATED) == 7
    assert project_of({"project": "9"}) == 9
    assert project_of({"task": {"project": 4}}) == 4
    assert project_of({"project": {"id": "x"}}) is None and project_of({}) is None


def test_prediction_payload_is_the_top_class_with_its_probability():
    out = prediction_payload([0.1, 0.7, 0.2], ["cat", "dog", "fox"], "3")
    assert out == {"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                               "value": {"choices": ["dog"]}}], "score": 0.7, "model_version": "3"}
    assert no_prediction("none") == {"result": [], "score": 0.0, "model_version": "none"}


def test_secret_header_or_basic_auth_password(tmp_path, monkeypatch):
    monkeypatch.delenv("ACTIVEADV_WEBHOOK_SECRET", raising=False)
    secret = load_secret(tmp_path)
    assert load_secret(tmp_path) == secret and (tmp_path / "webhook-secret").stat().st_mode & 0o777 == 0o600
    basic = "Basic " + base64.b64encode(f"activeadv:{secret}".encode()).decode()
    assert authorized({HEADER.lower(): secret}, secret)
    assert authorized({"authorization": basic}, secret)
    assert not authorized({}, secret)
    assert not authorized({HEADER.lower(): secret + "x"}, secret)
    assert not authorized({"authorization": "Basic !!!"}, secret)
    monkeypatch.setenv("ACTIVEADV_WEBHOOK_SECRET", "short")
    from activeadv.errors import ConfigError

    with pytest.raises(ConfigError, match="16"):
        load_secret(tmp_path)


@pytest.fixture
def project(store):
    p = store.create_project("cats", "folder:/data/cats", ["cat", "dog"], train_settings={})
    reg = store.register_items(p.id, [f"img/{i}.png" for i in range(4)], [f"h{i}" for i in range(4)])
    return p, [int(i) for i in reg.ids]


def test_events_are_stored_once_per_key_and_stay_pending_until_finished(store, project):
    p, _ = project
    first = store.add_event(p.id, dedupe_key(CREATED), "ANNOTATION_CREATED", CREATED)
    assert first is not None
    assert store.add_event(p.id, dedupe_key(CREATED), "ANNOTATION_CREATED", CREATED) is None  # duplicate delivery
    [pending] = store.pending_events(p.id)
    assert pending.id == first and pending.payload["annotation"]["id"] == 41
    store.finish_events([first], error="Label Studio unreachable")
    [still] = store.pending_events(p.id)
    assert still.attempts == 1 and still.error == "Label Studio unreachable"
    store.finish_events([first])
    assert store.pending_events(p.id) == [] and store.events(p.id)[0].processed_at is not None


def test_disagreements_are_kept_per_item_and_dropped_once_agreed(store, project):
    p, ids = project
    store.set_disagreements(p.id, [Disagreement(ids[0], "cat", {"cat": 2, "dog": 1}, False),
                                   Disagreement(ids[1], None, {"cat": 1, "dog": 1}, True)], changed=[ids[0], ids[1]])
    rows = store.disagreements(p.id)
    assert [(r.item_id, r.label, r.votes, r.tie) for r in rows] == [
        (ids[0], "cat", {"cat": 2, "dog": 1}, False), (ids[1], None, {"cat": 1, "dog": 1}, True)]
    assert "majority" in rows[0].rule and "tie" in rows[1].rule
    store.set_disagreements(p.id, [Disagreement(ids[1], "dog", {"cat": 1, "dog": 2}, False)], changed=[ids[1]])
    assert [(r.item_id, r.label) for r in store.disagreements(p.id)] == [(ids[0], "cat"), (ids[1], "dog")]
    store.set_disagreements(p.id, [], changed=[ids[0]])  # its annotators agree now
    assert [r.item_id for r in store.disagreements(p.id)] == [ids[1]]
