"""AULC, labels-to-target and saving-vs-random on hand-computed curves."""

import pytest

from activeadv.records import CurvePoint
from activeadv.simulation import aulc, labels_to_target, summarize


def test_aulc_is_normalised_trapezoid():
    assert aulc([0, 10], [0.5, 1.0]) == pytest.approx(0.75)
    assert aulc([10, 20, 40], [0.2, 0.4, 0.4]) == pytest.approx((0.3 * 10 + 0.4 * 20) / 30)
    assert aulc([5], [0.9]) == pytest.approx(0.9)


def test_labels_to_target():
    assert labels_to_target([10, 20, 30], [0.5, 0.8, 0.9], 0.8) == 20
    assert labels_to_target([10, 20], [0.5, 0.6], 0.8) is None


def _curve(strategy, seed, accs, step=10):
    return [CurvePoint(strategy, seed, r, step * (r + 1), a, None) for r, a in enumerate(accs)]


def test_summary_saving_vs_random():
    points = (_curve("random", 0, [0.5, 0.6, 0.7, 0.8]) + _curve("random", 1, [0.5, 0.6, 0.8, 0.9])
              + _curve("dfal", 0, [0.5, 0.8, 0.9, 0.9]) + _curve("dfal", 1, [0.5, 0.7, 0.8, 0.9]))
    s = summarize(points, target=0.8, dataset="toy")["strategies"]
    assert s["random"]["labels_to_target_mean"] == pytest.approx(35.0)  # 40 and 30
    assert s["dfal"]["labels_to_target_mean"] == pytest.approx(25.0)  # 20 and 30
    assert s["dfal"]["saving_vs_random"] == pytest.approx(1 - 25 / 35)
    assert s["dfal"]["aulc_mean"] > s["random"]["aulc_mean"]
    assert s["random"]["target_reached"] == "2/2"
