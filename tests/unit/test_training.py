"""FGSM regularization does what it promises; training is deterministic by seed."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from activeadv.data import load_dataset
from activeadv.errors import ConfigError
from activeadv.training import TrainConfig, evaluate, load_checkpoint, predict_proba, save_checkpoint, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.slow
def test_fgsm_regularization_beats_plain_training_under_attack(digits):
    ids = digits.pool.ids[:400]
    labels = digits.pool.targets(ids)
    base = TrainConfig(epochs=20, min_steps=200, epsilon=0.1, seed=3, device="cpu")
    plain = evaluate(train(digits.pool, ids, labels, replace(base, adv="none")), digits.test, base)
    robust = evaluate(train(digits.pool, ids, labels, replace(base, adv="fgsm")), digits.test, base)
    assert robust.fgsm_accuracy > plain.fgsm_accuracy + 0.05
    assert robust.pgd_accuracy > plain.pgd_accuracy
    assert robust.accuracy > 0.85 and plain.accuracy > 0.85  # both still learn the task


@pytest.mark.parametrize("adv", ["fgsm", "pgd"])
def test_training_is_deterministic_by_seed(digits, adv, tmp_path):
    ids = digits.pool.ids[:60]
    cfg = TrainConfig(epochs=1, min_steps=20, adv=adv, adv_steps=2, seed=11, device="cpu")
    a = train(digits.pool, ids, digits.pool.targets(ids), cfg)
    b = train(digits.pool, ids, digits.pool.targets(ids), cfg)
    pa = predict_proba(a, digits.test, digits.test.ids[:50])
    np.testing.assert_array_equal(pa, predict_proba(b, digits.test, digits.test.ids[:50]))
    path = save_checkpoint(a, tmp_path / "m.pt", cfg, input_shape=digits.pool.input_shape, num_classes=10)
    np.testing.assert_array_equal(pa, predict_proba(load_checkpoint(path, "cpu"), digits.test,
                                                    digits.test.ids[:50]))


@pytest.mark.parametrize("kwargs, message", [
    ({"epsilon": -1}, "epsilon"), ({"alpha": 2}, "alpha"), ({"adv": "cw"}, "--adv"), ({"adv_target": "x"}, "target"),
])
def test_bad_train_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_cuda_asked_without_cuda_is_config_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train(load_dataset("digits").pool, np.array([0, 1]), np.array([0, 1]), TrainConfig(device="cuda"))
