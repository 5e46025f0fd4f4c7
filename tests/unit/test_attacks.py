"""Known answers and invariants of the attacks (no timings)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from activeadv import attacks
from activeadv.networks import SmallCNN


def _linear(in_features: int, classes: int, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(in_features, classes)


def test_deepfool_binary_linear_equals_analytic_distance():
    model = _linear(6, 2)
    x = torch.randn(200, 6)
    dist, x_adv = attacks.deepfool(model, x)
    w = (model.weight[1] - model.weight[0]).detach()
    b = (model.bias[1] - model.bias[0]).detach()
    analytic = (x @ w + b).abs() / w.norm()
    assert torch.allclose(dist, analytic, rtol=0.01, atol=2e-4)
    assert (model(x_adv).argmax(1) != model(x).argmax(1)).all()


def test_deepfool_multiclass_linear_is_distance_to_nearest_boundary():
    model = _linear(5, 4, seed=1)
    x = torch.randn(100, 5)
    dist, x_adv = attacks.deepfool(model, x, top_k=3)
    logits = model(x).detach()
    pred = logits.argmax(1)
    W = model.weight.detach()
    expected = torch.full((100,), float("inf"))
    for k in range(4):
        w = W[k] - W[pred]
        f = logits[:, k] - logits.gather(1, pred[:, None]).squeeze(1)
        d = f.abs() / w.norm(dim=1)
        expected = torch.where(pred == k, expected, torch.minimum(expected, d))
    assert torch.allclose(dist, expected, rtol=0.01, atol=2e-4)
    assert (model(x_adv).argmax(1) != pred).all()


def test_deepfool_flips_cnn_prediction_and_restores_training_mode():
    torch.manual_seed(0)
    model = SmallCNN(1, 8, 8, 10)
    model.train()
    x = torch.rand(16, 1, 8, 8)
    dist, x_adv = attacks.deepfool(model, x, top_k=9)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert (dist > 0).all()
    model.eval()
    flipped = model(x_adv).argmax(1) != model(x).argmax(1)
    assert flipped.float().mean() >= 0.9


def test_deepfool_top1_never_closer_than_all_classes():
    """Restricting candidate classes can only miss boundaries, so distances never shrink."""
    torch.manual_seed(3)
    model = torch.nn.Linear(8, 6)
    x = torch.randn(50, 8)
    d_all, _ = attacks.deepfool(model, x, top_k=5)
    d_one, _ = attacks.deepfool(model, x, top_k=1)
    assert (d_one >= d_all - 1e-5).all()


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0.0, 0.5), seed=st.integers(0, 1000), method=st.sampled_from(["fgsm", "bim", "pgd"]))
def test_perturbations_stay_in_eps_ball_and_valid_range(eps, seed, method):
    torch.manual_seed(seed)
    model = SmallCNN(1, 8, 8, 10)
    x = torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 10, (8,))
    if method == "fgsm":
        adv = attacks.fgsm(model, x, y, eps)
    else:
        adv = attacks.pgd(model, x, y, eps, steps=3, random_start=method == "pgd",
                          generator=torch.Generator().manual_seed(seed))
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_fgsm_increases_the_loss_of_a_linear_model():
    model = _linear(10, 3)
    x = torch.rand(64, 10)
    y = model(x).argmax(1)
    adv = attacks.fgsm(model, x, y, 0.05, clip=None)
    ce = torch.nn.functional.cross_entropy
    assert ce(model(adv), y) > ce(model(x), y)


def test_fgsm_flip_epsilon_matches_linear_sign_geometry():
    """For a linear binary model the FGSM flip epsilon is |f| / ||w||_1 (the L1 norm is the dual of L-inf)."""
    model = _linear(6, 2, seed=5)
    x = torch.randn(40, 6) * 0.3
    eps = attacks.fgsm_flip_epsilon(model, x, max_epsilon=10.0, grid=20, bisection_steps=20, clip=None)
    w = (model.weight[1] - model.weight[0]).detach()
    f = (x @ w + (model.bias[1] - model.bias[0]).detach()).abs()
    expected = f / w.abs().sum()
    assert np.allclose(eps.numpy(), expected.numpy(), rtol=0.02, atol=1e-3)
