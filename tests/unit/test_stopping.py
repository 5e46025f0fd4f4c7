"""Stabilizing predictions: kappa known answers, and the rule fires on stable rounds and not before."""

import numpy as np
import pytest

from activeadv.errors import ConfigError
from activeadv.stopping import StabilizingPredictions, cohen_kappa, stop_set


def test_kappa_known_answers():
    a = np.array([0, 0, 1, 1])
    assert cohen_kappa(a, a, 2) == 1.0
    assert cohen_kappa(a, 1 - a, 2) == pytest.approx(-1.0)
    # observed 0.75; marginals (0.5, 0.5) and (0.25, 0.75): expected 0.5 -> kappa 0.5
    assert cohen_kappa(a, np.array([0, 1, 1, 1]), 2) == pytest.approx(0.5)
    assert cohen_kappa(np.zeros(5, int), np.zeros(5, int), 3) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa(a, a[:3], 2)


def test_rule_fires_on_stable_predictions_and_not_before():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 2000)
    # rounds' predictions: noisy early, converging; agreement of consecutive rounds
    noise = [0.5, 0.3, 0.1, 0.05, 0.004, 0.003, 0.002, 0.001]
    preds = [np.where(rng.random(2000) < p, rng.integers(0, 10, 2000), truth) for p in noise]
    agreements = [None] + [cohen_kappa(a, b, 10) for a, b in zip(preds, preds[1:])]
    rule = StabilizingPredictions(window=3, threshold=0.99)
    first = rule.first_fired(agreements)
    assert first is not None
    assert all(a >= 0.99 for a in agreements[first - 2 : first + 1])  # the window that made it fire
    assert not any(rule.fired(agreements[: k + 1]) for k in range(first))
    assert min(agreements[1:4]) < 0.9  # early rounds really disagreed


def test_rule_needs_a_full_window():
    rule = StabilizingPredictions(window=3, threshold=0.9)
    assert not rule.fired([None, 1.0, 1.0])  # the first round has nothing to agree with
    assert not rule.fired([1.0, 1.0])
    assert rule.fired([None, 1.0, 1.0, 1.0])
    assert rule.first_fired([0.5, 0.95, 0.95, 0.95, 0.2]) == 3
    with pytest.raises(ConfigError):
        StabilizingPredictions(window=0)


def test_stop_set_is_fixed_and_bounded():
    ids = np.arange(10, 10010)
    a, b = stop_set(ids, 500), stop_set(ids[::-1].copy(), 500)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 500 and len(np.unique(a)) == 500 and np.isin(a, ids).all()
    np.testing.assert_array_equal(stop_set(ids[:20], 500), ids[:20])
