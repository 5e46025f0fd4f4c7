"""Paired seed-by-seed comparison: the sign-flip test and interval on hand-computed cases, and summary.json's
``versus`` entries from real curves."""

import itertools

import numpy as np
import pytest

from activeadv.cli.simulate import format_versus
from activeadv.comparison import paired_difference, sign_flip_p
from activeadv.records import CurvePoint
from activeadv.simulation import summarize


def test_sign_flip_p_all_positive_is_the_smallest_possible():
    # 2 of the 2**n sign patterns (all +, all -) are as extreme as an all-positive set of differences
    assert sign_flip_p(np.array([0.1, 0.2, 0.3])) == pytest.approx(2 / 8)
    assert sign_flip_p(np.array([0.01] * 6)) == pytest.approx(2 / 64)


def test_sign_flip_p_matches_brute_force():
    diffs = np.array([0.004, -0.001, 0.003, 0.002, -0.0005])
    observed = abs(diffs.mean())
    extreme = sum(abs(np.mean(np.array(s) * diffs)) >= observed - 1e-12
                  for s in itertools.product([1, -1], repeat=len(diffs)))
    assert sign_flip_p(diffs) == pytest.approx(extreme / 2 ** len(diffs))


def test_balanced_differences_are_no_evidence():
    assert sign_flip_p(np.array([0.002, -0.002])) == pytest.approx(1.0)
    d = paired_difference({0: 0.95, 1: 0.94}, {0: 0.94, 1: 0.95})
    assert d is not None and d.mean == pytest.approx(0.0) and d.ahead == 1 and d.p_value == pytest.approx(1.0)


def test_paired_difference_uses_shared_seeds_and_a_t_interval():
    mine = {0: 0.96, 1: 0.95, 2: 0.955, 7: 0.99}  # seed 7 has no partner: ignored
    theirs = {0: 0.95, 1: 0.948, 2: 0.951, 3: 0.90}
    d = paired_difference(mine, theirs)
    assert d is not None and d.seeds == 3 and d.ahead == 3
    diffs = np.array([0.01, 0.002, 0.004])
    assert d.mean == pytest.approx(diffs.mean())
    half = 4.302652729749462 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert (d.ci_low, d.ci_high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    one = paired_difference({0: 0.9}, {0: 0.8})
    assert one is not None and one.as_dict()["ci_low"] is None  # nan -> null for JSON


def _curve(strategy, seed, accs):
    return [CurvePoint(strategy, seed, r, 10 * (r + 1), a, None) for r, a in enumerate(accs)]


def test_summary_reports_paired_aulc_between_every_two_strategies():
    points = []
    for seed in range(4):
        points += _curve("dfal", seed, [0.5, 0.8, 0.9])
        points += _curve("random", seed, [0.5, 0.6 + 0.01 * seed, 0.8])
    s = summarize(points, target=0.8)["strategies"]
    v = s["dfal"]["versus"]["random"]
    assert v["seeds"] == 4 and v["ahead"] == 4 and v["mean"] > 0 and v["p_value"] == pytest.approx(2 / 16)
    assert s["random"]["versus"]["dfal"]["mean"] == pytest.approx(-v["mean"])
    lines = format_versus({"strategies": s})
    assert lines[0].startswith("paired AULC, dfal minus")  # the leader in mean AULC
    assert "random" in lines[1] and "4 of 4" in lines[1]


def test_no_paired_lines_with_one_seed():
    points = _curve("dfal", 0, [0.5, 0.9]) + _curve("random", 0, [0.5, 0.7])
    assert format_versus({"strategies": summarize(points, target=0.8)["strategies"]}) == []
