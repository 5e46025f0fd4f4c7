"""The Ray executor ranks like the local one (same scores, same picks) and survives a worker killed mid-pass.

A local Ray cluster with 2 CPUs is started once for the module; skipped when Ray is not installed
(``pip install 'activeadv[ray]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray not installed: pip install 'activeadv[ray]' to test --executor ray")

from activeadv.acquisition import make_strategy, select  # noqa: E402
from activeadv.data import load_dataset  # noqa: E402
from activeadv.distributed import RayRanker, _BatchScorer  # noqa: E402
from activeadv.errors import ConfigError  # noqa: E402
from activeadv.training import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def trained():
    pool = load_dataset("digits").pool
    rng = np.random.default_rng(0)
    labeled = np.sort(rng.choice(pool.ids, 60, replace=False))
    cfg = TrainConfig(epochs=2, min_steps=20, max_steps=20, seed=0, device="cpu")
    model = train(pool, labeled, pool.targets(labeled), cfg)
    candidates = np.setdiff1d(pool.ids, labeled)[:600]
    return pool, model, labeled, candidates, cfg


def _both(trained, name, n, ranker):
    pool, model, labeled, candidates, _ = trained
    out = []
    for r in (None, ranker):
        out.append(select(make_strategy(name), model, pool, candidates, n, rng=np.random.default_rng(3),
                          labeled_ids=labeled, batch_size=64, ranker=r))
    return out


@pytest.mark.parametrize("name", ["margin", "random", "dfal", "dfal+kcenter", "fgsm-margin"])
def test_ray_picks_and_scores_equal_local(cluster, trained, name):
    local, distributed = _both(trained, name, 12, RayRanker(arch=trained[4].arch, workers=2))
    np.testing.assert_array_equal(distributed.item_ids, local.item_ids)
    np.testing.assert_allclose(distributed.scores, local.scores, rtol=1e-3, atol=1e-6)  # batch sizes move float sums
    np.testing.assert_array_equal(distributed.predicted, local.predicted)


def test_coreset_is_refused_on_ray(cluster, trained):
    with pytest.raises(ConfigError, match="coreset needs every candidate"):
        _both(trained, "coreset", 5, RayRanker(arch=trained[4].arch))


class _DiesOnce(_BatchScorer):
    """Kills its own worker process on the first batch scored anywhere (a marker file says it happened)."""

    marker = ""

    def __call__(self, batch):
        if not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)  # the actor process dies as a killed or OOM-ed worker would
        return super().__call__(batch)


def test_worker_killed_during_scoring_is_retried(cluster, trained, tmp_path):
    marker = tmp_path / "killed"
    dies = type("DiesOnce", (_DiesOnce,), {"marker": str(marker)})
    ray.cloudpickle.register_pickle_by_value(__import__(__name__))  # the test class, shipped to the workers
    local, distributed = _both(trained, "margin", 10, RayRanker(arch=trained[4].arch, workers=2, scorer=dies))
    assert marker.exists()  # a worker did die
    np.testing.assert_array_equal(distributed.item_ids, local.item_ids)  # and the round completed, once


def test_round_with_executor_ray_picks_what_the_local_executor_picks(cluster, tmp_path):
    """`activeadv round --executor ray` end to end (CLI -> app -> loop -> select with the Ray ranker): two projects
    on the same data and seed, one scored here and one on Ray, request the same items."""
    from click.testing import CliRunner

    from activeadv.cli import cli
    from activeadv.store import Store

    fast = ["--epochs", "1", "--min-steps", "5", "--batch-size", "16", "--adv", "none", "--no-augment"]
    picks = {}
    for executor in ("local", "ray"):
        url = f"sqlite:///{tmp_path / executor}.db"
        for args in (["init", "p", "--dataset", "digits", "-q"],
                     ["round", "--oracle", "simulated", "--query-size", "10", "-q"],  # seed round
                     ["round", "--oracle", "simulated", "--query-size", "6", "--strategy", "margin", "-q",
                      "--executor", executor]):  # the module's cluster is already up: no address needed
            if args[0] == "init":
                args = [*args, *fast]
            result = CliRunner().invoke(cli, [*args, "--db", url, "--checkpoint-dir", str(tmp_path / executor)]
                                        if args[0] == "round" else [*args, "--db", url])
            assert result.exit_code == 0, result.output
        with Store.open(url) as store:
            project = store.get_project()
            picks[executor] = list(store.selection(store.rounds(project.id)[-1].id).item_ids)
    assert len(picks["local"]) == 6 and picks["ray"] == picks["local"]


# ------------------------------------------------------------------------------------- Ray Train
@pytest.mark.parametrize("unlabeled", ["none", "vat"])
def test_training_on_two_ray_workers_matches_one_process(cluster, unlabeled):
    """DDP over 2 Ray Train workers, each with half of every batch, takes the steps one process takes.

    Without random draws inside a step (FGSM from the prediction, no augmentation) the weights agree up to
    float summation order; with VAT each worker draws its own random directions, so only the model's quality
    must agree."""
    from dataclasses import replace

    from activeadv.distributed import train_on_ray
    from activeadv.training import evaluate

    data = load_dataset("digits")
    pool, test = data.pool, data.test
    labeled = np.sort(np.random.default_rng(0).choice(pool.ids, 100, replace=False))
    cfg = TrainConfig(epochs=1, min_steps=60, max_steps=60, augment=False, device="cpu", unlabeled=unlabeled,
                      unlabeled_min_steps=0)
    unlabeled_ids = np.setdiff1d(pool.ids, labeled)
    one = train(pool, labeled, pool.targets(labeled), cfg, unlabeled_ids=unlabeled_ids)
    two = train_on_ray(pool, labeled, pool.targets(labeled), cfg, workers=2, unlabeled_ids=unlabeled_ids)
    assert next(two.parameters()).device.type == "cpu" and not two.training
    accuracy = [evaluate(m, test, replace(cfg, epsilon=0.0)).accuracy for m in (one, two)]
    if unlabeled == "none":
        for name, weights in one.state_dict().items():
            np.testing.assert_allclose(two.state_dict()[name].numpy(), weights.numpy(), atol=2e-2, err_msg=name)
        assert abs(accuracy[0] - accuracy[1]) <= 0.01
    else:
        assert abs(accuracy[0] - accuracy[1]) <= 0.04, accuracy
    assert min(accuracy) > 0.6  # both learned (10 classes: chance is 0.1)


def test_a_failing_ray_training_is_one_line_error(cluster):
    from activeadv.distributed import train_on_ray

    pool = load_dataset("digits").pool
    labeled = np.arange(20)
    with pytest.raises(ConfigError, match="training on Ray failed") as caught:
        # a warm start from weights of another network: every worker raises ConfigError
        train_on_ray(pool, labeled, pool.targets(labeled), TrainConfig(min_steps=2, max_steps=2, device="cpu"),
                     workers=2, init_state={"nope": __import__("torch").zeros(1)})
    assert "\n" not in str(caught.value)


def test_round_with_train_workers_trains_on_ray(cluster, tmp_path):
    """`activeadv round --executor ray --train-workers 2`: the round's model comes from Ray Train and is stored
    as its checkpoint; the round completes like a local one."""
    from click.testing import CliRunner

    from activeadv.cli import cli
    from activeadv.store import Store

    url = f"sqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    common = ["--db", url, "--checkpoint-dir", str(tmp_path / "ck")]
    assert runner.invoke(cli, ["init", "p", "--dataset", "digits", "-q", "--db", url, "--epochs", "1",
                               "--min-steps", "80", "--no-augment"]).exit_code == 0
    assert runner.invoke(cli, ["round", "--oracle", "simulated", "--query-size", "40", "-q", *common]).exit_code == 0
    result = runner.invoke(cli, ["round", "--oracle", "simulated", "--query-size", "6", "--strategy", "margin",
                                 "--executor", "ray", "--train-workers", "2", "--json", *common])
    assert result.exit_code == 0, result.output
    report = __import__("json").loads(result.stdout)
    assert report["labels_used"] == 40 and report["selected"] == 6 and report["accuracy"] > 0.5
    with Store.open(url) as store:
        last = store.rounds(store.get_project().id)[-1]
        assert last.state == "done" and last.model_path and Path(last.model_path).exists()


def test_train_workers_without_ray_executor_is_a_usage_error():
    from click.testing import CliRunner

    from activeadv.cli import cli

    result = CliRunner().invoke(cli, ["round", "--train-workers", "2"])
    assert result.exit_code == 2 and "--train-workers needs --executor ray" in result.output


def test_simulate_with_executor_ray_draws_the_local_curve(cluster, tmp_path):
    """`activeadv simulate --executor ray`: each round's pool is scored on Ray; same picks, so the same curve."""
    import csv

    from click.testing import CliRunner

    from activeadv.cli import cli

    curves = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        result = CliRunner().invoke(cli, [
            "simulate", "--dataset", "digits", "--strategies", "margin,dfal", "--initial", "20", "--query-size",
            "10", "--budget", "40", "--seeds", "1", "--epochs", "1", "--min-steps", "20", "--no-augment",
            "--target-accuracy", "0.5", "--out", str(out), "-q", "--json", "--executor", executor])
        assert result.exit_code == 0, result.output
        with open(out / "curves.csv") as fh:
            curves[executor] = [(r["strategy"], r["labels"], r["accuracy"]) for r in csv.DictReader(fh)]
    assert len(curves["local"]) == 6 and curves["ray"] == curves["local"]
