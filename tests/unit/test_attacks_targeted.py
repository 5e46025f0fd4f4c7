"""Targeted, L2 and least-likely-class attacks: known answers on linear softmax models, and the range contract."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from activeadv import attacks
from activeadv.networks import SmallCNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _axis_model(scales=(1.0, 2.0, 0.5), biases=(0.0, 0.3, -0.2)) -> torch.nn.Linear:
    """Three classes, ``z_k = c_k * x_k + b_k``: each class owns one input coordinate.

    The gradient of ``CE(x, t)`` is ``sum_k p_k w_k - w_t``: negative on the
    target's coordinate, positive on the others, whatever ``p`` is.  So a
    targeted L-inf step of ``eps`` adds ``eps * c_t`` to ``z_t`` and takes
    ``eps * c_k`` off every other ``z_k``: the target wins iff
    ``eps > max_k (z_k - z_t) / (c_t + c_k)``.
    """
    model = torch.nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.diag(torch.tensor(scales)))
        model.bias.copy_(torch.tensor(biases))
    return model


def _needed_linf(model: torch.nn.Linear, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    c = torch.diagonal(model.weight).detach()
    z = model(x).detach()
    z_t = z.gather(1, target[:, None])
    need = (z - z_t) / (c[target][:, None] + c[None, :])
    need[torch.arange(len(x)), target] = -float("inf")
    return need.max(1).values


def _inputs_and_targets(model, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    pred = model(x).argmax(1)
    target = (pred + 1 + torch.randint(0, 2, (n,), generator=g)) % 3  # never the predicted class
    return x, pred, target


@pytest.mark.parametrize("method", ["fgsm", "bim"])
def test_targeted_linf_reaches_the_target_exactly_where_the_analytic_step_says(method):
    model = _axis_model()
    x, _, target = _inputs_and_targets(model)
    needed = _needed_linf(model, x, target)
    assert (needed > 0).all()
    for eps in (0.2, 0.5, 1.0, 2.0):
        if method == "fgsm":
            adv = attacks.fgsm(model, x, None, eps, clip=None, target=target)
        else:
            adv = attacks.pgd(model, x, None, eps, steps=5, random_start=False, clip=None, target=target)
        reached = model(adv).argmax(1) == target
        clear = (needed - eps).abs() > 1e-4  # rows right on the boundary can go either way
        assert clear.float().mean() > 0.95
        assert torch.equal(reached[clear], (eps > needed)[clear])
        assert (adv - x).abs().max() <= eps + 1e-6


def test_targeted_fgsm_just_above_the_needed_eps_succeeds_and_well_below_fails():
    model = _axis_model()
    x, _, target = _inputs_and_targets(model, n=40, seed=1)
    needed = _needed_linf(model, x, target)
    for i in range(len(x)):
        row, t, eps = x[i : i + 1], target[i : i + 1], float(needed[i])
        above = attacks.fgsm(model, row, None, eps * 1.001 + 1e-6, clip=None, target=t)
        below = attacks.fgsm(model, row, None, eps * 0.8, clip=None, target=t)
        assert int(model(above).argmax(1)) == int(t)
        assert int(model(below).argmax(1)) != int(t)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_targeted_l2_on_a_binary_linear_model_needs_the_margin_over_the_weight_norm(method):
    """Two classes: the targeted L2 step moves along ``w_t - w_o``; it wins iff ``eps > |f| / ||w_t - w_o||``."""
    torch.manual_seed(4)
    model = torch.nn.Linear(6, 2)
    x = torch.randn(200, 6)
    pred = model(x).argmax(1)
    target = 1 - pred
    w = (model.weight[1] - model.weight[0]).detach()
    f = (x @ w + (model.bias[1] - model.bias[0]).detach())  # > 0 where class 1 wins
    needed = f.abs() / w.norm()
    for eps in (0.1, 0.3, 0.8):
        if method == "fgsm":
            adv = attacks.fgsm(model, x, None, eps, clip=None, norm="2", target=target)
        else:
            adv = attacks.pgd(model, x, None, eps, steps=8, random_start=False, clip=None, norm="2", target=target)
        reached = model(adv).argmax(1) == target
        clear = (needed - eps).abs() > 1e-4
        assert torch.equal(reached[clear], (eps > needed)[clear])
        assert ((adv - x).norm(dim=1) <= eps + 1e-5).all()


def test_untargeted_l2_fgsm_is_the_normalised_gradient_step():
    torch.manual_seed(2)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    adv = attacks.fgsm(model, x, y, 0.7, clip=None, norm="2")
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xg), y, reduction="sum"), xg)
    assert torch.allclose(adv, x + 0.7 * g / g.norm(dim=1, keepdim=True), atol=1e-6)


def test_iter_ll_targets_the_least_likely_class_of_the_clean_input():
    model = _axis_model()
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(5))
    probs = torch.softmax(model(x), 1)
    ll = attacks.least_likely_class(model, x)
    assert torch.equal(ll, probs.argmin(1))
    adv = attacks.iterative_least_likely(model, x, 1.0, steps=4, clip=None)
    same = attacks.pgd(model, x, None, 1.0, steps=4, random_start=False, clip=None, target=probs.argmin(1))
    assert torch.equal(adv, same)
    # on the axis model the least-likely class is reached where the analytic step says it must be
    needed = _needed_linf(model, x, ll)
    reached = model(adv).argmax(1) == ll
    clear = (needed - 1.0).abs() > 1e-4
    assert torch.equal(reached[clear], (needed < 1.0)[clear])
    assert (model(adv).gather(1, ll[:, None]) > model(x).gather(1, ll[:, None])).all()


def test_targeted_attacks_lower_the_target_loss_of_a_cnn_and_restore_the_model():
    torch.manual_seed(0)
    model = SmallCNN(1, 8, 8, 10)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(16, 1, 8, 8)
    target = torch.randint(0, 10, (16,))
    ce = torch.nn.functional.cross_entropy
    for adv in (attacks.fgsm(model, x, None, 0.1, target=target),
                attacks.pgd(model, x, None, 0.1, steps=3, target=target, generator=torch.Generator().manual_seed(0)),
                attacks.pgd(model, x, None, 1.0, steps=3, norm="2", target=target),
                attacks.iterative_least_likely(model, x, 0.1, steps=3)):
        assert not adv.requires_grad and adv.grad_fn is None
        assert model.training and [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert adv.shape == x.shape
    model.eval()
    adv = attacks.pgd(model, x, None, 0.1, steps=5, random_start=False, target=target)
    assert ce(model(adv), target) < ce(model(x), target)


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0.0, 3.0), seed=st.integers(0, 1000), targeted=st.booleans(),
       method=st.sampled_from(["fgsm", "bim", "pgd"]))
def test_l2_perturbations_stay_in_their_radius_and_the_valid_range(eps, seed, targeted, method):
    torch.manual_seed(seed)
    model = SmallCNN(1, 8, 8, 10)
    x = torch.rand(8, 1, 8, 8)
    label = torch.randint(0, 10, (8,))
    y, target = (None, label) if targeted else (label, None)
    if method == "fgsm":
        adv = attacks.fgsm(model, x, y, eps, norm="2", target=target)
    else:
        adv = attacks.pgd(model, x, y, eps, steps=3, random_start=method == "pgd", norm="2", target=target,
                          generator=torch.Generator().manual_seed(seed))
    assert ((adv - x).reshape(8, -1).norm(dim=1) <= eps + 1e-5).all()
    assert adv.min() >= 0 and adv.max() <= 1


@settings(max_examples=15, deadline=None)
@given(eps=st.floats(0.0, 0.5), seed=st.integers(0, 1000), method=st.sampled_from(["fgsm", "pgd", "ll"]))
def test_targeted_linf_perturbations_stay_in_the_eps_ball_and_valid_range(eps, seed, method):
    torch.manual_seed(seed)
    model = SmallCNN(1, 8, 8, 10)
    x = torch.rand(8, 1, 8, 8)
    target = torch.randint(0, 10, (8,))
    if method == "fgsm":
        adv = attacks.fgsm(model, x, None, eps, target=target)
    elif method == "pgd":
        adv = attacks.pgd(model, x, None, eps, steps=3, target=target, generator=torch.Generator().manual_seed(seed))
    else:
        adv = attacks.iterative_least_likely(model, x, eps, steps=3)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_the_default_pgd_is_unchanged_by_the_new_parameters():
    """The L-inf random start draws the same numbers as before: seeded runs of existing projects do not move."""
    torch.manual_seed(1)
    model = SmallCNN(1, 8, 8, 10)
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    adv = attacks.pgd(model, x, y, 0.1, steps=2, step_size=0.05, generator=torch.Generator().manual_seed(3))
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(3))
    manual = (x + (2 * noise - 1) * 0.1).clamp(0, 1)
    for _ in range(2):
        manual = manual + 0.05 * attacks._loss_gradient(model, manual, y).sign()
        manual = torch.max(torch.min(manual, x + 0.1), x - 0.1).clamp(0, 1)
    assert torch.equal(adv, manual)


@pytest.mark.parametrize("kwargs", [{"y": None}, {"target": torch.zeros(2, dtype=torch.int64)}, {"norm": "1"}])
def test_bad_attack_arguments_raise(kwargs):
    model = torch.nn.Linear(3, 2)
    x = torch.rand(2, 3)
    args = {"y": torch.zeros(2, dtype=torch.int64), **kwargs}
    with pytest.raises(ValueError):
        attacks.fgsm(model, x, args.pop("y"), 0.1, **args)
    with pytest.raises(ValueError):
        attacks.pgd(model, x, {"y": torch.zeros(2, dtype=torch.int64), **kwargs}["y"], 0.1, **args)
