"""The final model's ensemble (``final-model --ensemble``): the mean of its members' softmax, attackable, saved
and loaded as one checkpoint, its members the single models of consecutive seeds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from activeadv import attacks
from activeadv.data import load_dataset
from activeadv.errors import ConfigError
from activeadv.networks import Ensemble, build_network
from activeadv.training import (
    TrainConfig,
    clean_accuracy,
    load_checkpoint,
    predict_proba,
    save_checkpoint,
    train,
    train_ensemble,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _nets(k: int) -> list[torch.nn.Module]:
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        nets.append(build_network((1, 8, 8), 10).eval())
    return nets


def test_the_ensemble_answers_the_mean_of_its_members_probabilities():
    members = _nets(3)
    ensemble = Ensemble(members).eval()
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), dim=1) for m in members]).mean(0)
        out = ensemble(x)
    torch.testing.assert_close(torch.softmax(out, dim=1), mean)  # its output is a log-probability
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))
    with torch.no_grad():  # one member: that network's log-softmax
        torch.testing.assert_close(Ensemble(members[:1])(x), torch.log_softmax(members[0](x), dim=1))
    assert ensemble.embed(x).shape == (5, 3 * members[0].embed(x).shape[1])
    with pytest.raises(ConfigError):
        Ensemble([])


def test_attacks_differentiate_through_every_member():
    members = _nets(2)
    ensemble = Ensemble(members).eval()
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    x_adv = attacks.fgsm(ensemble, x, y, 0.1, clip=(0.0, 1.0))
    assert (x_adv - x).abs().max() == pytest.approx(0.1, abs=1e-6) and not torch.equal(x_adv, x)
    torch.nn.functional.cross_entropy(ensemble(x), y).backward()
    for member in members:  # the loss reaches every member's weights
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member.parameters() if p.dim() > 1)
    alone = attacks.fgsm(members[0], x, y, 0.1, clip=(0.0, 1.0))
    assert not torch.equal(x_adv, alone)  # the second member moves the attack


def test_members_are_the_single_models_of_consecutive_seeds_and_the_file_round_trips(digits, tmp_path):
    ids = digits.pool.ids[:80]
    labels = digits.pool.targets(ids)
    cfg = TrainConfig(epochs=1, min_steps=15, seed=4, device="cpu")
    ensemble = train_ensemble(digits.pool, ids, labels, cfg, 2)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2
    test_ids = digits.test.ids[:60]
    for i, member in enumerate(ensemble.members):
        alone = train(digits.pool, ids, labels, replace(cfg, seed=4 + i))
        np.testing.assert_array_equal(predict_proba(member, digits.test, test_ids),
                                      predict_proba(alone, digits.test, test_ids))
    single = train_ensemble(digits.pool, ids, labels, cfg, 1)  # one member: the plain network, as before
    assert not isinstance(single, Ensemble)
    np.testing.assert_array_equal(predict_proba(single, digits.test, test_ids),
                                  predict_proba(ensemble.members[0], digits.test, test_ids))

    path = save_checkpoint(ensemble, tmp_path / "e.pt", cfg, input_shape=digits.pool.input_shape, num_classes=10)
    loaded = load_checkpoint(path, "cpu")
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 2
    np.testing.assert_allclose(predict_proba(loaded, digits.test, test_ids),
                               predict_proba(ensemble, digits.test, test_ids))
    accuracy = clean_accuracy(loaded, digits.test, cfg)
    truth = digits.test.targets(digits.test.ids)
    assert accuracy == pytest.approx(float((predict_proba(ensemble, digits.test, digits.test.ids).argmax(1)
                                            == truth).mean()))

    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["ensemble"] = 3  # a header that does not match its weights: one line, not a traceback
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="does not hold the network it describes"):
        load_checkpoint(tmp_path / "bad.pt", "cpu")
    with pytest.raises(ConfigError, match="at least 1"):
        train_ensemble(digits.pool, ids, labels, cfg, 0)
