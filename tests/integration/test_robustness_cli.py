"""The robustness suite in the product: stored per round, shown by status and report, `activeadv robustness`,
ensemble adversarial training on earlier checkpoints, and simulate's robustness.csv.

Tiny separable npz (test_round.make_npz), a handful of training steps, 2 eps, 2 attack steps: behaviour, not
accuracy.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_round import FAST, invoke, make_npz

from activeadv.cli import cli
from activeadv.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SUITE = ["--eval-subset", "20", "--eval-eps", "0.05,0.1", "--eval-steps", "2"]


def _init(tmp_path: Path, url: str, *extra: str) -> Path:
    data = make_npz(tmp_path / "tiny.npz")
    invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", url, "-q", *FAST, *extra)
    return data


def _round(url: str, tmp_path: Path, *extra: str) -> dict:
    out = invoke("round", "--db", url, "--oracle", "simulated", "--query-size", "10", "--json", "-q",
                 "--checkpoint-dir", str(tmp_path / "ck"), *extra).output
    return json.loads(out)


def test_rounds_store_the_suite_status_report_and_robustness_show_it(tmp_path, database_url):
    data = _init(tmp_path, database_url, *SUITE)
    assert _round(database_url, tmp_path)["robustness"] is None  # the seed round trains nothing
    first = _round(database_url, tmp_path)
    assert first["round"] == 1 and "robustness" in first["timings"]
    suite = first["robustness"]
    assert suite["eps"] == 0.05 and suite["n"] == 20  # the sweep's eps nearest the training eps (0.05)
    assert set(suite["accuracy"]) == {"clean", "fgsm", "fgsm_true", "fgsm_pred", "bim", "pgd", "pgd_l2", "ll"}
    assert suite["worst"] == min(suite["at_eps"].values()) and suite["worst_attack"] in suite["at_eps"]
    second = _round(database_url, tmp_path)  # transfer from round 1's model
    assert {"transfer", "transfer_fgsm", "transfer_pgd"} <= set(second["robustness"]["accuracy"])

    with Store.open(database_url) as store:
        stored = store.robustness(store.get_project().id)
    assert sorted(stored) == [1, 2]
    assert {(r.attack, r.eps) for r in stored[1]} == {("clean", 0.0)} | {
        (a, e) for a in ("fgsm", "fgsm_true", "fgsm_pred", "bim", "pgd", "pgd_l2", "ll") for e in (0.05, 0.1)}
    assert all(r.n == 20 and r.seconds >= 0 for r in stored[2])
    assert {r.norm for r in stored[2] if r.attack == "pgd_l2"} == {"2"}

    status = json.loads(invoke("status", "--db", database_url, "--json").output)
    assert [r["robustness"] is None for r in status["rounds"]] == [True, False, False]
    assert status["rounds"][2]["robustness"]["accuracy"] == second["robustness"]["accuracy"]
    text = invoke("status", "--db", database_url).output
    assert "worst" in text and "xfer" in text and "at eps 0.05" in text

    invoke("report", "--db", database_url, "--out", str(tmp_path / "report"))
    rows = list(csv.DictReader((tmp_path / "report" / "robustness.csv").open()))
    assert {r["round"] for r in rows} == {"1", "2"} and {r["labels"] for r in rows} == {"10", "20"}
    assert set(rows[0]) == {"round", "labels", "attack", "eps", "norm", "radius", "accuracy", "n", "seconds"}
    assert len(rows) == len(stored[1]) + len(stored[2])
    assert (tmp_path / "report" / "robustness.png").read_bytes()[:4] == b"\x89PNG"

    # `robustness --checkpoint 2`: the project's suite settings and surrogate (round 1): the numbers it stored
    again = json.loads(invoke("robustness", "--checkpoint", "2", "--db", database_url, "--json", "-q").output)
    assert again["round"] == 2 and again["n"] == 20 and again["surrogates"][0].endswith("round-0001.pt")
    assert again["accuracy"] == second["robustness"]["accuracy"]
    assert again["trained_with"]["adv"] == "fgsm" and again["trained_with"]["epsilon"] == 0.05
    # a checkpoint file with a dataset spec, other settings, an explicit surrogate; a plain table
    ck = Path(again["model"])
    table = invoke("robustness", "--checkpoint", str(ck), "--dataset", f"npz:{data}", "--eval-eps", "0.1",
                   "--eval-attacks", "fgsm,pgd,transfer", "--eval-subset", "12", "--eval-steps", "1",
                   "--surrogate", str(ck.parent / "round-0001.pt"), "-q").output
    lines = table.splitlines()
    assert "attacked 12 items" in lines[1] and lines[2].split() == ["attack", "eps", "0.1"]
    assert [line.split()[0] for line in lines[3:-1]] == ["clean", "fgsm", "pgd", "transfer_fgsm", "transfer_pgd",
                                                         "transfer"]
    missing = invoke("robustness", "--checkpoint", "7", "--db", database_url, ok=False)
    assert missing.exit_code == 1 and "no round 7" in missing.output and "Traceback" not in missing.output
    seed = invoke("robustness", "--checkpoint", "0", "--db", database_url, ok=False)
    assert seed.exit_code == 1 and "trained no model" in seed.output


def test_robustness_refuses_what_it_cannot_evaluate_in_one_line(tmp_path, sqlite_url):
    data = _init(tmp_path, sqlite_url)
    _round(sqlite_url, tmp_path)
    _round(sqlite_url, tmp_path)  # the suite is off by default: nothing stored, but the command still works
    with Store.open(sqlite_url) as store:
        assert store.robustness(store.get_project().id) == {}
    ok = json.loads(invoke("robustness", "--checkpoint", "1", "--db", sqlite_url, "--json", "-q",
                           "--eval-eps", "0.1", "--eval-steps", "1").output)
    assert ok["n"] == 30 and ok["surrogates"] == []  # default subset 1000: the whole 30-item test split
    ck = Path(ok["model"])
    for args, says in [
        (["--checkpoint", str(ck)], "needs --dataset"),
        (["--checkpoint", str(ck), "--dataset", "digits"], "inputs of shape"),
        (["--checkpoint", str(tmp_path / "tiny.npz"), "--dataset", f"npz:{data}"], "not an activeadv checkpoint"),
        (["--checkpoint", "1", "--db", sqlite_url, "--eval-subset", "0"], "turns the suite off"),
        (["--checkpoint", "1", "--db", sqlite_url, "--eval-attacks", "fgsm,magic"], "unknown attack 'magic'"),
        (["--checkpoint", "1", "--db", sqlite_url, "--eval-eps", "0.1,x"], "comma-separated numbers"),
        (["--checkpoint", "1", "--db", sqlite_url, "--surrogate", "9"], "no round 9"),
    ]:
        result = CliRunner().invoke(cli, ["robustness", "-q", *args])
        assert result.exit_code != 0 and says in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_ensemble_training_in_a_project_uses_the_frozen_checkpoints_of_earlier_rounds(tmp_path, sqlite_url,
                                                                                      monkeypatch):
    from activeadv import robustness, training

    _init(tmp_path, sqlite_url, "--adv-ensemble", "1", *SUITE)
    real_train, real_load, real_suite = training.train, training.load_checkpoint, robustness.evaluate_robustness
    calls: list[dict] = []
    loads: list[Path] = []
    surrogates: list[list] = []

    def spy(*args, **kwargs):
        statics = list(kwargs.get("static_models", ()))
        before = [{k: v.clone() for k, v in m.state_dict().items()} for m in statics]
        model = real_train(*args, **kwargs)
        calls.append({"statics": statics, "before": before, "model": model})
        return model

    def load_spy(path, *args, **kwargs):
        loads.append(Path(path))
        return real_load(path, *args, **kwargs)

    def suite_spy(*args, **kwargs):
        surrogates.append(list(kwargs.get("surrogates", ())))
        return real_suite(*args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    monkeypatch.setattr(training, "load_checkpoint", load_spy)
    monkeypatch.setattr(robustness, "evaluate_robustness", suite_spy)
    _round(sqlite_url, tmp_path)  # seed
    _round(sqlite_url, tmp_path)  # round 1: no earlier checkpoint, train() trains its own surrogate
    _round(sqlite_url, tmp_path)  # round 2: round 1's checkpoint is the static model
    first, second = [c for c in calls if c["model"] is not None][-2:]
    assert first["statics"] == []
    (static,) = second["statics"]
    saved = torch.load(tmp_path / "ck" / "1-tiny" / "round-0001.pt", weights_only=True)["state_dict"]
    assert static is not first["model"]  # loaded from the checkpoint file, not the model kept in memory
    for name, value in static.state_dict().items():
        assert torch.equal(value, saved[name]) and torch.equal(value, second["before"][0][name])  # never updated
    assert not static.training and all(p.requires_grad for p in static.parameters())  # flags restored afterwards
    # the warm-start/agreement model, the static model and the transfer surrogate: one file, loaded once
    assert loads == [tmp_path / "ck" / "1-tiny" / "round-0001.pt"]
    assert surrogates[-2] == [] and surrogates[-1][0] is static


def test_simulate_records_the_suite_per_round_and_summarises_the_last(tmp_path):
    data = make_npz(tmp_path / "tiny.npz")
    out = tmp_path / "sim"
    args = ["simulate", "--dataset", f"npz:{data}", "--strategies", "random", "--initial", "10", "--query-size", "5",
            "--budget", "20", "--seeds", "1", "--target-accuracy", "0.5", "--out", str(out), "-q",
            "--epochs", "1", "--min-steps", "3", "--batch-size", "16", "--epsilon", "0.1", "--eval-subset", "12",
            "--eval-eps", "0.1,0.2", "--eval-steps", "1", "--eval-attacks", "fgsm,pgd,transfer"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "last round's robustness" in result.output and "worst" in result.output
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert {(r["round"], r["labels"]) for r in rows} == {("0", "10"), ("1", "15"), ("2", "20")}
    assert {r["attack"] for r in rows if r["round"] == "0"} == {"clean", "fgsm", "pgd"}  # no earlier model yet
    assert {r["attack"] for r in rows if r["round"] == "2"} >= {"transfer", "transfer_fgsm", "transfer_pgd"}
    summary = json.loads((out / "summary.json").read_text())
    suite = summary["strategies"]["random"]["robustness"]
    last = {(r["attack"], r["eps"]): float(r["accuracy"]) for r in rows if r["round"] == "2"}
    assert suite["accuracy"]["pgd"]["0.2"] == pytest.approx(last[("pgd", "0.2")], abs=1e-6)
    assert suite["headline"]["eps"] == 0.1 and suite["seeds"] == 1
    assert "robustness" in summary["phase_seconds_per_round"]["random"]
    # resume reads the suite back from points.jsonl
    again = CliRunner().invoke(cli, [*args, "--resume"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert list(csv.DictReader((out / "robustness.csv").open())) == rows
