"""One contract for every strategy, plus known answers of the probability scores."""

import json

import numpy as np
import pytest
import torch

from activeadv.acquisition import STRATEGIES, Entropy, LeastConfidence, Margin, Strategy, make_strategy, select
from activeadv.data import ArrayPool
from activeadv.errors import ConfigError
from activeadv.networks import build_network
from activeadv.records import strategy_label, strategy_text


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
] + [(n, {"diversity": d, "diversity_factor": 4}) for n in sorted(STRATEGIES) if not STRATEGIES[n].diverse
     for d in ("kcenter", "kmeans++")])
def test_params_rebuild_the_same_strategy_through_json(name, params):
    """Rounds store the name and params() as JSON; make_strategy(name, **params) rebuilds the same strategy."""
    strategy = make_strategy(name, **params)
    stored = json.loads(json.dumps(strategy.params(), allow_nan=False))  # what the JSON column gives back
    assert stored == strategy.params()
    again = make_strategy(strategy.name, **stored)
    assert type(again) is type(strategy) and again.name == strategy.name == name
    assert again.params() == strategy.params() and repr(again) == repr(strategy)
    assert (again.diversity, again.diversity_factor) == (strategy.diversity, strategy.diversity_factor)
    assert "+" not in strategy.name  # diversity is a parameter, never part of the stored name


def test_the_command_line_name_plus_diversity_is_stored_as_name_and_parameters():
    strategy = make_strategy("dfal+kmeans++", mode="exact")
    assert strategy.name == "dfal" and strategy.label == "dfal+kmeans++"
    assert strategy.params() == {"mode": "exact", "top_k": 10, "steps": 50, "overshoot": 0.02,
                                 "diversity": "kmeans++", "diversity_factor": 10}
    assert strategy_label(strategy.name, strategy.params()) == "dfal(exact)+kmeans++"
    assert strategy_text(strategy.name, strategy.params()) == repr(strategy)
    assert make_strategy("entropy").params() == {} and strategy_label("seed", {}) == "seed"



class _PickLast(Strategy):
    """Asks the worst-scored items: a choose() hook that select() must follow."""

    name = "pick-last"

    def score(self, model, pool, ids, ctx):
        return np.asarray(ids, dtype=np.float64)  # higher id = better

    def choose(self, model, pool, ids, scores, ranked, n, ctx, rng):
        assert list(ranked) == list(np.argsort(-scores, kind="stable"))  # best first (no ties here)
        return ranked[::-1][:n]


def test_select_follows_a_strategys_choose_hook(pool_and_model):
    pool, model = pool_and_model
    sel = select(_PickLast(), model, pool, pool.ids[:30], 4, rng=np.random.default_rng(0))
    assert list(sel.item_ids) == list(pool.ids[:4]) and list(sel.scores) == list(pool.ids[:4].astype(float))

    class Bad(_PickLast):
        def choose(self, model, pool, ids, scores, ranked, n, ctx, rng):
            return np.array([0, 0])

    with pytest.raises(RuntimeError, match="distinct"):
        select(Bad(), model, pool, pool.ids[:30], 4, rng=np.random.default_rng(0))


def test_coreset_embeds_each_candidate_once_for_score_and_choice(pool_and_model):
    """choose() reuses the embeddings score() computed: one pass over the candidates, one over the labeled."""
    pool, model = pool_and_model
    rows = []
    original = model.embed
    model.embed = lambda x: (rows.append(len(x)), original(x))[1]
    try:
        sel = select(make_strategy("coreset"), model, pool, pool.ids[10:60], 5, rng=np.random.default_rng(0),
                     labeled_ids=pool.ids[:10])
    finally:
        del model.embed
    assert len(sel) == 5 and rows and sum(rows) == 50 + 10 + 5  # + the 5 picks' predictions (forward embeds)


def test_coreset_choice_is_k_center_greedy_from_the_farthest_candidate(pool_and_model):
    pool, model = pool_and_model
    from activeadv.acquisition import ScoringContext, embeddings

    labeled, candidates = pool.ids[:10], pool.ids[10:60]
    sel = select(make_strategy("coreset"), model, pool, candidates, 3, rng=np.random.default_rng(0),
                 labeled_ids=labeled)
    ctx = ScoringContext()
    emb = embeddings(model, pool, candidates, ctx).astype(np.float64)
    covered = embeddings(model, pool, labeled, ctx).astype(np.float64)
    expected = []
    for _ in range(3):
        dist = np.sqrt(((emb[:, None] - covered[None]) ** 2).sum(-1)).min(1)
        best = int(np.argmax(dist))
        expected.append(int(candidates[best]))
        covered = np.concatenate([covered, emb[best : best + 1]])
    assert list(sel.item_ids) == expected
    assert sel.scores[0] == pytest.approx(sel.scores.max())  # the first pick is the farthest from the labeled
