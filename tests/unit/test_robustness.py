"""The robustness suite: a fixed subset, white-box = transfer from oneself, every attack at every eps, timings."""

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from activeadv import attacks
from activeadv.data import ArrayPool, load_dataset
from activeadv.errors import ConfigError
from activeadv.robustness import (
    ATTACKS,
    L2_PER_LINF_SQRT_D,
    RobustnessConfig,
    RobustnessRow,
    evaluate_robustness,
    fixed_subset,
    l2_radius,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPS = (0.05, 0.2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _softmax_regression(pool, seed: int, steps: int = 150) -> torch.nn.Module:
    """A linear softmax model on the pixels, fitted in a fraction of a second (full batch)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    ids = pool.ids[:400]
    x, y = pool.load(ids), torch.from_numpy(pool.targets(ids))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def model(digits):
    return _softmax_regression(digits.pool, seed=0)


def _cfg(**kwargs) -> RobustnessConfig:
    return RobustnessConfig(**{"eps": EPS, "subset": 120, "steps": 3, "batch_size": 50, **kwargs})


def test_transfer_from_the_model_itself_equals_the_white_box_numbers(digits, model):
    result = evaluate_robustness(model, digits.test, _cfg(), surrogates=[model])
    assert result.accuracy["transfer_fgsm"] == result.accuracy["fgsm"]
    assert result.accuracy["transfer_pgd"] == result.accuracy["pgd"]
    assert result.accuracy["transfer"] == {e: min(result.accuracy["fgsm"][e], result.accuracy["pgd"][e]) for e in EPS}


def test_every_attack_at_every_eps_on_a_fixed_sorted_subset(digits, model):
    cfg = _cfg()
    a = evaluate_robustness(model, digits.test, cfg)
    b = evaluate_robustness(model, digits.test, cfg)
    assert a.accuracy == b.accuracy  # seeded random starts
    np.testing.assert_array_equal(a.ids, fixed_subset(digits.test.ids, 120, 0))
    assert a.n == 120 and (np.diff(a.ids) > 0).all() and np.isin(a.ids, digits.test.ids).all()
    assert "transfer" not in a.accuracy  # no surrogate
    assert set(a.accuracy) == {"clean", *ATTACKS} - {"transfer"}
    for attack in set(ATTACKS) - {"transfer"}:
        assert list(a.accuracy[attack]) == list(EPS)
        assert all(0.0 <= acc <= 1.0 for acc in a.accuracy[attack].values())
    clean = a.accuracy["clean"][0.0]
    truth = digits.test.targets(a.ids)
    with torch.no_grad():
        assert clean == float((model(digits.test.load(a.ids)).argmax(1).numpy() == truth).mean()) > 0.8
    assert a.accuracy["fgsm_true"] == a.accuracy["fgsm"]
    for attack in ("fgsm", "bim", "pgd", "ll"):  # a bigger eps never helps a linear model against these
        assert a.accuracy[attack][0.2] <= a.accuracy[attack][0.05] <= clean
    assert a.accuracy["pgd"][0.2] < 0.5 * clean


def test_pgd_matches_a_direct_call_on_the_same_subset(digits, model):
    """The suite is the attack functions streamed over the subset: one batch, one slice reproduces it exactly."""
    cfg = _cfg(attacks=("pgd", "pgd_l2", "ll"), batch_size=120, subset=60)
    result = evaluate_robustness(model, digits.test, cfg)
    x = digits.test.load(result.ids)
    y = torch.from_numpy(digits.test.targets(result.ids))
    for eps, radius in zip(EPS, cfg.l2_radii(digits.test.input_shape)):
        adv = attacks.pgd(model, x, y, eps, steps=3, generator=torch.Generator().manual_seed(0))
        adv_l2 = attacks.pgd(model, x, y, radius, steps=3, norm="2", generator=torch.Generator().manual_seed(0))
        adv_ll = attacks.iterative_least_likely(model, x, eps, steps=3)
        with torch.no_grad():
            for name, a in (("pgd", adv), ("pgd_l2", adv_l2), ("ll", adv_ll)):
                assert result.accuracy[name][eps] == int((model(a).argmax(1) == y).sum()) / len(y)


def test_an_independent_surrogate_transfers_weaker_than_white_box(digits, model):
    other = _softmax_regression(digits.pool, seed=1, steps=60)
    result = evaluate_robustness(model, digits.test, _cfg(attacks=("pgd", "transfer")), surrogates=[other, model])
    assert set(result.accuracy) == {"clean", "pgd", "transfer_fgsm", "transfer_pgd", "transfer"}
    # the worst case over the surrogates: the model itself is one of them
    assert result.accuracy["transfer_pgd"] == result.accuracy["pgd"]
    alone = evaluate_robustness(model, digits.test, _cfg(attacks=("pgd", "transfer")), surrogates=[other])
    assert alone.accuracy["transfer_pgd"][0.2] >= result.accuracy["pgd"][0.2]


def test_rows_are_flat_records_with_radius_norm_and_timings(digits, model):
    cfg = _cfg(attacks=("fgsm", "pgd_l2", "transfer"))
    result = evaluate_robustness(model, digits.test, cfg, surrogates=[model])
    rows = {(r.attack, r.eps): r for r in result.rows}
    assert rows[("clean", 0.0)].norm == "" and rows[("clean", 0.0)].n == 120
    radii = cfg.l2_radii((1, 8, 8))
    assert radii == tuple(l2_radius(e, (1, 8, 8)) for e in EPS)
    assert rows[("pgd_l2", 0.2)].norm == "2" and rows[("pgd_l2", 0.2)].radius == pytest.approx(radii[1])
    assert rows[("fgsm", 0.2)].norm == "inf" and rows[("fgsm", 0.2)].radius == 0.2
    for row in result.rows:
        assert isinstance(row, RobustnessRow)
        assert all(isinstance(v, (str, int, float)) for v in asdict(row).values())
        assert row.seconds >= 0 and result.accuracy[row.attack][row.eps] == row.accuracy
    assert set(result.seconds) == {"clean", "fgsm", "pgd_l2", "transfer", "transfer_fgsm", "transfer_pgd"}
    assert result.seconds["transfer"] == pytest.approx(result.seconds["transfer_fgsm"] + result.seconds["transfer_pgd"])
    assert result.total_seconds >= result.seconds["fgsm"] + result.seconds["pgd_l2"]


def test_l2_default_radius_is_madrys_mnist_pair():
    assert l2_radius(0.3, (1, 28, 28)) == pytest.approx(2.0)
    assert L2_PER_LINF_SQRT_D == pytest.approx(2.0 / 8.4)
    assert l2_radius(0.3, (1, 8, 8)) == pytest.approx(2.0 * 8 / 28)
    assert RobustnessConfig(l2_eps=(1.0, 2.0), eps=(0.1, 0.2)).l2_radii((1, 28, 28)) == (1.0, 2.0)


def test_model_mode_and_parameters_are_restored(digits, model):
    model.train()
    other = _softmax_regression(digits.pool, seed=2, steps=5)
    other.train()
    before = [p.clone() for p in model.parameters()]
    evaluate_robustness(model, digits.test, _cfg(subset=20, attacks=("bim", "transfer")), surrogates=[other])
    assert model.training and other.training
    assert all(p.requires_grad and p.grad is None for p in (*model.parameters(), *other.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()


def test_feature_vectors_and_unbounded_inputs_work():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    pool = ArrayPool(x, ["a", "b"], y)  # clip_range None
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 2)
    result = evaluate_robustness(net, pool, RobustnessConfig(eps=(0.5,), subset=30, steps=2))
    assert result.n == 30 and math.isfinite(result.accuracy["pgd_l2"][0.5])


@pytest.mark.parametrize("kwargs, message", [
    ({"attacks": ("cw",)}, "unknown attack"), ({"eps": ()}, "eval-eps"), ({"eps": (0.1, -1)}, "eval-eps"),
    ({"eps": (float("nan"),)}, "eval-eps"), ({"l2_eps": (1.0,)}, "l2-eps"), ({"subset": 0}, ">= 1"),
    ({"eps": (0.1, 0.1)}, "repeat"), ({"attacks": ("pgd", "pgd")}, "repeat"),
])
def test_bad_robustness_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RobustnessConfig(**kwargs)


def test_a_test_split_without_labels_is_refused(model):
    pool = ArrayPool(np.zeros((4, 8, 8), dtype=np.float32), [str(i) for i in range(10)])
    with pytest.raises(ConfigError, match="labels"):
        evaluate_robustness(model, pool, _cfg())


def test_the_cli_knows_the_attacks_and_default_subset_without_importing_torch_modules():
    from activeadv.cli.common import EVAL_ATTACKS, EVAL_FIELDS, EVAL_SUBSET, TRAIN_FIELDS
    from activeadv.training import EVAL_SUBSET as TRAINING_SUBSET
    from activeadv.training import TrainConfig

    assert EVAL_ATTACKS == ATTACKS == TrainConfig().eval_attacks
    assert EVAL_SUBSET == TRAINING_SUBSET == TrainConfig().eval_subset
    assert set(EVAL_FIELDS) <= set(TRAIN_FIELDS) <= set(TrainConfig.__dataclass_fields__)


def test_train_config_carries_the_suite_and_reads_it_back_from_json():
    import json

    from activeadv.training import TrainConfig

    assert TrainConfig().robustness_config() is None  # off by default (its cost: docs/robustness.md)
    cfg = TrainConfig(eval_subset=50, eval_eps=(0.1, 0.3), eval_attacks=("pgd", "ll"), eval_steps=3,
                      eval_l2_eps=(0.5, 1.5))
    back = TrainConfig(**json.loads(json.dumps(cfg.to_dict())))  # a project's stored settings: lists
    assert back == cfg and back.eval_eps == (0.1, 0.3) and back.eval_l2_eps == (0.5, 1.5)
    suite = back.robustness_config()
    assert suite == RobustnessConfig(eps=(0.1, 0.3), attacks=("pgd", "ll"), subset=50, steps=3, l2_eps=(0.5, 1.5),
                                     batch_size=back.eval_batch_size)
    for kwargs, message in [({"eval_eps": (0.1, -1)}, "--eval-eps"), ({"eval_attacks": ("x",)}, "unknown attack"),
                            ({"eval_subset": -1}, "--eval-subset"), ({"eval_l2_eps": (1.0,)}, "--eval-l2-eps")]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**kwargs)


def test_headline_is_the_worst_attack_at_the_sweep_eps_nearest_the_training_eps():
    from activeadv.records import robustness_at, worst_case

    rows = [RobustnessRow("clean", 0.0, 0.9, 10), RobustnessRow("fgsm", 0.05, 0.8, 10),
            RobustnessRow("pgd", 0.05, 0.7, 10), RobustnessRow("fgsm", 0.2, 0.5, 10),
            RobustnessRow("transfer_pgd", 0.2, 0.1, 10), RobustnessRow("transfer", 0.2, 0.6, 10),
            RobustnessRow("pgd", 0.2, 0.3, 10)]
    assert robustness_at(rows, 0.1) == (0.05, {"fgsm": 0.8, "pgd": 0.7})  # 0.05 and 0.2: the nearer
    near, at = robustness_at(rows, 0.3)
    assert near == 0.2 and worst_case(at) == ("pgd", 0.3)  # transfer_* are summed up in transfer
    assert robustness_at(rows[:1], 0.1) == (None, {}) and worst_case({}) == (None, None)
