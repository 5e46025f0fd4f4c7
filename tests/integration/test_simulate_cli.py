"""`activeadv simulate` end to end: a real subprocess on digits, and bad input through CliRunner."""

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from activeadv.cli import cli

FAST = ["--epochs", "1", "--min-steps", "15", "--unlabeled-steps", "15", "--quiet"]


@pytest.mark.slow
def test_simulate_subprocess_writes_curves_summary_and_plot(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "activeadv", "simulate", "--dataset", "digits",
           "--strategies", "random,entropy,dfal,fgsm-margin", "--initial", "20", "--query-size", "10",
           "--budget", "30", "--seeds", "2", "--out", str(out), *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "target accuracy" in proc.stdout and "dfal" in proc.stdout
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert set(rows[0]) == {"strategy", "seed", "round", "labels", "accuracy", "fgsm_accuracy", "agreement"}
    assert all((r["agreement"] == "") == (r["round"] == "0") for r in rows)  # kappa from the second round on
    # 4 strategies x 2 seeds x 2 rounds (20, 30 labels)
    assert len(rows) == 16
    assert sorted({int(r["labels"]) for r in rows}) == [20, 30]
    # every strategy of a seed starts from the same initial set, so round 0 is identical
    first = {(r["seed"], r["accuracy"]) for r in rows if r["round"] == "0"}
    assert len(first) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "digits"
    assert 0 < summary["target_accuracy"] < 1 and summary["reference_accuracy"] > 0.5
    for name in ("random", "entropy", "dfal", "fgsm-margin"):
        stats = summary["strategies"][name]
        for key in ("aulc_mean", "aulc_std", "final_accuracy_mean", "final_accuracy_std",
                    "labels_to_target_mean", "saving_vs_random", "stop_labels_mean", "stopped", "labels_to"):
            assert key in stats
        assert set(stats["labels_to"]) == {"0.97", "0.98", "0.99"} and len(stats["labels_to"]["0.97"]) == 2
        assert 0 <= stats["aulc_mean"] <= 1
    png = (out / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_simulate_is_deterministic_with_seed(tmp_path):
    runner = CliRunner()
    args = ["simulate", "--strategies", "random,margin", "--initial", "10", "--query-size", "5", "--budget", "15",
            "--seeds", "1", "--target-accuracy", "0.5", "--json", *FAST]
    a = runner.invoke(cli, [*args, "--out", str(tmp_path / "a")])
    b = runner.invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    assert (tmp_path / "a" / "curves.csv").read_text() == (tmp_path / "b" / "curves.csv").read_text()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "idx:/no/such/folder"], "not found"),
    (["--strategies", "random,magic"], "unknown strategy 'magic'"),
    (["--epsilon", "-0.1"], "--epsilon must be >= 0"),
    (["--alpha", "1.5"], "--alpha must be in [0, 1]"),
    (["--budget", "5000"], "larger than the pool"),
    (["--budget", "10", "--initial", "20"], "smaller than --initial"),
])
def test_bad_input_is_one_line_error(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["simulate", "--out", str(tmp_path), "--target-accuracy", "0.5", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0  # one line


def test_empty_image_folder_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["simulate", "--dataset", f"folder:{tmp_path / 'empty'}", "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 1 and "no images found" in result.output


def test_simulate_stores_the_run_when_a_database_is_given(tmp_path):
    from activeadv.store import Store

    url = f"sqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "--db", url]).exit_code == 0
    result = runner.invoke(cli, ["simulate", "--strategies", "random", "--initial", "10", "--query-size", "5",
                                 "--budget", "15", "--seeds", "1", "--target-accuracy", "0.5", "--db", url,
                                 "--out", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 0, result.output
    assert "stored as simulation run" in result.output
    with Store.open(url) as store:
        runs = store.simulations()
    assert len(runs) == 1 and runs[0].dataset == "digits"


def test_simulate_resume_keeps_finished_curves_and_refuses_other_settings(tmp_path):
    """A killed study continues: curves complete in points.jsonl are taken as they are, not rerun."""
    out = tmp_path / "run"
    base = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "30", "--seeds",
            "1", "--target-accuracy", "0.5", "--out", str(out), *FAST]
    first = CliRunner().invoke(cli, [*base, "--strategies", "random"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    log_lines = (out / "points.jsonl").read_text().splitlines()
    assert len(log_lines) == 3  # settings + 2 rounds
    # mark the logged curve: if random were rerun, its accuracy would be the real one again
    (out / "points.jsonl").write_text("\n".join([log_lines[0]] + [
        json.dumps({**json.loads(line), "accuracy": 0.123456}) for line in log_lines[1:]]) + "\n")
    again = CliRunner().invoke(cli, [*base, "--strategies", "random,entropy", "--resume", "--json"],
                               catch_exceptions=False)
    assert again.exit_code == 0, again.output
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert {r["accuracy"] for r in rows if r["strategy"] == "random"} == {"0.123456"}  # kept, not retrained
    assert len([r for r in rows if r["strategy"] == "entropy"]) == 2  # the missing curve was run
    other = CliRunner().invoke(cli, [*base, "--strategies", "random", "--resume", "--lr", "0.01"])
    assert other.exit_code != 0 and "other settings" in other.output


@pytest.mark.slow
def test_simulate_jobs_runs_curves_in_processes_with_the_same_points(tmp_path):
    """--jobs 2 spreads (strategy, seed) curves over two spawned processes: the same points as one process (both
    at one torch thread: a process's share of threads is part of what decides its floating point), every curve
    logged for --resume, and the rows in the order of a sequential run.  The final models (--final-model) are
    spread the same way: the same models, in the run's order in the summary."""
    base = [sys.executable, "-m", "activeadv", "simulate", "--dataset", "digits", "--strategies", "random,dfal",
            "--initial", "20", "--query-size", "10", "--budget", "40", "--seeds", "2", "--target-accuracy", "0.5",
            "--final-model", "--final-steps", "12", *FAST]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for jobs in (1, 2):
        outs[jobs] = tmp_path / f"jobs{jobs}"
        proc = subprocess.run([*base, "--jobs", str(jobs), "--out", str(outs[jobs])], capture_output=True,
                              text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stderr
    one, two = ((outs[j] / "curves.csv").read_text() for j in (1, 2))
    assert one == two
    logged = [json.loads(line) for line in (outs[2] / "points.jsonl").read_text().splitlines()[1:]]
    assert sorted((p["strategy"], p["seed"], p["round"]) for p in logged) == sorted(
        (s, seed, r) for s in ("random", "dfal") for seed in (0, 1) for r in range(3))
    finals = {}
    for jobs in (1, 2):
        rows = [json.loads(line) for line in (outs[jobs] / "final.jsonl").read_text().splitlines()[1:]]
        finals[jobs] = sorted((r["strategy"], r["seed"], r["labels"], r["accuracy"]) for r in rows)
    assert finals[1] == finals[2] and [f[:3] for f in finals[1]] == sorted(
        (s, seed, 40) for s in ("random", "dfal") for seed in (0, 1))
    summaries = [json.loads((outs[j] / "summary.json").read_text())["strategies"] for j in (1, 2)]
    for name in ("random", "dfal"):  # seed 0's model first, then seed 1's, whichever process finished first
        accuracies = [dict(((r[1], r[0]), r[3]) for r in finals[1])[(seed, name)] for seed in (0, 1)]
        assert summaries[0][name]["final_model"]["accuracy"] == summaries[1][name]["final_model"]["accuracy"] == \
            accuracies


def test_simulate_jobs_refuses_ray_and_zero(tmp_path):
    base = ["simulate", "--dataset", "digits", "--budget", "30", "--seeds", "1", "--out", str(tmp_path), *FAST]
    zero = CliRunner().invoke(cli, [*base, "--jobs", "0"])
    assert zero.exit_code != 0 and "--jobs" in zero.output
    ray = CliRunner().invoke(cli, [*base, "--jobs", "2", "--executor", "ray"])
    assert ray.exit_code == 1 and "--ray-workers" in ray.output and "Traceback" not in ray.output


def test_simulate_resume_reads_a_log_written_before_an_option_existed(tmp_path):
    """A log from an older version (no lr_schedule, ema or eval_* keys, `candidates` for `subsample`) is the same
    run when those options are at what that version did (the defaults; --ema 0, as ema's default changed): its
    curves are kept; a changed option is still refused."""
    out = tmp_path / "run"
    base = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "30", "--seeds",
            "1", "--target-accuracy", "0.5", "--strategies", "random", "--out", str(out), "--ema", "0", *FAST]
    assert CliRunner().invoke(cli, base, catch_exceptions=False).exit_code == 0
    lines = (out / "points.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    settings = header["settings"]
    settings["candidates"] = settings.pop("subsample")
    for key in [k for k in settings["train"] if k in ("lr_schedule", "ema") or k.startswith("eval_")]:
        del settings["train"][key]
    marked = [json.dumps({**{k: v for k, v in json.loads(line).items() if k != "added"}, "accuracy": 0.123456})
              for line in lines[1:]]  # older logs hold no picked ids either
    (out / "points.jsonl").write_text("\n".join([json.dumps(header), *marked]) + "\n")
    again = CliRunner().invoke(cli, [*base, "--resume"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert {r["accuracy"] for r in csv.DictReader(open(out / "curves.csv"))} == {"0.123456"}
    other = CliRunner().invoke(cli, [*base, "--resume", "--lr-schedule", "cosine"])
    assert other.exit_code != 0 and "other settings" in other.output
    today = CliRunner().invoke(cli, [*base, "--resume", "--ema", "0.99"])  # today's default is another run
    assert today.exit_code != 0 and "other settings" in today.output


def test_the_log_rebuilds_each_rounds_labeled_set_for_a_final_training(tmp_path):
    """points.jsonl holds each round's new ids: labeled_at rebuilds what a strategy had labeled at any round (the
    initial set first), and scripts/train_probe.py --labels-from trains on it."""
    from activeadv.data import load_dataset
    from activeadv.errors import ConfigError
    from activeadv.simulation import SimulationConfig, _initial_set, labeled_at, read_point_log

    out = tmp_path / "run"
    args = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "40", "--seeds",
            "1", "--target-accuracy", "0.5", "--strategies", "entropy", "--out", str(out), *FAST]
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    _, logged = read_point_log(out / "points.jsonl")
    points = [p for p, _ in logged]
    pool = load_dataset("digits").pool
    initial = _initial_set(pool, SimulationConfig(strategies=("entropy",), initial=20, query_size=10, budget=40),
                           0)
    np.testing.assert_array_equal(labeled_at(points, "entropy", 0, 20), initial)
    at40 = labeled_at(points, "entropy", 0, 40)
    assert len(set(at40.tolist())) == 40 and set(initial) <= set(at40.tolist())
    assert set(at40[:30].tolist()) == set(labeled_at(points, "entropy", 0, 30).tolist())
    with pytest.raises(ConfigError, match="no point at 35"):
        labeled_at(points, "entropy", 0, 35)
    stripped = [replace(p, added=()) for p in points]
    with pytest.raises(ConfigError, match="before simulate logged"):
        labeled_at(stripped, "entropy", 0, 30)
    probe = subprocess.run([sys.executable, "scripts/train_probe.py", "--dataset", "digits", "--labels", "30",
                            "--labels-from", str(out), "--strategy", "entropy", "--threads", "1",
                            '{"min_steps": 20, "epochs": 1}'], capture_output=True, text=True, timeout=600,
                           cwd=Path(__file__).resolve().parents[2])
    assert probe.returncode == 0, probe.stderr
    line = json.loads(probe.stdout.splitlines()[-1])
    assert line["chosen_by"] == "entropy seed 0" and line["labels"] == 30 and 0 < line["accuracy"] <= 1


def _jobs_run_with_rounds_logged(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[str]]:
    """A long ``simulate --jobs 2`` in a subprocess, once it has logged 2 rounds: (process, its log, worker pids)."""
    import os
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "activeadv", "simulate", "--dataset", "digits", "--strategies", "random,dfal",
           "--initial", "20", "--query-size", "10", "--budget", "400", "--seeds", "2", "--target-accuracy", "0.9",
           "--jobs", "2", "--out", str(out), *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = out / "points.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.5)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True,
                             text=True).stdout.split()
    return proc, log, workers


def _gone(pid: str) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


@pytest.mark.slow
def test_simulate_jobs_a_killed_worker_is_a_one_line_error_and_keeps_finished_rounds(tmp_path):
    import os
    import signal

    proc, log, workers = _jobs_run_with_rounds_logged(tmp_path)
    assert workers, "no worker process found"
    os.kill(int(workers[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "worker process died" in err and "--resume" in err and "Traceback" not in err
    assert len(log.read_text().splitlines()) >= 3  # the rounds finished before stay logged
    # the other worker was stopped too, not left to go on with the next curve
    assert all(_gone(pid) for pid in workers[1:])


def test_simulate_jobs_sigterm_stops_the_workers_too_and_keeps_finished_rounds(tmp_path):
    """``timeout`` and ``kill`` send SIGTERM to simulate: its worker processes stop with it instead of training
    their curves on, unseen, until they next try to report."""
    import signal

    proc, log, workers = _jobs_run_with_rounds_logged(tmp_path)
    assert len(workers) == 2, "the two worker processes should be running"
    logged = len(log.read_text().splitlines())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert len(log.read_text().splitlines()) >= logged  # the rounds finished before stay logged
    # both were stopped by simulate itself (a worker's curve takes minutes more)
    assert all(_gone(pid) for pid in workers)


def test_simulate_final_model_trains_each_curves_labels_with_the_recipe_and_resume_keeps_it(tmp_path, monkeypatch):
    """--final-model: after the curves, one long training per curve on exactly the labels it ended with, with the
    final recipe (VAT, averaging 0.999, --final-steps); final.jsonl keeps them for --resume."""
    import activeadv.training as training
    from activeadv.simulation import labeled_at, read_point_log

    calls = []
    real_train = training.train

    def recording_train(pool, ids, labels, cfg, **kwargs):
        calls.append((np.array(ids), cfg, kwargs.get("unlabeled_ids")))
        return real_train(pool, ids, labels, cfg, **kwargs)

    monkeypatch.setattr(training, "train", recording_train)
    out = tmp_path / "run"
    base = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "30", "--seeds",
            "1", "--target-accuracy", "0.5", "--strategies", "entropy", "--out", str(out), "--final-model", *FAST]
    result = CliRunner().invoke(cli, [*base, "--final-steps", "12"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "final model (12 steps)" in result.output and "entropy:" in result.output
    finals = [c for c in calls if c[1].ema == 0.999]
    assert len(finals) == 1 and len(calls) == 3  # 2 rounds + 1 final model
    ids, cfg, unlabeled = finals[0]
    _, logged = read_point_log(out / "points.jsonl")
    np.testing.assert_array_equal(ids, labeled_at([p for p, _ in logged], "entropy", 0, 30))
    assert (cfg.unlabeled, cfg.unlabeled_min_steps, cfg.unlabeled_batch_size, cfg.augment) == ("vat", 12, 256, True)
    assert cfg.min_steps == 15 and not set(unlabeled.tolist()) & set(ids.tolist())  # the run's own settings beside
    lines = (out / "final.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["final"]["unlabeled_min_steps"] == 12
    model = json.loads(lines[1])
    assert (model["strategy"], model["seed"], model["labels"]) == ("entropy", 0, 30)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategies"]["entropy"]["final_model"]["accuracy"] == [model["accuracy"]]

    # --resume keeps a logged final model (marked: a retrained one would have its real accuracy)
    (out / "final.jsonl").write_text(lines[0] + "\n" + json.dumps({**model, "accuracy": 0.123456}) + "\n")
    calls.clear()
    again = CliRunner().invoke(cli, [*base, "--final-steps", "12", "--resume", "--json"], catch_exceptions=False)
    assert again.exit_code == 0 and calls == []
    assert json.loads(again.output)["strategies"]["entropy"]["final_model"]["accuracy"] == [0.123456]
    # other final settings: the log measured something else, so the final model is trained again
    longer = CliRunner().invoke(cli, [*base, "--final-steps", "13", "--resume", "--json"], catch_exceptions=False)
    assert longer.exit_code == 0 and len(calls) == 1 and calls[0][1].unlabeled_min_steps == 13
    assert json.loads(longer.output)["strategies"]["entropy"]["final_model"]["accuracy"] != [0.123456]
    # an ensemble of 2 model seeds: other settings again (trained anew), the curve's seed and the next one
    calls.clear()
    pair = CliRunner().invoke(cli, [*base, "--final-steps", "13", "--final-ensemble", "2", "--resume"],
                              catch_exceptions=False)
    assert pair.exit_code == 0 and [c[1].seed for c in calls] == [0, 1], pair.output
    assert all(np.array_equal(c[0], ids) for c in calls) and "(ensembles of 2 models)" in pair.output
    lines = (out / "final.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["ensemble"] == 2 and json.loads(lines[1])["members"] == 2
    assert json.loads((out / "summary.json").read_text())["strategies"]["entropy"]["final_model"]["members"] == 2


def test_simulate_random_until_picks_at_random_while_the_curve_is_small(tmp_path):
    """--random-until N: a curve's rounds pick exactly what random picks while it holds fewer than N labels,
    then its own strategy; the setting is part of the run's settings (resume)."""
    from activeadv.simulation import read_point_log

    out = tmp_path / "run"
    args = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "40", "--seeds",
            "1", "--target-accuracy", "0.5", "--strategies", "random,entropy", "--random-until", "30",
            "--out", str(out), *FAST]
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    settings, logged = read_point_log(out / "points.jsonl")
    assert settings["random_until"] == 30
    added = {(p.strategy, p.labels): set(p.added) for p, _ in logged}
    assert added[("entropy", 30)] == added[("random", 30)]  # 20 labels < 30: a random round, the same draw
    assert added[("entropy", 40)] != added[("random", 40)]  # 30 labels: entropy's own pick
    other = CliRunner().invoke(cli, [*args[:-len(FAST) - 2], "--random-until", "0", "--out", str(out), "--resume",
                                     *FAST])
    assert other.exit_code != 0 and "other settings" in other.output


def test_simulate_by_default_picks_one_round_at_random_after_the_initial_set(tmp_path):
    """Without --random-until, a curve's first round after the initial set is random (initial + query size, logged
    as such); --random-until 0 asks the strategy from the first round."""
    from activeadv.simulation import read_point_log

    added = {}
    for until in (None, 0):
        out = tmp_path / f"run{until}"
        args = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "40",
                "--seeds", "1", "--target-accuracy", "0.5", "--strategies", "random,entropy", "--out", str(out),
                *([] if until is None else ["--random-until", str(until)]), *FAST]
        assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
        settings, logged = read_point_log(out / "points.jsonl")
        assert settings["random_until"] == (30 if until is None else 0)
        added[until] = {(p.strategy, p.labels): set(p.added) for p, _ in logged}
    assert added[None][("entropy", 30)] == added[None][("random", 30)]  # the one random round
    assert added[None][("entropy", 40)] != added[None][("random", 40)]  # then entropy
    assert added[0][("entropy", 30)] != added[0][("random", 30)]  # off: entropy from the first round



def test_dfal_add_adversarial_copies_only_the_points_dfal_asked_for(tmp_path, monkeypatch):
    """--dfal-add-adversarial: the DeepFool copies of dfal's own picks join training with their labels; the
    cold-start random round's picks get none (far from the boundary, their copy is another class's image)."""
    from activeadv.acquisition import DFAL
    from activeadv.simulation import read_point_log

    copied: list[set[int]] = []
    original = DFAL.adversarial_examples

    def record(self, model, pool, ids):
        copied.append({int(i) for i in ids})
        return original(self, model, pool, ids)

    monkeypatch.setattr(DFAL, "adversarial_examples", record)
    trained_with: list[int] = []
    import activeadv.training as training

    real_train = training.train

    def counting_train(pool, labeled, labels, cfg, *, extra_x=None, **kw):
        trained_with.append(0 if extra_x is None else len(extra_x))
        return real_train(pool, labeled, labels, cfg, extra_x=extra_x, **kw)

    monkeypatch.setattr(training, "train", counting_train)  # Execution.trainer() looks it up per curve
    out = tmp_path / "run"
    args = ["simulate", "--dataset", "digits", "--initial", "20", "--query-size", "10", "--budget", "50", "--seeds",
            "1", "--target-accuracy", "0.5", "--strategies", "dfal", "--dfal-add-adversarial", "--out", str(out),
            *FAST]
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    _, logged = read_point_log(out / "points.jsonl")
    added = {p.labels: set(p.added) for p, _ in logged}
    # rounds at 20 (initial), 30 (the random round's picks), 40 and 50 (dfal's picks at 30 and 40 labels)
    assert copied == [added[40], added[50]]
    assert trained_with == [0, 0, 10, 20]
