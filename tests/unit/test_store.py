"""Store behaviour on SQLite and PostgreSQL: idempotent writes, label history, candidates, locks."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from activeadv.errors import ConfigError, LabelError, LockedError, NotFoundError, SchemaError
from activeadv.records import Annotation, CurvePoint, EvalMetrics, Selection
from activeadv.store import Store

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def project(store):
    p = store.create_project("cats", "folder:/data/cats", ["cat", "dog"], train_settings={"epochs": 3})
    reg = store.register_items(p.id, [f"img/{i}.png" for i in range(6)], [f"h{i}" for i in range(6)])
    return p, reg.ids


def test_open_refuses_empty_database_and_names_the_fix(database_url):
    with pytest.raises(SchemaError, match="activeadv db upgrade"):
        Store.open(database_url)
    s = Store(database_url)
    assert s.current() is None and s.is_empty()
    s.upgrade()
    assert s.current() == s.head()
    s.close()
    Store.open(database_url).close()


def test_open_refuses_an_older_revision(database_url):
    s = Store(database_url)
    s.upgrade()
    with s.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(SchemaError, match="newer than this activeadv"):
        Store.open(database_url)
    s.close()


def test_project_names_are_unique_and_lookup_explains(store):
    p = store.create_project("p1", "digits", ["0", "1"])
    assert store.get_project() == p
    assert store.get_project("p1").class_names == ("0", "1")
    with pytest.raises(ConfigError, match="already exists"):
        store.create_project("p1", "digits", ["0"])
    with pytest.raises(NotFoundError, match="p1"):
        store.get_project("nope")
    store.create_project("p2", "digits", ["0"])
    with pytest.raises(ConfigError, match="--project"):
        store.get_project()


def test_register_items_is_idempotent_and_adds_only_new(store, project):
    p, ids = project
    again = store.register_items(p.id, [f"img/{i}.png" for i in range(6)], [f"h{i}" for i in range(6)])
    assert again.added == 0 and list(again.ids) == list(ids)
    grown = store.register_items(p.id, [f"img/{i}.png" for i in range(8)], [f"h{i}" for i in range(8)])
    assert grown.added == 2 and list(grown.ids[:6]) == list(ids)
    # a renamed file keeps its id (and so its labels) by content hash
    keys = [f"img/{i}.png" for i in range(7)] + ["moved/7.png"]
    moved = store.register_items(p.id, keys, [f"h{i}" for i in range(8)])
    assert moved.added == 0 and moved.renamed == 1 and moved.ids[7] == grown.ids[7]
    # the test split is a separate key space
    test = store.register_items(p.id, ["img/0.png"], ["t0"], split="test")
    assert test.added == 1 and test.ids[0] not in set(grown.ids)
    assert store.status(p.id).pool == 8 and store.status(p.id).test == 1


def test_labels_are_idempotent_by_external_id_and_newer_supersedes(store, project):
    p, ids = project
    first = [Annotation(int(ids[0]), "cat", "annotator", "ann", "ls-1", T0),
             Annotation(int(ids[1]), "dog", "annotator", "ann", "ls-2", T0)]
    assert store.add_labels(p.id, first).added == 2
    assert store.add_labels(p.id, first).duplicates == 2
    newer = Annotation(int(ids[0]), "dog", "annotator", "bob", "ls-3", T0 + timedelta(hours=1))
    counts = store.add_labels(p.id, [newer])
    assert counts.added == 1 and counts.superseded == 1
    item_ids, classes = store.labels(p.id)
    assert list(item_ids) == [ids[0], ids[1]] and list(classes) == [1, 1]
    history = store.label_rows(p.id, history=True)
    assert len(history) == 3 and sum(r.current for r in history) == 2
    # an older annotation arriving late is kept as history but does not win
    late = Annotation(int(ids[0]), "cat", "annotator", "eve", "ls-0", T0 - timedelta(days=1))
    store.add_labels(p.id, [late])
    assert list(store.labels(p.id)[1]) == [1, 1]


def test_unknown_labels_are_kept_aside_or_refused_atomically(store, project):
    p, ids = project
    bad = [Annotation(int(ids[0]), "cat", "import", external_id="a"),
           Annotation(int(ids[1]), "horse", "import", external_id="b")]
    with pytest.raises(LabelError, match="unknown label 'horse'.*nothing was stored"):
        store.add_labels(p.id, bad, strict=True)
    assert len(store.labels(p.id)[0]) == 0
    counts = store.add_labels(p.id, bad)
    assert counts.added == 1 and counts.rejected == 1
    assert store.add_labels(p.id, bad).rejected == 0  # the same reject is kept once
    assert store.rejects(p.id)[0][1] == "horse"
    assert store.add_labels(p.id, [Annotation(999999, "cat", "import")]).rejected == 1


def test_round_selection_candidates_and_oracle_answers(store, project):
    p, ids = project
    store.add_labels(p.id, [Annotation(int(ids[0]), "cat", "seed")])
    rnd = store.start_round(p.id, "dfal", 2)
    assert rnd.number == 0 and store.unfinished_round(p.id) == rnd
    store.record_model(rnd.id, "/ck/r0.pt", EvalMetrics(0.5, 0.25, 0.125, 10), labels_used=1)
    sel = Selection(ids[[3, 1]], np.array([0.9, 0.1]), "dfal", np.array([1, 0]), np.array([0.6, 0.7]))
    assert store.add_selection(rnd.id, sel) == 2
    assert store.add_selection(rnd.id, sel) == 0
    saved = store.selection(rnd.id)
    assert list(saved.item_ids) == list(ids[[3, 1]]) and list(saved.predicted) == [1, 0]
    assert set(store.candidates(p.id)) == set(ids) - {ids[0], ids[1], ids[3]}
    (pending_round, pending_sel), = store.pending(p.id)
    assert pending_round == rnd.id and len(pending_sel) == 2
    # answers without an external id are keyed by the selection: collected twice, stored once
    answers = [Annotation(int(ids[3]), "dog", "oracle"), Annotation(int(ids[1]), None, "oracle", skipped=True)]
    c1 = store.add_labels(p.id, answers)
    assert (c1.added, c1.skipped) == (1, 1)
    assert store.pending(p.id) == []
    assert store.add_labels(p.id, answers[:1]).added == 1  # no pending selection any more: a new label
    store.finish_round(rnd.id, {"train": 1.5})
    info = store.rounds(p.id)[0]
    assert info.state == "done" and info.metrics.pgd_accuracy == 0.125 and info.timings == {"train": 1.5}
    assert store.unfinished_round(p.id) is None
    assert store.start_round(p.id, "dfal", 2).number == 1
    status = store.status(p.id)
    assert (status.labeled, status.pending, status.skipped) == (2, 0, 1)


def test_a_round_stores_its_strategy_as_name_and_json_parameters(store, project):
    p, ids = project
    store.add_labels(p.id, [Annotation(int(ids[0]), "cat", "seed")])
    params = {"mode": "fast", "top_k": 10, "overshoot": 0.02, "diversity": "kcenter", "diversity_factor": 10}
    rnd = store.start_round(p.id, "dfal", 2, params=params)
    assert (rnd.strategy, rnd.strategy_params) == ("dfal", params)
    again = store.unfinished_round(p.id)
    assert (again.strategy, again.strategy_params) == ("dfal", params)
    assert again.strategy_label == "dfal(fast)+kcenter"
    assert again.strategy_text == "dfal(mode=fast, top_k=10, overshoot=0.02, diversity=kcenter, diversity_factor=10)"
    store.add_selection(rnd.id, Selection(ids[[2]], np.array([0.5]), "ignored"))
    assert store.selection(rnd.id).strategy == again.strategy_text  # selections read back show every parameter
    assert store.pending(p.id)[0][1].strategy == again.strategy_text
    store.finish_round(rnd.id)
    seed = store.start_round(p.id, "seed", 3)
    assert (seed.strategy, seed.strategy_params, seed.strategy_label) == ("seed", {}, "seed")
    store.finish_round(seed.id)
    with pytest.raises(ConfigError, match="JSON"):
        store.start_round(p.id, "dfal", 2, params={"overshoot": float("inf")})
    with pytest.raises(ConfigError, match="JSON"):
        store.start_round(p.id, "dfal", 2, params={"model": object()})
    with pytest.raises(ConfigError, match="strategy name"):
        store.start_round(p.id, "x" * 201, 2)
    assert [r.number for r in store.rounds(p.id)] == [0, 1]  # nothing stored by the refused ones


def test_an_interrupted_round_is_finished_with_the_strategy_it_stored(store, project, caplog):
    from activeadv.acquisition import make_strategy
    from activeadv.loop import _resumed_strategy

    p, _ = project
    started = make_strategy("dfal+kmeans++", mode="exact", top_k=3, overshoot=0.05)
    store.start_round(p.id, started.name, 4, params=started.params())
    rnd = store.unfinished_round(p.id)
    own = _resumed_strategy(rnd, make_strategy("entropy"))  # rerun with another --strategy
    assert type(own) is type(started) and own.params() == started.params() and repr(own) == repr(started)
    assert "its own strategy" in caplog.text
    same = make_strategy("dfal+kmeans++", mode="exact", top_k=3, overshoot=0.05)
    assert _resumed_strategy(rnd, same) is same  # asked for what it stored: kept as asked
    store.finish_round(rnd.id)
    store.start_round(p.id, "gone-strategy", 4, params={"x": 1})  # written by a version with other strategies
    caplog.clear()
    fallback = make_strategy("margin")
    assert _resumed_strategy(store.unfinished_round(p.id), fallback) is fallback
    assert "cannot rebuild" in caplog.text


def test_lock_refuses_a_second_holder_and_takes_over_dead_ones(store, project):
    p, _ = project
    with store.lock(p.id):
        with pytest.raises(LockedError, match="--force-unlock"):
            with store.lock(p.id):
                pass
        assert store.lock_holder(p.id)[0] == os.getpid()
    assert store.lock_holder(p.id) is None
    # a lock left by a process that no longer exists on this host is taken over
    import socket

    from sqlalchemy.orm import Session

    from activeadv import schema as db

    with Session(store.engine) as s, s.begin():
        s.add(db.Lock(project_id=p.id, owner="x", pid=2**22 + 12345, host=socket.gethostname()))
    with store.lock(p.id):
        assert store.lock_holder(p.id)[0] == os.getpid()
    with Session(store.engine) as s, s.begin():
        s.add(db.Lock(project_id=p.id, owner="y", pid=1, host="elsewhere"))
    with pytest.raises(LockedError):
        with store.lock(p.id):
            pass
    with store.lock(p.id, force=True):
        pass


def test_simulation_runs_round_trip(store):
    pts = [CurvePoint("dfal", 0, r, 10 * (r + 1), 0.5 + r / 10, 0.3) for r in range(3)]
    run_id = store.save_simulation("digits", {"seeds": [0], "eps": np.float32(0.1)}, pts, {"aulc": 0.6})
    (run,) = store.simulations("digits")
    assert run.id == run_id and run.points == tuple(pts) and run.summary == {"aulc": 0.6}
    assert store.simulations("other") == []


def test_the_same_answer_twice_in_one_batch_is_stored_once(store, project):
    p, ids = project
    ann = Annotation(int(ids[2]), "cat", "oracle", "simulated")
    counts = store.add_labels(p.id, [ann, ann])
    assert (counts.added, counts.duplicates) == (1, 1)
    assert len(store.label_rows(p.id, history=True)) == 1


def test_lock_heartbeat_keeps_a_long_round_fresh(store, project):
    import time

    p, _ = project
    with store.lock(p.id, heartbeat=0.05):
        first = store.lock_holder(p.id)[2]
        time.sleep(1.2)  # heartbeat_at has second resolution on some backends
        assert store.lock_holder(p.id)[2] > first


def test_two_writers_storing_the_same_annotations_store_them_once(store, project, database_url):
    from concurrent.futures import ThreadPoolExecutor

    p, ids = project
    anns = [Annotation(int(i), "cat", "annotator", "ann", f"ls-{i}", T0) for i in ids]
    stores = [Store.open(database_url) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda s: s.add_labels(p.id, anns), stores))
    finally:
        for s in stores:
            s.close()
    assert sum(r.added for r in results) == len(ids)
    assert sum(r.duplicates for r in results) == len(ids)
    assert len(store.label_rows(p.id, history=True)) == len(ids)


def test_an_annotation_refused_at_the_source_is_stored_as_a_reject_not_a_skip(store, project):
    """Label Studio annotations with no choice were counted as refused but never reached label_rejects."""
    p, ids = project
    item = int(ids[0])
    rnd = store.start_round(p.id, "random", 1)
    store.add_selection(rnd.id, Selection(np.array([item]), np.zeros(1), "random"))
    counts = store.add_labels(p.id, [Annotation(item, None, "annotator", "ann@x", "ls:7",
                                                rejected="no choice in the annotation")])
    assert counts.rejected == 1 and counts.skipped == 0 and counts.added == 0
    assert store.rejects(p.id) == [(item, None, "ls:7", "no choice in the annotation")]
    assert [len(sel) for _, sel in store.pending(p.id)] == [1]  # still waiting for a real answer
    assert store.add_labels(p.id, [Annotation(item, None, "annotator", "ann@x", "ls:7",
                                              rejected="no choice in the annotation")]).rejected == 0  # kept once


def test_a_label_from_the_future_does_not_mask_later_labels(store, project, caplog):
    from datetime import datetime, timedelta, timezone

    p, ids = project
    item = int(ids[0])
    ahead = datetime.now(timezone.utc) + timedelta(days=365)  # an import, or a server clock a year ahead
    with caplog.at_level("WARNING"):
        store.add_labels(p.id, [Annotation(item, "cat", "import", external_id="future", created_at=ahead)])
    assert "in the future" in caplog.text
    store.add_labels(p.id, [Annotation(item, "dog", "annotator", external_id="later")])  # a correction, now
    got_ids, classes = store.labels(p.id)
    assert list(got_ids) == [item] and list(classes) == [1]  # the later label is the current one


@pytest.mark.parametrize("name, says", [("bad\udcffname", "UTF-8"), ("two\nlines", "control"),
                                        ("nul\x00", "control"), ("x" * 201, "longer than 200")])
def test_project_names_a_database_cannot_hold_are_one_line_errors(store, name, says):
    from activeadv.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        store.create_project(name, "digits", ["a", "b"])
    assert store.projects() == []


def test_foreign_annotator_and_external_ids_fit_the_columns(store, project):
    """NUL and over-long values from Label Studio or a CSV failed on PostgreSQL (and only there)."""
    p, ids = project
    long_id = "ls:" + "9" * 500
    first = store.add_labels(p.id, [Annotation(int(ids[0]), "cat", "annotator", "a\x00b" + "x" * 300, long_id)])
    assert first.added == 1
    (row,) = store.label_rows(p.id)
    assert row.annotator == ("ab" + "x" * 300)[:200] and row.external_id.startswith("sha1:")
    again = store.add_labels(p.id, [Annotation(int(ids[0]), "cat", "annotator", "a\x00b", long_id)])
    assert again.duplicates == 1 and again.added == 0  # the same long id is still the same annotation


def test_a_label_whose_annotation_was_deleted_at_the_source_is_retracted_not_deleted(store, project):
    p, ids = project
    a, b = int(ids[0]), int(ids[1])
    rnd = store.start_round(p.id, "random", 2)
    store.add_selection(rnd.id, Selection(np.array([a, b]), np.zeros(2), "random"))
    store.add_labels(p.id, [Annotation(a, "cat", "annotator", "x", "36"), Annotation(b, "dog", "annotator", "x", "40")])
    assert store.status(p.id).pending == 0
    # a's annotation 36 was deleted in Label Studio; b's 40 was edited (a new version "40@...") and still exists
    counts = store.add_labels(p.id, [Annotation(a, None, "annotator", present=frozenset()),
                                     Annotation(b, None, "annotator", present=frozenset({"40"}))])
    assert counts.retracted == 1 and counts.added == 0
    got, _ = store.labels(p.id)
    assert list(got) == [b]
    history = store.label_rows(p.id, history=True)
    assert any(r.key == "img/0.png" and not r.current for r in history)  # superseded, never deleted
    assert [len(sel) for _, sel in store.pending(p.id)] == [1]  # a's request is open again, as its task is
    # a second annotator's remaining answer becomes the label in the same sync (snapshots go first)
    counts = store.add_labels(p.id, [Annotation(b, "cat", "annotator", "y", "41"),
                                     Annotation(b, None, "annotator", present=frozenset({"41"}))])
    assert counts.retracted == 1 and counts.added == 1
    assert list(store.labels(p.id)[1]) == [0]  # b is now "cat"
