"""The faster training step and CNN compute what the plain versions compute (docs/benchmarks.md, "Memory layout")."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from activeadv import attacks, training
from activeadv.data import canonical
from activeadv.networks import SmallCNN, build_network, mode_free
from activeadv.training import TrainConfig, train_step


def _batch(seed: int = 0, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    x = canonical(torch.rand(n, 1, 28, 28, generator=g))
    y = torch.randint(0, 10, (n,), generator=g)
    x_u = canonical(torch.rand(n, 1, 28, 28, generator=g))
    return x, y, x_u


def test_fgsm_from_pass_equals_fgsm():
    torch.manual_seed(0)
    model = build_network((1, 28, 28), 10)
    x, y, _ = _batch()
    xg = x.detach().requires_grad_(True)
    logits = model(xg)
    from_pass = attacks.fgsm_from_pass(logits, xg, y, 0.1, (0.0, 1.0))
    assert torch.equal(from_pass, attacks.fgsm(model, x, y, 0.1, (0.0, 1.0)))
    assert (from_pass - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(from_pass, x)
    logits.sum().backward()  # the pass's graph is kept for the caller's own backward
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("target", ["predicted", "true"])
@pytest.mark.parametrize("unlabeled", ["none", "vat"])
def test_shared_pass_step_equals_the_eval_mode_attack_step(monkeypatch, target, unlabeled):
    """Three steps with FGSM from the clean pass leave the weights the plain path leaves, to the bit."""
    cfg = TrainConfig(adv_target=target, unlabeled=unlabeled, augment=False)
    torch.manual_seed(0)
    shared = build_network((1, 28, 28), 10)
    plain = copy.deepcopy(shared)
    opt_shared = torch.optim.Adam(shared.parameters(), 1e-3)
    opt_plain = torch.optim.Adam(plain.parameters(), 1e-3)
    calls = []
    real_from_pass = attacks.fgsm_from_pass
    monkeypatch.setattr(attacks, "fgsm_from_pass", lambda *a, **k: calls.append(1) or real_from_pass(*a, **k))
    for step in range(3):
        x, y, x_u = _batch(step)
        stats = train_step(shared, x, y, opt_shared, cfg, generator=torch.Generator().manual_seed(step),
                           x_unlabeled=x_u)
        with monkeypatch.context() as m:
            m.setattr(training, "mode_free", lambda model: False)
            reference = train_step(plain, x, y, opt_plain, cfg, generator=torch.Generator().manual_seed(step),
                                   x_unlabeled=x_u)
        assert stats == reference
    assert len(calls) == 3
    for a, b in zip(shared.parameters(), plain.parameters()):
        assert torch.equal(a, b)


def test_mode_dependent_networks_take_the_eval_mode_attack(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Dropout(0.5), nn.ReLU(), nn.Linear(64, 10))
    assert not mode_free(model)
    assert mode_free(build_network((1, 28, 28), 10)) and mode_free(build_network((64,), 10))
    monkeypatch.setattr(attacks, "fgsm_from_pass", lambda *a, **k: pytest.fail("dropout changes the pass"))
    x, y, _ = _batch()
    train_step(model, x, y, torch.optim.Adam(model.parameters(), 1e-3), TrainConfig(augment=False))


def test_cnn_pools_before_relu_and_is_the_same_function_as_relu_before_pool():
    """Checkpoints saved with ReLU first load into today's order and answer the same."""
    torch.manual_seed(0)
    model = SmallCNN(1, 28, 28, num_classes=10)
    f = model.features
    assert [type(m) for m in f] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU] * 2
    old_order = copy.deepcopy(model)
    old_order.features = nn.Sequential(f[0], f[2], f[1], f[3], f[5], f[4])
    assert set(old_order.state_dict()) == set(model.state_dict())
    x, _, _ = _batch()
    assert torch.allclose(model(x), old_order(x), atol=1e-6)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    assert model.features(x).is_contiguous(memory_format=torch.channels_last)
