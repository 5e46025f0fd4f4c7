"""Rounds end to end on SQLite and PostgreSQL: the CLI, crash-resume and the one-round-at-a-time lock.

The dataset is a tiny separable npz (3 classes of 6x6 images) and training is
a handful of steps, so these tests check behaviour, not accuracy.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from activeadv.cli import cli
from activeadv.store import Store

FAST = ["--epochs", "1", "--min-steps", "3", "--unlabeled-steps", "3", "--batch-size", "16", "--epsilon", "0.05",
        "--adv", "fgsm"]
CLI = [sys.executable, "-c", "from activeadv.cli import main; main()"]
CRASHING_CLI = Path(__file__).resolve().parents[1] / "crashing_cli.py"


def make_npz(path: Path, n: int = 90, n_test: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)

    def images(k: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(k) % 3
        x = rng.uniform(0, 0.2, size=(k, 6, 6)).astype(np.float32)
        for c in range(3):
            x[y == c, 2 * c : 2 * c + 2, :] += 0.7  # class = which band is bright
        return np.clip(x, 0, 1), y

    x, y = images(n)
    xt, yt = images(n_test)
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt, class_names=np.array(["top", "middle", "bottom"]))
    return path


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_cli(tmp_path: Path, url: str, *args: str, env: dict | None = None, wait: bool = True,
            crash_at: str | None = None):
    """The CLI in a subprocess; ``crash_at``: killed right after that phase of the round (tests/crashing_cli.py)."""
    full_env = {**os.environ, "ACTIVEADV_DATABASE_URL": url, "ACTIVEADV_CHECKPOINT_DIR": str(tmp_path / "ck"),
                **(env or {})}
    command = CLI if crash_at is None else [sys.executable, str(CRASHING_CLI), crash_at]
    proc = subprocess.Popen(command + list(args), cwd=tmp_path, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.fixture(autouse=True)
def strategy_from_the_first_round(monkeypatch):
    """These tests follow a strategy's rounds from the first one on: no random cold start (the default, tested
    below with the variable removed).  Subprocesses inherit it."""
    monkeypatch.setenv("ACTIVEADV_RANDOM_UNTIL", "0")


@pytest.fixture
def project(tmp_path, database_url, monkeypatch):
    """A project on the tiny dataset with its seed round done (10 labels from the simulated oracle)."""
    monkeypatch.setenv("ACTIVEADV_CHECKPOINT_DIR", str(tmp_path / "ck"))
    data = make_npz(tmp_path / "tiny.npz")
    invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", database_url, "-q", *FAST)
    invoke("round", "--db", database_url, "--oracle", "simulated", "--query-size", "10", "-q",
           "--checkpoint-dir", str(tmp_path / "ck"))
    return database_url


def check_integrity(url: str, expected_rounds: list[int] | None = None) -> dict:
    """No label or selection stored twice; every round finished; every answered request labeled once."""
    with Store.open(url) as store:
        p = store.get_project()
        rounds = store.rounds(p.id)
        assert all(r.state == "done" for r in rounds), [(r.number, r.state) for r in rounds]
        if expected_rounds is not None:
            assert [r.number for r in rounds] == expected_rounds
        history = store.label_rows(p.id, history=True)
        current_ids, _ = store.labels(p.id)
        assert len(history) == len(current_ids) == len(set(current_ids))  # one label per item, no duplicates
        selected = np.concatenate([store.selection(r.id).item_ids for r in rounds])
        assert len(selected) == len(set(selected.tolist()))  # no item asked twice
        assert set(selected.tolist()) == set(current_ids.tolist())  # the simulated oracle answered each once
        for r in rounds:
            assert len(store.selection(r.id)) == r.selected == r.query_size
        assert store.lock_holder(p.id) is None
        return {"rounds": rounds, "labels": len(current_ids)}


def test_rounds_status_labels_and_report(project, tmp_path):
    url = project
    out = invoke("round", "--db", url, "--oracle", "simulated", "--query-size", "8", "--strategy", "dfal",
                 "--json", "-q", "--checkpoint-dir", str(tmp_path / "ck")).output
    payload = json.loads(out)
    assert payload["round"] == 1 and payload["labels_used"] == 10 and payload["selected"] == 8
    assert 0.0 <= payload["accuracy"] <= 1.0 and payload["fgsm_accuracy"] is not None
    invoke("round", "--db", url, "--oracle", "simulated", "--query-size", "8", "--strategy", "entropy", "-q",
           "--checkpoint-dir", str(tmp_path / "ck"))
    info = check_integrity(url, [0, 1, 2])
    assert info["labels"] == 26
    model = info["rounds"][2].model_path
    assert model and Path(model).is_file() and Path(model).parent.parent == tmp_path / "ck"

    status = json.loads(invoke("status", "--db", url, "--json").output)
    assert (status["pool"], status["test"], status["labeled"], status["pending"]) == (90, 30, 26, 0)
    assert [r["labels"] for r in status["rounds"]] == [None, 10, 18]
    text = invoke("status", "--db", url).output
    assert "entropy" in text and "dfal(fast)" in text and "top_k" not in text  # the table names the mode only
    assert status["rounds"][1]["strategy"] == "dfal"
    assert status["rounds"][1]["strategy_params"]["top_k"] == 10  # --json keeps every parameter

    # export -> import into the same project stores nothing new; history keeps superseded rows
    exported = tmp_path / "labels.csv"
    invoke("labels", "export", str(exported), "--db", url)
    rows = list(csv.DictReader(exported.open()))
    assert len(rows) == 26 and set(rows[0]) >= {"key", "label", "source", "time"}
    assert "0 label(s) added, 26 already stored" in invoke("labels", "import", str(exported), "--db", url).output

    # report: CSV and PNG, with a stored simulation of the same dataset beside the project
    from activeadv.records import CurvePoint

    with Store.open(url) as store:
        spec = store.get_project().dataset
        store.save_simulation(spec, {}, [CurvePoint("random", 0, r, 10 + 8 * r, 0.5 + 0.1 * r) for r in range(3)],
                              {})
    invoke("report", "--db", url, "--out", str(tmp_path / "report"))
    table = list(csv.DictReader((tmp_path / "report" / "rounds.csv").open()))
    assert [row["labels"] for row in table] == ["", "10", "18"]
    assert (tmp_path / "report" / "accuracy.png").stat().st_size > 1000
    assert len(list(csv.DictReader((tmp_path / "report" / "simulations.csv").open()))) == 3


def test_labels_import_is_all_or_nothing(project, tmp_path):
    url = project
    good = tmp_path / "good.csv"
    good.write_text("key,label,source,time\n50,top,import,2024-01-01T00:00:00Z\n51,middle,,\n")
    assert "2 label(s) added" in invoke("labels", "import", str(good), "--db", url).output
    assert "0 label(s) added, 2 already stored" in invoke("labels", "import", str(good), "--db", url).output
    bad = tmp_path / "bad.csv"
    bad.write_text("key,label\n52,top\n53,purple\n")
    result = invoke("labels", "import", str(bad), "--db", url, ok=False)
    assert result.exit_code == 1 and "unknown label 'purple'" in result.output and "Traceback" not in result.output
    bad.write_text("key,label\n52,top\nnope,top\n")
    assert "unknown item key 'nope'" in invoke("labels", "import", str(bad), "--db", url, ok=False).output
    with Store.open(url) as store:
        ids, _ = store.labels(store.get_project().id)
        assert len(ids) == 12  # 10 seed + 2 good; nothing from the bad files


def test_commands_refuse_an_out_of_date_schema(tmp_path, database_url, monkeypatch):
    store = Store(database_url)
    store.upgrade()
    store.close()
    # pretend this version of activeadv ships a newer migration than the database has
    monkeypatch.setattr(Store, "head", lambda self: "9999")
    for args in (["status"], ["round", "--oracle", "simulated"], ["labels", "export", str(tmp_path / "x.csv")],
                 ["init", "x", "--dataset", "digits"], ["report", "--out", str(tmp_path)]):
        result = invoke(*args, "--db", database_url, ok=False)
        assert result.exit_code == 1 and "run `activeadv db upgrade`" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert "out of date" in invoke("db", "current", "--db", database_url).output


def test_empty_database_is_refused_except_by_init(tmp_path, database_url):
    result = invoke("status", "--db", database_url, ok=False)
    assert result.exit_code == 1 and "activeadv db upgrade" in result.output
    data = make_npz(tmp_path / "tiny.npz")
    assert "created project 'tiny'" in invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", database_url,
                                              "-q").output
    assert "pool 90 items" in invoke("status", "--db", database_url).output


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["collected", "trained", "selected", "requested", "done"])
def test_crash_at_any_phase_then_rerun_finishes_the_round(project, tmp_path, phase):
    url = project
    args = ["round", "--oracle", "simulated", "--query-size", "7", "--strategy", "margin", "-q"]
    code, out, err = run_cli(tmp_path, url, *args, crash_at=phase)
    assert code == 75, err
    with Store.open(url) as store:
        assert store.lock_holder(store.get_project().id) is not None  # the dead process left its lock
    # rerun with another strategy: an unfinished round still ends with the one it started with
    code, out, err = run_cli(tmp_path, url, *args[:-2], "entropy", "-q")
    assert code == 0, err
    # a crash after the round was done leaves nothing to finish: the rerun is the next round
    expected = [0, 1, 2] if phase == "done" else [0, 1]
    info = check_integrity(url, expected)
    assert info["labels"] == 10 + 7 * (len(expected) - 1)
    # (a crash before the round was created leaves no round to finish: the rerun starts it with entropy)
    first = "entropy" if phase == "collected" else "margin"
    assert [r.strategy for r in info["rounds"]] == ["seed", first] + (["entropy"] if phase == "done" else [])


@pytest.mark.slow
def test_second_round_is_refused_while_one_runs_and_a_killed_one_resumes(project, tmp_path):
    url = project
    slow = ["round", "--oracle", "simulated", "--query-size", "5", "--strategy", "random", "-q",
            "--epochs", "100000", "--min-steps", "100000", "--adv", "pgd", "--adv-steps", "20"]
    runner = run_cli(tmp_path, url, *slow, wait=False)
    try:
        with Store.open(url) as store:
            pid = store.get_project().id
            deadline = time.monotonic() + 120
            while store.unfinished_round(pid) is None:  # the round exists once the lock is held
                assert runner.poll() is None, runner.communicate()
                assert time.monotonic() < deadline, "round did not start"
                time.sleep(0.2)
        code, out, err = run_cli(tmp_path, url, "round", "--oracle", "simulated", "-q")
        assert code == 1 and "is already running on this project" in err and "--force-unlock" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.communicate()
    code, out, err = run_cli(tmp_path, url, "round", "--oracle", "simulated", "--query-size", "5",
                             "--strategy", "random", "-q")
    assert code == 0, err
    info = check_integrity(url, [0, 1])
    assert info["labels"] == 15


def test_round_lock_held_elsewhere_is_refused(project):
    url = project
    with Store.open(url) as store:
        p = store.get_project()
        with store.lock(p.id):
            result = invoke("round", "--db", url, "--oracle", "simulated", "-q", ok=False)
            assert result.exit_code == 1 and "already running" in result.output
        assert len(store.rounds(p.id)) == 1  # nothing was started
        result = invoke("round", "--db", url, "--oracle", "simulated", "-q", "--query-size", "4")
        assert len(store.rounds(p.id)) == 2


def test_manual_workflow_without_an_annotation_server(tmp_path, sqlite_url):
    """--oracle none: requests wait in the database; export them, fill in labels, import, next round."""
    data = make_npz(tmp_path / "tiny.npz")
    invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", sqlite_url, "-q", *FAST)
    assert "(seed): requested 6" in invoke("round", "--db", sqlite_url, "--query-size", "6", "-q").output
    result = invoke("round", "--db", sqlite_url, "-q", ok=False)
    assert result.exit_code == 1 and "6 requested item(s) are still waiting" in result.output
    todo = tmp_path / "todo.csv"
    invoke("labels", "export", "--requested", str(todo), "--db", sqlite_url)
    rows = list(csv.DictReader(todo.open()))
    assert len(rows) == 6 and all(r["label"] == "" for r in rows)
    names = ["top", "middle", "bottom"]
    for r in rows[:4]:
        r["label"] = names[int(r["key"]) % 3]
    with todo.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = invoke("labels", "import", str(todo), "--db", sqlite_url).output
    assert "4 label(s) added" in out and "2 row(s) without a label" in out
    status = json.loads(invoke("status", "--db", sqlite_url, "--json").output)
    assert (status["labeled"], status["pending"]) == (4, 2)
    out = invoke("round", "--db", sqlite_url, "--query-size", "5", "--strategy", "margin", "--json", "-q").output
    assert json.loads(out)["labels_used"] == 4
    assert json.loads(invoke("status", "--db", sqlite_url, "--json").output)["pending"] == 7


def test_feature_vector_projects_say_how_their_values_are_scaled_and_run_rounds(tmp_path, sqlite_url):
    """npz (N, D) features in wildly different units: init says they are standardized, and rounds train on them."""
    rng = np.random.default_rng(0)
    y, y_test = np.arange(90) % 3, np.arange(30) % 3
    units = np.array([1e-3, 1.0, 1e4])

    def features(labels: np.ndarray) -> np.ndarray:
        return (np.eye(3)[labels] * 2 + rng.normal(0, 0.3, (len(labels), 3))) * units

    np.savez(tmp_path / "f.npz", x=features(y), y=y, x_test=features(y_test), y_test=y_test)
    out = invoke("init", "f", "--dataset", f"npz:{tmp_path / 'f.npz'}", "--db", sqlite_url, "-q", *FAST).output
    assert "inputs: 3 features, each standardized by the pool's mean and standard deviation" in out
    invoke("round", "--db", sqlite_url, "--oracle", "simulated", "--query-size", "9", "-q")
    result = json.loads(invoke("round", "--db", sqlite_url, "--oracle", "simulated", "--query-size", "6",
                               "--json", "-q").output)
    assert result["labels_used"] == 9 and result["accuracy"] is not None
    np.savez(tmp_path / "kept.npz", x=features(y), y=y, feature_scale=np.ones(3))
    out = invoke("init", "kept", "--dataset", f"npz:{tmp_path / 'kept.npz'}", "--db", sqlite_url, "-q").output
    assert "inputs: 3 features, in the units the file sets" in out
    out = invoke("init", "img", "--dataset", f"npz:{make_npz(tmp_path / 'img.npz')}", "--db", sqlite_url, "-q").output
    assert "created project 'img'" in out and "inputs:" not in out  # images are not rescaled


def test_rounds_record_agreement_status_shows_the_stopping_rule_and_run_stops_when_stable(project, tmp_path):
    """Each trained round stores kappa with the previous model; `run --until-stable` starts no round past it.

    The tiny dataset is separable, so consecutive models predict the stop set identically (kappa 1) and the
    rule (window 2 here) holds after the third trained round: a 10-round run must end there.
    """
    common = ["--db", project, "--oracle", "simulated", "--query-size", "5", "-q",
              "--checkpoint-dir", str(tmp_path / "ck"), "--min-steps", "40", "--unlabeled-steps", "40", "--adv", "none",
              "--warm-start"]
    out = invoke("run", "--rounds", "10", "--until-stable", "--stop-window", "2", "--stop-threshold", "0.95",
                 "--json", *common).output
    payload = json.loads(out)
    trained = [r for r in payload["curve"] if r["labels"] is not None]
    assert trained[0]["agreement"] is None  # the first model has nothing to agree with
    assert all(0.95 <= r["agreement"] <= 1.0 for r in trained[1:])
    assert len(trained) == 3 and len(payload["rounds"]) == 3  # stopped as soon as the rule held
    status = invoke("status", "--db", project).output
    assert "agree" in status and "stopping rule" in status
    report = invoke("report", "--db", project, "--out", str(tmp_path / "rep")).output
    rows = list(csv.DictReader(open(tmp_path / "rep" / "rounds.csv")))
    assert "stop_agreement" in rows[0] and rows[-1]["stop_agreement"] != ""
    assert "accuracy.png" in report


def test_random_until_makes_the_first_rounds_random_then_the_strategy(project, tmp_path):
    """`--random-until 15`: a round started with fewer labels picks at random (and is stored as random, so a
    crashed one finishes as random); from 15 labels on, the strategy asked for."""
    common = ["--db", project, "--oracle", "simulated", "--query-size", "5", "-q", "--strategy", "entropy",
              "--random-until", "15", "--checkpoint-dir", str(tmp_path / "ck")]
    invoke("round", *common)  # after the fixture's seed round, 10 labels < 15: random
    invoke("round", *common)  # 15: entropy
    with Store.open(project) as store:
        rounds = store.rounds(store.get_project().id)
    assert [(r.strategy, r.labels_used) for r in rounds] == [("seed", None), ("random", 10), ("entropy", 15)]


def test_by_default_one_random_round_follows_the_seed_round(project, tmp_path, monkeypatch):
    """The default cold start: the first round after the seed round picks at random, then the strategy."""
    monkeypatch.delenv("ACTIVEADV_RANDOM_UNTIL")
    common = ["--db", project, "--oracle", "simulated", "--query-size", "5", "-q", "--strategy", "entropy",
              "--checkpoint-dir", str(tmp_path / "ck")]
    invoke("round", *common)
    invoke("round", *common)
    with Store.open(project) as store:
        rounds = store.rounds(store.get_project().id)
    assert [(r.strategy, r.labels_used) for r in rounds] == [("seed", None), ("random", 10), ("entropy", 15)]


def test_by_default_a_project_with_ten_labels_a_class_asks_the_strategy_at_once(tmp_path, database_url,
                                                                                monkeypatch):
    """The default cold start is for a few labels: a seed round of 30 (10 a class of 3) is followed by the
    strategy's round."""
    monkeypatch.delenv("ACTIVEADV_RANDOM_UNTIL")
    data = make_npz(tmp_path / "tiny.npz")
    invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", database_url, "-q", *FAST)
    for _ in range(2):
        invoke("round", "--db", database_url, "--oracle", "simulated", "--query-size", "30", "-q", "--strategy",
               "entropy", "--checkpoint-dir", str(tmp_path / "ck"))
    with Store.open(database_url) as store:
        rounds = store.rounds(store.get_project().id)
    assert [(r.strategy, r.labels_used) for r in rounds] == [("seed", None), ("entropy", 30)]


def test_random_until_zero_asks_the_strategy_right_after_the_seed_round(project, tmp_path, monkeypatch):
    monkeypatch.delenv("ACTIVEADV_RANDOM_UNTIL")
    invoke("round", "--db", project, "--oracle", "simulated", "--query-size", "5", "-q", "--strategy", "entropy",
           "--random-until", "0", "--checkpoint-dir", str(tmp_path / "ck"))
    with Store.open(project) as store:
        rounds = store.rounds(store.get_project().id)
    assert [r.strategy for r in rounds] == ["seed", "entropy"]
