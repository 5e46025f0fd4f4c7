"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from activeadv.schema import Base
from activeadv.store import Store


def _diffs(store: Store) -> list:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def test_upgrade_head_on_empty_database_matches_models(database_url):
    store = Store(database_url)
    assert store.current() is None
    store.upgrade()
    assert store.current() == store.head()
    assert _diffs(store) == []
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"projects", "items", "labels", "label_rejects", "rounds", "selections", "models",
            "simulation_runs", "curve_points", "locks"} <= tables
    store.upgrade()  # already at head: nothing to do
    store.close()


def test_downgrade_to_base_and_back(database_url):
    from alembic import command

    store = Store(database_url)
    store.upgrade()
    with store.engine.begin() as conn:
        command.downgrade(store._alembic_config(conn), "base")
    with store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    store.upgrade()
    assert _diffs(store) == []
    store.close()


def test_partial_unique_index_keeps_one_current_label_per_item(store):
    """The database itself refuses two current labels for one item (not only the Store's logic)."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    p = store.create_project("p", "digits", ["a", "b"])
    (item,) = store.register_items(p.id, ["k"], ["h"]).ids
    insert = sa.text("INSERT INTO labels (project_id, item_id, class_index, source, created_at) "
                     "VALUES (:p, :i, 0, 'import', CURRENT_TIMESTAMP)")
    with store.engine.begin() as conn:
        conn.execute(insert, {"p": p.id, "i": int(item)})
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(insert, {"p": p.id, "i": int(item)})


def test_a_built_wheel_carries_the_migrations(tmp_path):
    """`pip install activeadv` (not editable) must still be able to run `activeadv db upgrade`."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("activeadv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"activeadv/migrations/{p.relative_to(root / 'migrations').as_posix()}"
                for p in (root / "migrations").rglob("*") if p.suffix in (".py", ".mako")}
    assert expected and expected <= names
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    db = tmp_path / "fresh.db"
    done = subprocess.run([sys.executable, "-m", "activeadv", "db", "upgrade", "--db", f"sqlite:///{db}"],
                          capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"),
                                                                             "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "(head)" in done.stdout
    probe = subprocess.run([sys.executable, "-c", "import activeadv.store as s; print(s._migrations_dir())"],
                           capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")})
    assert probe.stdout.strip() == str(tmp_path / "site" / "activeadv" / "migrations")


def test_upgrade_from_0001_keeps_rounds_and_models(database_url):
    """A database made by the previous schema, with a trained round in it, upgrades without losing anything."""
    store = Store(database_url)
    store.upgrade("0001")
    now = "2026-11-25 12:00:00"
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO projects (id, name, dataset, class_names, train_settings, strategy_settings,"
                             " created_at) VALUES (1, 'old', 'digits', '[\"a\", \"b\"]', '{}', '{}', :t)"), {"t": now})
        conn.execute(sa.text("INSERT INTO rounds (id, project_id, number, state, strategy, query_size, labels_used,"
                             " selected, timings, started_at) VALUES (1, 1, 1, 'done', 'dfal', 20, 40, 20,"
                             " '{\"train\": 1.5}', :t)"), {"t": now})
        conn.execute(sa.text("INSERT INTO models (id, round_id, path, accuracy, fgsm_accuracy, pgd_accuracy, n_test,"
                             " labels_used, created_at) VALUES (1, 1, '/ckpt/round-0001.pt', 0.91, 0.8, 0.7, 360, 40,"
                             " :t)"), {"t": now})
    store.upgrade()
    assert store.current() == store.head() and _diffs(store) == []
    (old,) = store.rounds(1)
    assert (old.number, old.state, old.labels_used, old.model_path) == (1, "done", 40, "/ckpt/round-0001.pt")
    assert old.metrics is not None and old.metrics.accuracy == 0.91 and old.metrics.pgd_accuracy == 0.7
    assert old.timings == {"train": 1.5} and old.stop_agreement is None  # old rounds keep what they had
    store.record_model(1, "/ckpt/round-0001.pt", old.metrics, labels_used=40, stop_agreement=0.995)
    assert store.rounds(1)[0].stop_agreement == 0.995
    store.close()


OLD_STRATEGIES = {  # rounds.strategy as revision 0002 stored it (repr) -> (name, params) after 0003
    "seed": ("seed", {}),
    "entropy": ("entropy", {}),
    "dfal(mode=fast, top_k=10, steps=50, overshoot=0.02, shortlist=0.05, min_shortlist=256, per_pick=5)":
        ("dfal", {"mode": "fast", "top_k": 10, "steps": 50, "overshoot": 0.02, "shortlist": 0.05,
                  "min_shortlist": 256, "per_pick": 5}),
    "dfal(mode=exact, top_k=3, steps=50, overshoot=0.05, diversity=kmeans++, diversity_factor=4)":
        ("dfal", {"mode": "exact", "top_k": 3, "steps": 50, "overshoot": 0.05, "diversity": "kmeans++",
                  "diversity_factor": 4}),
    "margin(diversity=kcenter, diversity_factor=10)": ("margin", {"diversity": "kcenter", "diversity_factor": 10}),
    "fgsm-margin(max_epsilon=0.25, grid=8, bisection_steps=6)":
        ("fgsm-margin", {"max_epsilon": 0.25, "grid": 8, "bisection_steps": 6}),
    "dfal+kcenter(mode='fast', top_k=10)": ("dfal", {"mode": "fast", "top_k": 10, "diversity": "kcenter",
                                                     "diversity_factor": 10}),
    "not a (repr": ("not a (repr", {}),  # unreadable: kept as it was
}


def test_upgrade_from_0002_stores_old_strategy_reprs_as_name_and_parameters(database_url):
    """Rounds written by 0002 (strategy = repr) upgrade to name + JSON parameters; nothing else changes,
    and a downgrade writes the repr back."""
    from alembic import command

    from activeadv.acquisition import make_strategy

    store = Store(database_url)
    store.upgrade("0002")
    now = "2026-11-25 12:00:00"
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO projects (id, name, dataset, class_names, train_settings, strategy_settings,"
                             " created_at) VALUES (1, 'old', 'digits', '[\"a\", \"b\"]', '{}', '{}', :t)"),
                     {"t": now})
        for number, old in enumerate(OLD_STRATEGIES):
            conn.execute(sa.text("INSERT INTO rounds (project_id, number, state, strategy, query_size,"
                                 " labels_used, selected, timings, started_at, finished_at) VALUES (1, :n,"
                                 " 'done', :s, 20, :used, 20, '{\"train\": 1.5}', :t, :t)"),
                         {"n": number, "used": number * 10, "s": old, "t": now})
        conn.execute(sa.text("INSERT INTO models (round_id, path, accuracy, labels_used, created_at, stop_agreement)"
                             " SELECT id, '/ckpt/round-0002.pt', 0.91, 20, :t, 0.5 FROM rounds WHERE number = 2"),
                     {"t": now})
        conn.execute(sa.text("INSERT INTO items (project_id, key, content_hash, split, created_at)"
                             " VALUES (1, 'k', 'h', 'pool', :t)"), {"t": now})
        conn.execute(sa.text("INSERT INTO selections (round_id, item_id, score, rank, state, created_at)"
                             " SELECT r.id, i.id, 0.5, 0, 'requested', :t FROM rounds r, items i WHERE r.number = 2"),
                     {"t": now})
    store.upgrade()
    assert store.current() == store.head() and _diffs(store) == []
    rounds = store.rounds(1)
    assert [(r.strategy, r.strategy_params) for r in rounds] == list(OLD_STRATEGIES.values())
    assert [(r.number, r.state, r.labels_used, r.selected, r.query_size, r.timings) for r in rounds] == [
        (n, "done", n * 10, 20, 20, {"train": 1.5}) for n in range(len(OLD_STRATEGIES))]
    assert rounds[2].model_path == "/ckpt/round-0002.pt" and rounds[2].stop_agreement == 0.5
    kept = store.selection(rounds[2].id)  # rounds altered in place: no cascade to selections or models
    assert len(kept) == 1 and kept.strategy == list(OLD_STRATEGIES)[2]
    for r in rounds:
        if r.strategy not in ("seed", "not a (repr"):  # every converted row rebuilds its strategy, as stored
            rebuilt = make_strategy(r.strategy, **r.strategy_params)
            assert rebuilt.name == r.strategy and r.strategy_params.items() <= rebuilt.params().items()
    assert repr(make_strategy(rounds[2].strategy, **rounds[2].strategy_params)) == list(OLD_STRATEGIES)[2]
    new = store.start_round(1, "entropy", 5)  # rows written after the upgrade get {} by default too
    assert new.strategy_params == {}
    with store.engine.begin() as conn:
        command.downgrade(store._alembic_config(conn), "0002")
    with store.engine.connect() as conn:
        back = conn.execute(sa.text("SELECT strategy FROM rounds ORDER BY number")).scalars().all()
    assert back[:3] == list(OLD_STRATEGIES)[:3] and back[-2:] == ["not a (repr", "entropy"]
    assert back[6] == "dfal(mode=fast, top_k=10, diversity=kcenter, diversity_factor=10)"  # the repr 0002 reads
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM models")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM selections")).scalar() == 1
    store.close()


def test_a_revision_from_a_newer_activeadv_is_refused_in_one_line_by_upgrade_and_named_by_current(database_url):
    import pytest
    from click.testing import CliRunner

    from activeadv.cli import cli
    from activeadv.errors import SchemaError

    store = Store(database_url)
    store.upgrade()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="newer than this activeadv"):
        store.upgrade()
    store.close()
    up = CliRunner().invoke(cli, ["db", "upgrade", "--db", database_url])
    assert up.exit_code == 1 and "newer than this activeadv" in up.output
    current = CliRunner().invoke(cli, ["db", "current", "--db", database_url])
    assert current.exit_code == 0 and "9999" in current.output and "newer than this activeadv" in current.output
    status = CliRunner().invoke(cli, ["status", "--db", database_url])
    assert status.exit_code == 1 and "newer than this activeadv" in status.output  # both say the same


def test_upgrade_from_0004_keeps_rounds_and_adds_the_robustness_suite(database_url):
    """A database made at 0004 with rounds, models, selections and labels upgrades to 0005 without losing any of
    them (``rounds`` is not rebuilt: no cascade); old rounds have no suite rows; new rows are stored, replaced
    and removed with their round; a downgrade drops only the suite."""
    from alembic import command

    from activeadv.records import EvalMetrics, RobustnessRow

    store = Store(database_url)
    store.upgrade("0004")
    now = "2026-11-26 12:00:00"
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO projects (id, name, dataset, class_names, train_settings, strategy_settings,"
                             " created_at) VALUES (1, 'old', 'digits', '[\"a\", \"b\"]', '{\"epsilon\": 0.1}', '{}',"
                             " :t)"), {"t": now})
        conn.execute(sa.text("INSERT INTO items (id, project_id, key, content_hash, split, created_at)"
                             " VALUES (1, 1, 'k1', 'h1', 'pool', :t), (2, 1, 'k2', 'h2', 'pool', :t)"), {"t": now})
        for number in (0, 1, 2):
            conn.execute(sa.text("INSERT INTO rounds (id, project_id, number, state, strategy, strategy_params,"
                                 " query_size, labels_used, selected, timings, started_at, finished_at) VALUES"
                                 " (:id, 1, :n, 'done', 'dfal', '{\"mode\": \"fast\"}', 1, :used, 1,"
                                 " '{\"train\": 1.5}', :t, :t)"),
                         {"id": number + 1, "n": number, "used": None if number == 0 else 10 * number, "t": now})
        for number in (1, 2):
            conn.execute(sa.text("INSERT INTO models (round_id, path, accuracy, fgsm_accuracy, pgd_accuracy, n_test,"
                                 " labels_used, stop_agreement, created_at) VALUES (:r, :p, 0.9, 0.8, 0.7, 30,"
                                 " :used, 0.5, :t)"),
                         {"r": number + 1, "p": f"/ckpt/round-{number}.pt", "used": 10 * number, "t": now})
        conn.execute(sa.text("INSERT INTO selections (round_id, item_id, score, rank, state, created_at)"
                             " VALUES (1, 1, 0.5, 0, 'labeled', :t), (2, 2, 0.4, 0, 'requested', :t)"), {"t": now})
        conn.execute(sa.text("INSERT INTO labels (project_id, item_id, class_index, source, external_id, created_at)"
                             " VALUES (1, 1, 0, 'oracle', 'selection:1', :t)"), {"t": now})
    before = {table: _rows(store, table) for table in ("rounds", "models", "selections", "labels", "items")}
    store.upgrade()
    assert store.current() == store.head() == "0005" and _diffs(store) == []
    assert {table: _rows(store, table) for table in before} == before  # nothing stored is lost or changed
    rounds = store.rounds(1)
    assert [(r.number, r.labels_used, r.model_path) for r in rounds] == [
        (0, None, None), (1, 10, "/ckpt/round-1.pt"), (2, 20, "/ckpt/round-2.pt")]
    assert rounds[2].metrics == EvalMetrics(0.9, 0.8, 0.7, 30) and rounds[2].stop_agreement == 0.5
    assert store.robustness(1) == {} and store.round_robustness(3) == ()  # old rounds simply have no suite

    suite = (RobustnessRow("clean", 0.0, 0.9, 30, "", 0.0, 0.01), RobustnessRow("pgd", 0.1, 0.4, 30, "inf", 0.1, 0.5),
             RobustnessRow("pgd_l2", 0.1, 0.6, 30, "2", 0.5, 0.5))
    store.record_model(3, "/ckpt/round-2.pt", rounds[2].metrics, labels_used=20, stop_agreement=0.5,
                       robustness=suite)
    assert store.round_robustness(3) == suite and store.robustness(1) == {2: suite}
    store.save_robustness(3, suite[:1])  # a rerun replaces the round's rows
    assert store.robustness(1) == {2: suite[:1]}
    store.record_model(3, "/ckpt/round-2.pt", rounds[2].metrics, labels_used=20,  # None: rows left alone
                       stop_agreement=0.5)
    assert store.round_robustness(3) == suite[:1]
    with store.engine.begin() as conn:
        command.downgrade(store._alembic_config(conn), "0004")
    with store.engine.connect() as conn:
        assert "robustness" not in sa.inspect(conn).get_table_names()
    assert {table: _rows(store, table) for table in before} == before
    store.upgrade()
    with store.engine.begin() as conn:  # a deleted round takes its suite with it
        conn.execute(sa.text("INSERT INTO robustness (round_id, attack, eps, norm, radius, accuracy, n, seconds)"
                             " VALUES (2, 'fgsm', 0.1, 'inf', 0.1, 0.5, 30, 0.1)"))
        conn.execute(sa.text("DELETE FROM selections WHERE round_id = 2"))
        conn.execute(sa.text("DELETE FROM models WHERE round_id = 2"))
        conn.execute(sa.text("DELETE FROM rounds WHERE id = 2"))
        assert conn.execute(sa.text("SELECT count(*) FROM robustness")).scalar() == 0
    store.close()


def _rows(store: Store, table: str) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).all()]
