"""Learning from the unlabeled pool (VAT, pseudo-FGSM), augmentation and warm start."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from activeadv import attacks, training
from activeadv.data import ArrayPool, load_dataset
from activeadv.errors import ConfigError
from activeadv.training import TrainConfig, augment, predict_proba, step_count, train, train_step, unlabeled_batches


def _small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))


def test_vat_perturbation_has_the_radius_and_beats_random_directions():
    model = _small_model()
    x = torch.randn(64, 12)
    g = torch.Generator().manual_seed(1)
    r_adv = attacks.virtual_adversarial_perturbation(model, x, epsilon=0.5, xi=1e-6, generator=g,
                                                     power_iterations=2)
    assert r_adv.shape == x.shape
    torch.testing.assert_close(r_adv.norm(dim=1), torch.full((64,), 0.5))
    with torch.no_grad():
        logits = model(x)
        kl_adv = attacks.kl_divergence(logits, model(x + r_adv))
        r_rand = attacks._l2_normalize(torch.randn(x.shape, generator=g)) * 0.5
        kl_rand = attacks.kl_divergence(logits, model(x + r_rand))
    assert (kl_adv >= 0).all()
    # the power iteration finds the sensitive direction: far above a random one, for (almost) every point
    assert float(kl_adv.mean()) > 5 * float(kl_rand.mean())
    assert float((kl_adv > kl_rand).float().mean()) > 0.95


def test_vat_direction_on_a_linear_softmax_is_the_top_eigenvector():
    """For logits W x the KL's Hessian in x is W^T (diag(p) - p p^T) W: r_adv must be its top eigenvector."""
    torch.manual_seed(3)
    model = nn.Linear(5, 4, bias=False)
    x = torch.randn(1, 5)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[0].double()
        w = model.weight.double()
        hessian = w.T @ (torch.diag(p) - torch.outer(p, p)) @ w
        top = torch.linalg.eigh(hessian).eigenvectors[:, -1]
    r = attacks.virtual_adversarial_perturbation(model, x, epsilon=1.0, xi=1e-3, power_iterations=20,
                                                 generator=torch.Generator().manual_seed(0))
    cosine = abs(float(r[0].double() @ top))
    assert cosine > 0.999


def test_unlabeled_term_is_zero_without_an_unlabeled_batch():
    pool = ArrayPool(np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32), ["a", "b", "c"])
    x, y = pool.load(pool.ids[:8]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    cfg = TrainConfig(unlabeled="vat", adv="none", device="cpu")
    from activeadv.networks import build_network

    torch.manual_seed(0)
    model = build_network(pool.input_shape, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the step reports the loss, changes nothing
    without = train_step(model, x, y, opt, cfg)
    assert without["unlabeled_loss"] == 0.0 and without["loss"] == pytest.approx(without["clean_loss"])
    with_u = train_step(model, x, y, opt, cfg, x_unlabeled=pool.load(pool.ids[8:]))
    assert with_u["unlabeled_loss"] > 0 and with_u["loss"] == pytest.approx(
        with_u["clean_loss"] + with_u["unlabeled_loss"], rel=1e-5)
    off = train_step(model, x, y, opt, replace(cfg, unlabeled="none"), x_unlabeled=pool.load(pool.ids[8:]))
    assert off["unlabeled_loss"] == 0.0


def test_pseudo_fgsm_uses_only_confident_predictions():
    pool = ArrayPool(np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32), ["a", "b", "c"])
    from activeadv.networks import build_network

    torch.manual_seed(0)
    model = build_network(pool.input_shape, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y, x_u = pool.load(pool.ids[:4]), torch.tensor([0, 1, 2, 0]), pool.load(pool.ids[4:])
    nobody = train_step(model, x, y, opt, TrainConfig(unlabeled="pseudo-fgsm", pseudo_threshold=1.0, adv="none"),
                        x_unlabeled=x_u)
    assert nobody["pseudo_kept"] == 0.0 and nobody["unlabeled_loss"] == 0.0
    everyone = train_step(model, x, y, opt, TrainConfig(unlabeled="pseudo-fgsm", pseudo_threshold=0.0, adv="none"),
                          x_unlabeled=x_u)
    assert everyone["pseudo_kept"] == 1.0 and everyone["unlabeled_loss"] > 0


def test_augment_keeps_shape_and_range_and_shifts_whole_pixels():
    x = torch.zeros(50, 1, 28, 28)
    x[:, :, 10:18, 10:18] = torch.rand(50, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = augment(x, 2, g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert out.is_contiguous(memory_format=torch.channels_last)  # the layout the pools load (data.canonical)
    moved = 0
    for a, b in zip(x, out):  # each image is its original moved by (dy, dx) with |dy|, |dx| <= 2
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(torch.roll(a, (dy, dx), dims=(1, 2)), b)]
        assert found
        moved += found[0] != (0, 0)
    assert moved > 35  # 24 of 25 shifts move the image
    assert augment(x, 0, g) is x
    vectors = torch.rand(4, 64)
    assert augment(vectors, 2, g) is vectors  # feature vectors are never shifted


def test_augmentation_shift_defaults_follow_the_image_size():
    cfg = TrainConfig(augment=True)
    assert cfg.shift_for((1, 28, 28)) == 2 and cfg.shift_for((3, 64, 48)) == 3
    assert cfg.shift_for((1, 8, 8)) == 0 and cfg.shift_for((64,)) == 0  # too small to shift; vectors never
    assert TrainConfig(augment=False).shift_for((1, 28, 28)) == 0 and TrainConfig().shift_for((1, 28, 28)) == 2
    assert TrainConfig().vat_radius((1, 28, 28)) == pytest.approx(2.0)
    assert TrainConfig(vat_epsilon=3.0).vat_radius((1, 8, 8)) == 3.0


def test_unlabeled_batches_stream_without_repeats_within_a_pass():
    pool = ArrayPool(np.arange(30, dtype=np.float32).reshape(30, 1) / 30, ["a", "b"]).with_ids(np.arange(100, 130))
    ids = pool.ids[5:]
    stream = unlabeled_batches(pool, ids, 5, torch.Generator().manual_seed(0))
    seen = torch.cat([next(stream) for _ in range(5)]).flatten()  # one pass: 25 ids, 5 a batch
    values = sorted(round(float(v) * 30) for v in seen)
    assert values == list(range(5, 30))


def test_step_count_unlabeled_floor_and_warm_fraction():
    cfg = TrainConfig(epochs=10, min_steps=100, unlabeled_min_steps=800, batch_size=10)
    assert step_count(50, cfg) == 100
    assert step_count(50, cfg, unlabeled=True) == 800
    assert step_count(50, cfg, unlabeled=True, warm=True) == 400


@pytest.mark.parametrize("kwargs, message", [
    ({"unlabeled": "mixmatch"}, "--unlabeled"), ({"vat_epsilon": 0}, "vat"), ({"warm_fraction": 0}, "warm"),
    ({"pseudo_threshold": 2}, "pseudo"), ({"augment_shift": -1}, "augment"),
])
def test_bad_unlabeled_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_warm_start_loads_the_previous_weights(digits):
    ids = digits.pool.ids[:40]
    cfg = TrainConfig(epochs=1, min_steps=5, seed=1, device="cpu", adv="none")
    first = train(digits.pool, ids, digits.pool.targets(ids), cfg)
    state = {k: v.clone() for k, v in first.state_dict().items()}
    # a negligible lr: a warm-started model stays the previous one; a cold one is a fresh initialisation
    frozen = replace(cfg, lr=1e-12, seed=2)
    warm = train(digits.pool, ids, digits.pool.targets(ids), frozen, init_state=state)
    cold = train(digits.pool, ids, digits.pool.targets(ids), frozen)
    for k, v in state.items():
        torch.testing.assert_close(warm.state_dict()[k], v)
    assert not torch.equal(cold.state_dict()["head.weight"], state["head.weight"])
    with pytest.raises(ConfigError, match="warm-start"):
        train(digits.pool, ids, digits.pool.targets(ids), cfg, init_state={"head.weight": torch.zeros(2, 2)})


def test_vat_training_is_deterministic_and_uses_the_pool(digits):
    ids = digits.pool.ids[:30]
    cfg = TrainConfig(epochs=1, min_steps=10, unlabeled="vat", unlabeled_min_steps=15, unlabeled_batch_size=32,
                      seed=4, device="cpu", augment=True)
    unlabeled = digits.pool.ids[30:]
    a = train(digits.pool, ids, digits.pool.targets(ids), cfg, unlabeled_ids=unlabeled)
    b = train(digits.pool, ids, digits.pool.targets(ids), cfg, unlabeled_ids=unlabeled)
    probe = digits.test.ids[:40]
    np.testing.assert_array_equal(predict_proba(a, digits.test, probe), predict_proba(b, digits.test, probe))
    plain = train(digits.pool, ids, digits.pool.targets(ids), cfg)  # no unlabeled ids: the term is off
    assert not np.array_equal(predict_proba(a, digits.test, probe), predict_proba(plain, digits.test, probe))


@pytest.mark.slow
def test_vat_learns_from_the_unlabeled_pool(digits):
    """50 labels of digits: the pool's unlabeled images must buy accuracy (the point of the term)."""
    from activeadv.training import evaluate

    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(digits.pool.ids, 50, replace=False))
    cfg = TrainConfig(adv="none", min_steps=600, unlabeled_min_steps=600, seed=0, device="cpu", epsilon=0.0,
                      augment=False)
    rest = np.setdiff1d(digits.pool.ids, ids)
    plain = evaluate(train(digits.pool, ids, digits.pool.targets(ids), cfg), digits.test, cfg).accuracy
    vat = evaluate(train(digits.pool, ids, digits.pool.targets(ids), replace(cfg, unlabeled="vat"),
                         unlabeled_ids=rest), digits.test, cfg).accuracy
    assert vat > plain + 0.02, (plain, vat)


def test_balanced_batches_draw_each_class_equally_often(digits, monkeypatch):
    """A skewed labeled set (90% one class): --balance gives every class ~ the same share of the rows trained on;
    without it the batches follow the skew."""
    pool = digits.pool
    targets = pool.targets(pool.ids)
    ids = np.sort(np.concatenate([pool.ids[targets == 0][:90], pool.ids[targets == 1][:5],
                                  pool.ids[targets == 2][:5]]))
    seen: list[np.ndarray] = []
    real_step = training.train_step

    def spy(model, x, y, *args, **kwargs):
        seen.append(y.cpu().numpy())
        return real_step(model, x, y, *args, **kwargs)

    monkeypatch.setattr(training, "train_step", spy)
    shares = {}
    for balance in (False, True):
        seen.clear()
        cfg = TrainConfig(epochs=1, min_steps=60, max_steps=60, adv="none", augment=False, device="cpu",
                          balance=balance)
        training.train(pool, ids, pool.targets(ids), cfg)
        counts = np.bincount(np.concatenate(seen), minlength=3)[:3]
        shares[balance] = counts / counts.sum()
    assert shares[False][0] > 0.85
    np.testing.assert_allclose(shares[True], [1 / 3] * 3, atol=0.06)
    np.testing.assert_allclose(training.batch_weights(torch.tensor([0, 0, 0, 1])).numpy(), [1 / 3] * 3 + [1.0])


def test_cosine_schedule_decays_from_lr_to_zero_and_constant_stays():
    from activeadv.errors import ConfigError
    from activeadv.training import learning_rate

    cfg = TrainConfig(lr=0.01, lr_schedule="cosine")
    rates = [learning_rate(cfg, s, 100) for s in range(100)]
    assert rates[0] == pytest.approx(0.01) and rates[50] == pytest.approx(0.005)
    assert rates[-1] < 0.01 * 1e-3 and all(a > b for a, b in zip(rates, rates[1:]))
    assert {learning_rate(TrainConfig(lr=0.01), s, 100) for s in range(100)} == {0.01}
    with pytest.raises(ConfigError, match="lr-schedule"):
        TrainConfig(lr_schedule="step")


def test_train_step_without_sync_returns_the_same_losses_as_tensors():
    pool = ArrayPool(np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32), ["a", "b", "c"])
    from activeadv.networks import build_network

    x, y = pool.load(pool.ids[:8]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    cfg = TrainConfig(unlabeled="vat", device="cpu")
    torch.manual_seed(0)
    model = build_network(pool.input_shape, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    synced = train_step(model, x, y, opt, cfg, generator=torch.Generator().manual_seed(1),
                        x_unlabeled=pool.load(pool.ids[8:]))
    lazy = train_step(model, x, y, opt, cfg, generator=torch.Generator().manual_seed(1),
                      x_unlabeled=pool.load(pool.ids[8:]), sync=False)
    assert set(lazy) == set(synced) and all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in lazy.values())
    assert {k: float(v) for k, v in lazy.items()} == pytest.approx(synced)


def test_unlabeled_rampup_rises_to_full_weight_and_zero_scale_drops_the_term():
    from activeadv.errors import ConfigError
    from activeadv.training import unlabeled_ramp

    cfg = TrainConfig(unlabeled="vat", unlabeled_rampup=0.5)
    ramp = [unlabeled_ramp(cfg, s, 100) for s in range(100)]
    assert ramp[0] == pytest.approx(np.exp(-5)) and all(a < b for a, b in zip(ramp[:50], ramp[1:51]))
    assert ramp[50:] == [1.0] * 50
    assert {unlabeled_ramp(TrainConfig(unlabeled="vat"), s, 100) for s in range(100)} == {1.0}
    with pytest.raises(ConfigError, match="rampup"):
        TrainConfig(unlabeled_rampup=1.5)

    pool = ArrayPool(np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32), ["a", "b", "c"])
    from activeadv.networks import build_network

    x, y, x_u = pool.load(pool.ids[:8]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), pool.load(pool.ids[8:])
    torch.manual_seed(0)
    model = build_network(pool.input_shape, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    full = train_step(model, x, y, opt, TrainConfig(unlabeled="vat", adv="none"), x_unlabeled=x_u)
    half = train_step(model, x, y, opt, TrainConfig(unlabeled="vat", adv="none"), x_unlabeled=x_u,
                      unlabeled_scale=0.5, generator=None)
    off = train_step(model, x, y, opt, TrainConfig(unlabeled="vat", adv="none"), x_unlabeled=x_u, unlabeled_scale=0)
    assert off["unlabeled_loss"] == 0.0 and off["loss"] == pytest.approx(off["clean_loss"])
    assert half["loss"] == pytest.approx(half["clean_loss"] + 0.5 * half["unlabeled_loss"], rel=1e-5)
    assert full["loss"] == pytest.approx(full["clean_loss"] + full["unlabeled_loss"], rel=1e-5)


def test_ema_returns_the_moving_average_of_the_iterates(digits):
    """--ema: the returned weights are sum over the run's iterates with the warm-up decay min(d, (1+k)/(10+k)),
    rebuilt here from runs stopped after 1..K steps (the same trajectory: constant lr, same seed)."""
    from activeadv.networks import build_network
    from activeadv.training import WeightAverage, seed_everything

    ids = digits.pool.ids[:40]
    labels = digits.pool.targets(ids)
    base = TrainConfig(epochs=1, seed=3, device="cpu", lr=0.01, ema=0.0)
    steps, decay = 6, 0.5
    seed_everything(base.seed)
    expected = [p.detach().clone() for p in build_network(digits.pool.input_shape, 10).parameters()]
    for k in range(1, steps + 1):
        iterate = list(train(digits.pool, ids, labels, replace(base, min_steps=k, max_steps=k)).parameters())
        keep = min(decay, (1 + k) / (10 + k))
        expected = [keep * e + (1 - keep) * w.detach() for e, w in zip(expected, iterate)]
    averaged = train(digits.pool, ids, labels, replace(base, min_steps=steps, max_steps=steps, ema=decay))
    for got, want in zip(averaged.parameters(), expected):
        torch.testing.assert_close(got.detach(), want)
    last = train(digits.pool, ids, labels, replace(base, min_steps=steps, max_steps=steps))
    assert not torch.equal(last.head.weight, averaged.head.weight)
    # the warm-up: with decay 0.999 a 6-step run is not 99% its random initialisation
    average = WeightAverage(last, 0.999)
    average.update(last)
    assert average.updates == 1
    with pytest.raises(ConfigError, match="--ema"):
        TrainConfig(ema=1.0)


def test_settings_stored_before_an_option_existed_keep_what_that_version_did():
    """A project (or simulate log) from before --ema trained on the last weights: reading its settings back must
    not switch it to today's default; known keys are kept, unknown ones dropped, the rest get the defaults."""
    from activeadv.training import stored_settings

    values = stored_settings({"lr": 0.01, "no_longer_an_option": 3})
    assert values["ema"] == 0.0 and TrainConfig().ema == 0.99
    assert values["lr"] == 0.01 and "no_longer_an_option" not in values
    assert TrainConfig(**values) == replace(TrainConfig(), lr=0.01, ema=0.0)
    assert stored_settings(TrainConfig().to_dict()) == TrainConfig().to_dict()
