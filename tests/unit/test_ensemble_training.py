"""iter-LL adversarial training and ensemble adversarial training (Tramer et al. 2018) in the one train_step."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from activeadv import attacks, training
from activeadv.data import ArrayPool
from activeadv.errors import ConfigError
from activeadv.networks import build_network
from activeadv.training import TrainConfig, adversarial_inputs, predict_proba, step_count, train, train_surrogates

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _halves(n: int, seed: int) -> ArrayPool:
    """8x8 images, class 0 bright on the left half, class 1 on the right: separable with a wide margin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0.0, 0.3, (n, 8, 8)).astype(np.float32)
    x[y == 0, :, :4] += 0.6
    x[y == 1, :, 4:] += 0.6
    return ArrayPool(x, ["left", "right"], y)


@pytest.fixture(scope="module")
def pool():
    return _halves(96, seed=0)


@pytest.fixture(scope="module")
def test_pool():
    return _halves(200, seed=1)


CFG = TrainConfig(epochs=1, min_steps=24, batch_size=32, adv_steps=2, epsilon=0.1, lr=3e-3, seed=5, device="cpu")


def _static(seed: int, classes: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network((1, 8, 8), classes)


def _accuracy(model, pool) -> float:
    return float((predict_proba(model, pool, pool.ids).argmax(1) == pool.targets(pool.ids)).mean())


def _fit(pool, cfg, **kwargs):
    return train(pool, pool.ids, pool.targets(pool.ids), cfg, **kwargs)


def test_ll_and_ensemble_training_learn_a_separable_task_deterministically(pool, test_pool):
    statics = train_surrogates(pool, pool.ids, pool.targets(pool.ids), replace(CFG, min_steps=12), 2)
    for cfg, kwargs in ((replace(CFG, adv="ll"), {}), (replace(CFG, adv_ensemble=2), {"static_models": statics})):
        a, b = _fit(pool, cfg, **kwargs), _fit(pool, cfg, **kwargs)
        assert _accuracy(a, test_pool) >= 0.95
        probs = predict_proba(a, test_pool, test_pool.ids)
        np.testing.assert_array_equal(probs, predict_proba(b, test_pool, test_pool.ids))


def test_ll_term_is_the_iterative_least_likely_attack(pool):
    torch.manual_seed(0)
    model = build_network((1, 8, 8), 2)
    x, y = pool.load(pool.ids[:16]), torch.from_numpy(pool.targets(pool.ids[:16]))
    cfg = replace(CFG, adv="ll", adv_steps=3)
    expected = attacks.iterative_least_likely(model, x, 0.1, steps=3)
    assert torch.equal(adversarial_inputs(model, x, y, cfg, (0.0, 1.0)), expected)


def test_static_models_give_their_gradients_in_round_robin_and_are_never_updated(pool, monkeypatch):
    statics = [_static(1), _static(2), _static(3)]
    for static in statics:
        static.train()  # a caller's mode is restored afterwards
    before = [{k: v.clone() for k, v in s.state_dict().items()} for s in statics]
    calls: dict[int, list[bool]] = {i: [] for i in range(3)}

    def spy(i):
        def hook(module, inputs):
            assert not module.training and not any(p.requires_grad for p in module.parameters())
            calls[i].append(inputs[0].requires_grad)
        return hook

    for i, static in enumerate(statics):
        static.register_forward_pre_hook(spy(i))
    crafters = []
    real_fgsm = attacks.fgsm

    def fgsm_spy(model, *args, **kwargs):
        crafters.append(model)
        return real_fgsm(model, *args, **kwargs)

    real_from_pass = attacks.fgsm_from_pass
    own = object()  # the model's own turn: FGSM from the step's clean pass (the model is mode-free)

    def from_pass_spy(*args, **kwargs):
        crafters.append(own)
        return real_from_pass(*args, **kwargs)

    monkeypatch.setattr(attacks, "fgsm", fgsm_spy)
    monkeypatch.setattr(attacks, "fgsm_from_pass", from_pass_spy)
    cfg = replace(CFG, adv="fgsm", adv_target="true", adv_ensemble=2)
    _fit(pool, cfg, static_models=statics)
    total = step_count(len(pool), cfg)
    # the last K=2 static models take turns with the model itself: own, s1, s2, own, s1, s2, ...
    expected = [own if s % 3 == 0 else statics[s % 3] for s in range(total)]
    assert [c is e for c, e in zip(crafters, expected)] == [True] * total and len(crafters) == total
    assert calls[0] == []  # the first of three is beyond K
    for i in (1, 2):
        turns = sum(1 for s in range(total) if s % 3 == i)
        # one no-grad probe forward (shape check), then one forward with an input that requires grad per turn
        assert calls[i] == [False] + [True] * turns
    for static, state in zip(statics, before):
        assert all(torch.equal(v, state[k]) for k, v in static.state_dict().items())  # bit-identical
        assert static.training and all(p.requires_grad and p.grad is None for p in static.parameters())


def test_a_static_models_examples_are_its_own_fgsm_not_the_models(pool):
    torch.manual_seed(0)
    model, static = build_network((1, 8, 8), 2), _static(9)
    x, y = pool.load(pool.ids[:32]), torch.from_numpy(pool.targets(pool.ids[:32]))
    cfg = replace(CFG, adv="fgsm", adv_target="true", adv_ensemble=1)
    transferred = adversarial_inputs(model, x, y, cfg, (0.0, 1.0), source=static)
    own = adversarial_inputs(model, x, y, cfg, (0.0, 1.0))
    assert torch.equal(transferred, attacks.fgsm(static, x, y, 0.1))
    assert torch.equal(own, attacks.fgsm(model, x, y, 0.1))
    assert not torch.equal(transferred, own)
    # with adv_target="predicted" the label is the static model's own prediction
    with torch.no_grad():
        static_pred = static(x).argmax(1)
    predicted = adversarial_inputs(model, x, y, replace(cfg, adv_target="predicted"), (0.0, 1.0), source=static)
    assert torch.equal(predicted, attacks.fgsm(static, x, static_pred, 0.1))


def test_without_static_models_k_surrogates_are_trained_first(pool, monkeypatch):
    seen = []
    real = training.train_surrogates

    def spy(pool_, ids, labels, cfg, k, **kwargs):
        seen.append((cfg.adv_ensemble, k))
        return real(pool_, ids, labels, replace(cfg, min_steps=4), k, **kwargs)

    monkeypatch.setattr(training, "train_surrogates", spy)
    cfg = replace(CFG, adv_ensemble=2, min_steps=6)
    a, b = _fit(pool, cfg), _fit(pool, cfg)
    assert seen == [(2, 2), (2, 2)]
    x = pool.load(pool.ids[:20])
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_train_surrogates_are_independently_seeded_plain_models(pool, monkeypatch):
    configs = []
    real = training.train

    def spy(*args, **kwargs):
        configs.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    cfg = replace(CFG, adv="pgd", adv_ensemble=3, min_steps=4)
    models = train_surrogates(pool, pool.ids, pool.targets(pool.ids), cfg, 2)
    assert len(models) == 2 and len({c.seed for c in configs}) == 2 and cfg.seed not in {c.seed for c in configs}
    assert all(c.adv == "none" and c.adv_ensemble == 0 for c in configs)
    x = pool.load(pool.ids[:8])
    with torch.no_grad():
        assert not torch.equal(models[0](x), models[1](x))
    assert train_surrogates(pool, pool.ids, pool.targets(pool.ids), cfg, 0) == []
    configs.clear()
    train_surrogates(pool, pool.ids, pool.targets(pool.ids), cfg, 1, adv=None)
    assert configs[0].adv == "pgd"


def test_a_static_model_with_other_classes_is_refused(pool):
    with pytest.raises(ConfigError, match="static model"):
        _fit(pool, replace(CFG, adv_ensemble=1), static_models=[_static(1, classes=3)])


@pytest.mark.parametrize("kwargs, message", [
    ({"adv_ensemble": -1}, "adv-ensemble"), ({"adv_ensemble": 2, "adv": "none"}, "adv-ensemble"),
    ({"adv": "iterll"}, "--adv"),
])
def test_bad_ensemble_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)
    assert TrainConfig(adv="ll", adv_ensemble=3).adv_ensemble == 3
