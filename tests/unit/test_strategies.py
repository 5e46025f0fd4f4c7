"""One contract for every strategy, plus known answers of the probability scores."""

import numpy as np
import pytest
import torch

from activeadv.acquisition import (STRATEGIES, Entropy, LeastConfidence, Margin, make_strategy, parse_strategy,
                                  select)
from activeadv.data import ArrayPool
from activeadv.errors import ConfigError
from activeadv.networks import build_network


@pytest.fixture(scope="module")
def pool_and_model():
    rng = np.random.default_rng(0)
    x = rng.random((120, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 3, 120)
    pool = ArrayPool(x, ["a", "b", "c"], y).with_ids(np.arange(1000, 1120))  # ids are not positions
    torch.manual_seed(0)
    model = build_network(pool.input_shape, 3).eval()
    return pool, model


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name, pool_and_model):
    pool, model = pool_and_model
    labeled = pool.ids[:10]
    candidates = np.concatenate([pool.ids[5:60], pool.ids[20:30]])  # overlaps labeled, has duplicates
    strategy = make_strategy(name)
    sel = select(strategy, model, pool, candidates, 12, rng=np.random.default_rng(7), labeled_ids=labeled)
    assert len(sel) == 12
    assert len(np.unique(sel.item_ids)) == 12
    assert not np.isin(sel.item_ids, labeled).any()
    assert np.isin(sel.item_ids, candidates).all()
    assert sel.predicted is not None and sel.predicted.shape == (12,)
    assert ((sel.confidence > 0) & (sel.confidence <= 1)).all()
    again = select(strategy, model, pool, candidates, 12, rng=np.random.default_rng(7), labeled_ids=labeled)
    np.testing.assert_array_equal(sel.item_ids, again.item_ids)
    if not strategy.diverse:
        assert (np.diff(sel.scores) <= 1e-12).all()  # best first
    # asking for more than there is returns what there is
    small = select(strategy, model, pool, pool.ids[:15], 50, rng=np.random.default_rng(0), labeled_ids=labeled)
    assert sorted(small.item_ids) == list(pool.ids[10:15])


def test_subsample_restricts_scoring_to_a_random_subset(pool_and_model):
    pool, model = pool_and_model
    a = select(make_strategy("entropy"), model, pool, pool.ids, 5, rng=np.random.default_rng(1), subsample=20)
    b = select(make_strategy("entropy"), model, pool, pool.ids, 5, rng=np.random.default_rng(2), subsample=20)
    assert len(a) == len(b) == 5
    assert set(a.item_ids) != set(b.item_ids)


def test_probability_scores_known_answers():
    probs = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    np.testing.assert_allclose(LeastConfidence.from_probabilities(probs), [0.5, 0.0, 0.4])
    np.testing.assert_allclose(Margin.from_probabilities(probs), [0.0, -1.0, -0.3])
    ent = Entropy.from_probabilities(probs)
    assert ent[0] == pytest.approx(np.log(2))
    assert ent[1] == pytest.approx(0.0, abs=1e-9)


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        make_strategy("nope")


def test_dfal_prefers_points_near_a_linear_boundary():
    """On a linear model, DFAL picks exactly the points with the smallest analytic distance."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    pool = ArrayPool(x, ["neg", "pos"], (x[:, 0] > 0).astype(int))

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 2)

        def embed(self, v):
            return v

        def forward(self, v):
            return self.head(v)

    torch.manual_seed(0)
    model = Linear().eval()
    sel = select(make_strategy("dfal"), model, pool, pool.ids, 10, rng=np.random.default_rng(0))
    w = (model.head.weight[1] - model.head.weight[0]).detach().numpy()
    b = float((model.head.bias[1] - model.head.bias[0]).detach())
    analytic = np.abs(x @ w + b) / np.linalg.norm(w)
    assert set(sel.item_ids) == set(np.argsort(analytic)[:10])


@pytest.mark.parametrize("name, params", [(n, {}) for n in STRATEGIES] + [
    ("dfal", {"mode": "exact", "top_k": 3, "overshoot": 0.05}),
    ("dfal", {"shortlist": 0.1, "per_pick": 2}),
    ("fgsm-margin", {"max_epsilon": 0.25, "grid": 8}),
])
def test_a_stored_strategy_string_rebuilds_the_same_strategy(name, params):
    """Rounds store repr(strategy); an interrupted round is finished with what parse_strategy reads back."""
    strategy = make_strategy(name, **params)
    stored_name, stored_params = parse_strategy(repr(strategy))
    again = make_strategy(stored_name, **stored_params)
    assert repr(again) == repr(strategy) and type(again) is type(strategy)

