"""Batch diversity in select(): n distinct picks from the k x n shortlist, spread over clusters."""

import numpy as np
import pytest
import torch
from torch import nn

from activeadv.acquisition import Strategy, make_strategy, select
from activeadv.data import ArrayPool
from activeadv.errors import ConfigError


class _Identity(nn.Module):
    """embed = the input itself, so clusters in input space are clusters in embedding space."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2)

    def embed(self, x):
        return x

    def forward(self, x):
        return self.head(x)


class _Given(Strategy):
    """Scores fixed by the test (higher = ask first), looked up by item id."""

    name = "given"

    def __init__(self, scores: dict[int, float]) -> None:
        self.scores = scores

    def score(self, model, pool, ids, ctx):
        return np.array([self.scores[int(i)] for i in ids])


def _clustered_pool():
    """Four tight clusters of near-boundary points; cluster 0 holds the best 40 scores outright."""
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    x = np.concatenate([c + 0.1 * rng.standard_normal((40, 2)).astype(np.float32) for c in centers])
    cluster = np.repeat(np.arange(4), 40)
    scores = np.where(cluster == 0, 10.0, 5.0) + rng.random(160)  # every item near the boundary, cluster 0 nearest
    # a far, low-scored outlier cluster outside the shortlist must not be picked
    x = np.concatenate([x, np.full((40, 2), 100.0, dtype=np.float32)])
    cluster = np.concatenate([cluster, np.full(40, 9)])
    scores = np.concatenate([scores, np.zeros(40)])
    pool = ArrayPool(x, ["a", "b"], clip_range=None).with_ids(np.arange(500, 700))
    return pool, cluster, {int(i): float(s) for i, s in zip(pool.ids, scores)}


@pytest.mark.parametrize("diversity", ["kcenter", "kmeans++"])
def test_diverse_batch_covers_every_cluster_top_n_does_not(diversity):
    pool, cluster, scores = _clustered_pool()
    model = _Identity()
    of = dict(zip(pool.ids.tolist(), cluster.tolist()))
    top = select(_Given(scores), model, pool, pool.ids, 8, rng=np.random.default_rng(0))
    assert {of[int(i)] for i in top.item_ids} == {0}  # top-n asks 8 near-copies of one confusion
    strategy = _Given(scores)
    strategy.diversity, strategy.diversity_factor = diversity, 20  # shortlist: the best 160 = clusters 0-3
    spread = select(strategy, model, pool, pool.ids, 8, rng=np.random.default_rng(0))
    assert len(np.unique(spread.item_ids)) == 8
    assert {of[int(i)] for i in spread.item_ids} == {0, 1, 2, 3}  # every cluster, never the outliers
    assert spread.item_ids[0] == top.item_ids[0]  # the best-scored item still comes first
    assert (np.diff(spread.scores) <= 0).all()  # asked best first


def test_diverse_picks_stay_inside_the_shortlist_and_are_deterministic():
    pool, _, scores = _clustered_pool()
    model = _Identity()
    strategy = _Given(scores)
    strategy.diversity, strategy.diversity_factor = "kmeans++", 3
    a = select(strategy, model, pool, pool.ids, 5, rng=np.random.default_rng(1), labeled_ids=pool.ids[:3])
    b = select(strategy, model, pool, pool.ids, 5, rng=np.random.default_rng(1), labeled_ids=pool.ids[:3])
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    ranked = sorted((s, i) for i, s in scores.items() if i not in set(pool.ids[:3].tolist()))[::-1]
    shortlist = {i for _, i in ranked[:15]}
    assert set(a.item_ids.tolist()) <= shortlist and not np.isin(a.item_ids, pool.ids[:3]).any()


def test_diversity_round_trips_through_the_stored_name_and_parameters():
    s = make_strategy("dfal+kcenter")
    assert s.label == "dfal+kcenter" and "diversity=kcenter" in repr(s)
    assert s.name == "dfal" and s.params()["diversity"] == "kcenter"
    again = make_strategy(s.name, **s.params())
    assert repr(again) == repr(s) and again.diversity == "kcenter" and again.diversity_factor == 10
    k = make_strategy("entropy", diversity="kmeans++", diversity_factor=4)
    assert repr(make_strategy(k.name, **k.params())) == repr(k)
    assert repr(make_strategy("entropy")) == "entropy"  # unchanged when off
    with pytest.raises(ConfigError, match="diversity"):
        make_strategy("dfal+spread")
    with pytest.raises(ConfigError, match="already"):
        make_strategy("coreset+kcenter")
    with pytest.raises(ConfigError, match="factor"):
        make_strategy("dfal", diversity="kcenter", diversity_factor=0)


def test_dfal_fast_shortlist_covers_the_diversity_shortlist():
    """select() tells DFAL how many it must rank exactly: k x n with diversity, not n."""
    rng = np.random.default_rng(0)
    pool = ArrayPool(rng.random((2000, 1, 8, 8), dtype=np.float32), ["a", "b", "c"])
    torch.manual_seed(0)
    from activeadv.networks import build_network

    model = build_network(pool.input_shape, 3).eval()
    seen = {}
    strategy = make_strategy("dfal+kcenter", min_shortlist=1, shortlist=1.0)
    original = strategy._deepfool

    def spy(model, pool, ids, ctx, desc="deepfool"):
        seen["n"] = len(ids)
        return original(model, pool, ids, ctx, desc)

    strategy._deepfool = spy
    select(strategy, model, pool, pool.ids, 4, rng=np.random.default_rng(0))
    assert seen["n"] == 5 * 4 * 10  # per_pick x (factor x n)
