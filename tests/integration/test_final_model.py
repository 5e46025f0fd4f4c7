"""`activeadv final-model`: one long training on every stored label, written as a checkpoint; nothing stored
changes.  Tiny separable npz (test_round.make_npz), a few dozen steps: behaviour, not accuracy figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_round import FAST, invoke, make_npz

from activeadv.app.final import FinalPlan, train_final
from activeadv.app.workspace import Workspace
from activeadv.cli import cli
from activeadv.errors import ConfigError
from activeadv.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHORT = ["--unlabeled-steps", "20", "--min-steps", "20", "--batch-size", "16", "--unlabeled-batch-size", "16"]


def _project_with_labels(tmp_path: Path, url: str) -> None:
    data = make_npz(tmp_path / "tiny.npz")
    invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", url, "-q", *FAST)
    for _ in range(2):  # the seed round's 10 labels, then 10 chosen by dfal
        invoke("round", "--db", url, "--oracle", "simulated", "--query-size", "10", "-q",
               "--checkpoint-dir", str(tmp_path / "ck"))


def _snapshot(url: str) -> tuple:
    with Store.open(url) as store:
        project = store.get_project()
        ids, labels = store.labels(project.id)
        status = store.status(project.id)
        return (sorted(zip(ids.tolist(), labels.tolist())), [(r.number, r.state, r.model_path) for r in status.rounds],
                status.pending)


def _final(url: str, tmp_path: Path, *extra: str) -> dict:
    out = invoke("final-model", "--db", url, "--json", "--checkpoint-dir", str(tmp_path / "ck"), *SHORT,
                 *extra).output
    return json.loads(out)


def test_final_model_trains_on_every_label_with_the_recipe_and_changes_nothing_stored(tmp_path, database_url):
    _project_with_labels(tmp_path, database_url)
    before = _snapshot(database_url)
    report = _final(database_url, tmp_path)
    assert _snapshot(database_url) == before  # no round, no request, no label touched
    assert report["labels"] == len(before[0]) == 20 and report["test_items"] == 30
    path = Path(report["checkpoint"])
    assert path.name == "final-20-labels-seed-0.pt" and path.parent.parent == (tmp_path / "ck").resolve()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    cfg = saved["config"]
    # the recipe over the project's settings, the typed options over the recipe
    assert (cfg["unlabeled"], cfg["ema"], cfg["augment"]) == ("vat", 0.999, True)
    assert (cfg["unlabeled_min_steps"], cfg["unlabeled_batch_size"], cfg["batch_size"]) == (20, 16, 16)
    assert cfg["epsilon"] == 0.05  # the project's (FAST), not the default 0.1
    assert saved["meta"] == {"project": "tiny", "final": True, "labels": 20, "recipe": "final", "ensemble": 1}
    assert report["settings"]["unlabeled"] == "vat" and report["settings"]["unlabeled_min_steps"] == 20

    # the saved weights are the reported model: the robustness suite's clean accuracy on the same test split
    suite = json.loads(invoke("robustness", "--checkpoint", str(path), "-p", "tiny", "--db", database_url, "--json",
                              "--eval-attacks", "fgsm", "--eval-eps", "0.05", "--eval-subset", "30", "-q").output)
    clean = [r for r in suite["rows"] if r["attack"] == "clean"][0]
    assert clean["accuracy"] == pytest.approx(report["accuracy"])

    again = _final(database_url, tmp_path)  # same seed: the same model, in a new file (never overwritten)
    assert Path(again["checkpoint"]).name == "final-20-labels-seed-0-2.pt" and path.exists()
    weights = torch.load(again["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], saved["state_dict"][k]) for k in weights)
    assert again["accuracy"] == report["accuracy"]


def test_project_recipe_and_out_file(tmp_path, database_url):
    _project_with_labels(tmp_path, database_url)
    out = tmp_path / "models" / "ship.pt"
    report = _final(database_url, tmp_path, "--recipe", "project", "--out", str(out))
    assert Path(report["checkpoint"]) == out.resolve() and out.exists()
    cfg = torch.load(out, map_location="cpu", weights_only=True)["config"]
    assert cfg["unlabeled"] == "none" and cfg["ema"] == 0.99  # the project's settings (init's defaults)
    assert _final(database_url, tmp_path, "--recipe", "project", "--out", str(out))["checkpoint"] == str(
        out.resolve())  # an explicit --out is replaced


def test_a_project_without_labels_or_a_folder_as_out_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    data = make_npz(tmp_path / "tiny.npz")
    invoke("init", "tiny", "--dataset", f"npz:{data}", "--db", url, "-q", *FAST)
    result = CliRunner().invoke(cli, ["final-model", "--db", url, "-q", *SHORT])
    assert result.exit_code == 1 and "no labels yet" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    invoke("round", "--db", url, "--oracle", "simulated", "--query-size", "10", "-q",
           "--checkpoint-dir", str(tmp_path / "ck"))  # the seed round: 10 labels
    result = CliRunner().invoke(cli, ["final-model", "--db", url, "-q", "--out", str(tmp_path), *SHORT])
    assert result.exit_code == 2 and "is a directory" in result.output  # click's usage error, before training
    with pytest.raises(ConfigError, match="is a folder"):  # the use case refuses it too (callers other than the CLI)
        with Workspace(url) as ws:
            train_final(ws, None, FinalPlan(out=tmp_path))


def test_an_ensemble_of_model_seeds_is_one_checkpoint_whose_first_member_is_the_single_model(tmp_path,
                                                                                             database_url):
    _project_with_labels(tmp_path, database_url)
    single = _final(database_url, tmp_path, "--seed", "3")
    report = _final(database_url, tmp_path, "--seed", "3", "--ensemble", "2")
    path = Path(report["checkpoint"])
    assert path.name == "final-20-labels-seed-3-ensemble-2.pt"
    assert report["ensemble"] == 2 and len(report["member_accuracy"]) == 2
    assert report["member_accuracy"][0] == pytest.approx(single["accuracy"])  # member 0: model seed 3
    assert single["ensemble"] == 1 and single["member_accuracy"] == []
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["ensemble"] == 2 and saved["meta"]["ensemble"] == 2
    first = torch.load(single["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(saved["state_dict"][f"members.0.{k}"], v) for k, v in first.items())
    # the file loads as the ensemble it reported: the robustness suite's clean accuracy is the report's
    suite = json.loads(invoke("robustness", "--checkpoint", str(path), "-p", "tiny", "--db", database_url, "--json",
                              "--eval-attacks", "fgsm", "--eval-eps", "0.05", "--eval-subset", "30", "-q").output)
    assert [r for r in suite["rows"] if r["attack"] == "clean"][0]["accuracy"] == pytest.approx(report["accuracy"])
    text = invoke("final-model", "--db", database_url, "--checkpoint-dir", str(tmp_path / "ck"), "--ensemble", "2",
                  "-q", *SHORT).output
    assert text.startswith("final ensemble of 2 models of tiny") and "its models alone:" in text
    result = CliRunner().invoke(cli, ["final-model", "--db", database_url, "--ensemble", "0", "-q", *SHORT])
    assert result.exit_code == 2 and "--ensemble" in result.output
