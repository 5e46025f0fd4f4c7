"""DFAL's fast mode (first-order shortlist + exact DeepFool) against the exact mode: agreement, batch-size
invariance and the linear known answer.  No timings are asserted (see ``activeadv bench scoring``)."""

import numpy as np
import pytest
import torch
from torch import nn

from activeadv import attacks
from activeadv.acquisition import DFAL, ScoringContext, make_strategy, select
from activeadv.data import ArrayPool, load_dataset
from activeadv.errors import ConfigError
from activeadv.training import TrainConfig, train


def _top(scores: np.ndarray, n: int) -> set[int]:
    return set(np.argsort(-scores, kind="stable")[:n].tolist())


@pytest.fixture(scope="module")
def digits_model():
    """A small CNN trained on 150 digits (a real, curved decision boundary)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    pool = load_dataset("digits").pool
    labeled = np.sort(np.random.default_rng(0).choice(pool.ids, 150, replace=False))
    cfg = TrainConfig(epochs=5, min_steps=80, max_steps=80, adv="none", device="cpu", seed=0)
    model = train(pool, labeled, pool.targets(labeled), cfg)
    return pool, model, np.setdiff1d(pool.ids, labeled)


def test_fast_mode_selects_what_exact_deepfool_selects(digits_model):
    pool, model, candidates = digits_model
    ctx = ScoringContext(batch_size=256)
    exact = DFAL(mode="exact").score(model, pool, candidates, ctx)
    fast_strategy = DFAL(mode="fast", shortlist=0.05, min_shortlist=0)  # the screen really drops 95%
    fast = fast_strategy.score(model, pool, candidates, ctx)
    assert fast_strategy.shortlist_size(len(candidates)) < len(candidates) // 10
    for n in (max(1, len(candidates) // 100), 20):
        overlap = len(_top(fast, n) & _top(exact, n)) / n
        assert overlap >= 0.9, (n, overlap)
    # shortlisted items carry their exact DeepFool score and rank before every other item
    distance, is_exact = fast_strategy.rank_distances(model, pool, candidates, ctx)
    np.testing.assert_allclose(-fast[is_exact], -exact[is_exact], rtol=1e-5, atol=1e-6)
    assert fast[is_exact].min() >= fast[~is_exact].max()
    np.testing.assert_allclose(distance[is_exact], -exact[is_exact], rtol=1e-5, atol=1e-6)


def test_first_order_margin_ranks_like_deepfool(digits_model):
    pool, model, candidates = digits_model
    x = pool.load(candidates)
    first = attacks.linear_margin(model, x).numpy()
    full, _ = attacks.deepfool(model, x)
    n = max(1, len(x) // 100)
    # the closest 1% by exact DeepFool is among the closest 5% by the first-order estimate
    assert _top(-full.numpy(), n) <= _top(-first, 5 * n)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_scores_do_not_depend_on_the_batch_size(digits_model, mode):
    pool, model, candidates = digits_model
    ids = candidates[:150]
    strategy = DFAL(mode=mode, shortlist=0.2, min_shortlist=0)
    runs = [strategy.score(model, pool, ids, ScoringContext(batch_size=b)) for b in (7, 64, 512)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, params", [("dfal", {"mode": "fast", "shortlist": 0.2, "min_shortlist": 0}),
                                          ("dfal", {"mode": "exact"}), ("fgsm-margin", {}), ("entropy", {}),
                                          ("coreset", {})])
def test_scores_do_not_depend_on_the_row_slice(digits_model, name, params):
    """On CPU network passes run on slices of each batch (speed, bounded memory); the slice size changes nothing."""
    pool, model, candidates = digits_model
    ids = candidates[:130]
    strategy = make_strategy(name, **params)
    runs = [strategy.score(model, pool, ids, ScoringContext(batch_size=100, rows=rows, labeled_ids=candidates[-50:]))
            for rows in (1, 9, None)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=1e-4, atol=1e-5)


def test_row_slices_cover_the_batch_in_order():
    x = torch.arange(10.0)[:, None]
    assert [len(s) for s in ScoringContext(rows=4).slices(x)] == [4, 4, 2]
    assert torch.equal(torch.cat(list(ScoringContext(rows=3).slices(x))), x)
    assert [len(s) for s in ScoringContext().slices(torch.zeros(200, 1))] == [64, 64, 64, 8]  # CPU default


def _linear_problem(num_classes: int):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    pool = ArrayPool(x, [str(c) for c in range(num_classes)])  # feature vectors: unbounded (no clip)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, num_classes)).eval()
    model.embed = lambda t: t  # type: ignore[attr-defined]
    return pool, model, torch.from_numpy(x)


def test_fast_mode_known_answer_on_a_linear_model():
    """Two classes: the distance to the boundary is |w.x + b| / ||w|| with w = w1 - w0, in both tiers."""
    pool, model, x = _linear_problem(2)
    w = (model[0].weight[1] - model[0].weight[0]).detach()
    b = float((model[0].bias[1] - model[0].bias[0]).detach())
    truth = ((x @ w + b).abs() / w.norm()).numpy()
    strategy = DFAL(mode="fast", shortlist=0.1, min_shortlist=0)
    distance, is_exact = strategy.rank_distances(model, pool, pool.ids, ScoringContext(batch_size=32))
    assert 0 < is_exact.sum() < len(is_exact)
    np.testing.assert_allclose(distance, truth, rtol=0.01, atol=2e-4)  # deepfool steps 1e-4 past the boundary
    np.testing.assert_allclose(attacks.linear_margin(model, x).numpy(), truth, rtol=0.01)
    sel = select(strategy, model, pool, pool.ids, 10, rng=np.random.default_rng(0))
    assert set(sel.item_ids.tolist()) == set(np.argsort(truth)[:10].tolist())


def test_fast_mode_matches_exact_on_a_multiclass_linear_model():
    pool, model, _ = _linear_problem(5)
    ctx = ScoringContext(batch_size=50)
    exact = DFAL(mode="exact").score(model, pool, pool.ids, ctx)
    fast = DFAL(mode="fast", shortlist=0.1, min_shortlist=0).score(model, pool, pool.ids, ctx)
    assert len(_top(fast, 10) & _top(exact, 10)) >= 9


def test_small_candidate_sets_are_scored_exactly(digits_model):
    pool, model, candidates = digits_model
    ids = candidates[:40]
    strategy = DFAL()  # default fast, but 40 < min_shortlist: every item gets full DeepFool
    assert strategy.shortlist_size(len(ids)) == len(ids)
    _, is_exact = strategy.rank_distances(model, pool, ids, ScoringContext())
    assert is_exact.all()


def test_shortlist_is_capped_by_what_select_will_take():
    strategy = DFAL()  # 5% of the candidates, at least 256, at most 5 per item taken
    assert strategy.shortlist_size(60_000) == 3_000  # a full ranking: the fraction
    assert strategy.shortlist_size(60_000, take=40) == 256  # 5 x 40 = 200, raised to the minimum
    assert strategy.shortlist_size(100_000, take=200) == 1_000
    assert strategy.shortlist_size(60_000, take=1_000) == 3_000  # the fraction is the smaller
    assert strategy.shortlist_size(100, take=5) == 100


def test_select_sends_only_per_pick_times_n_to_deepfool_and_keeps_exact_choices(digits_model, monkeypatch):
    pool, model, candidates = digits_model
    fast = DFAL(min_shortlist=0, shortlist=0.5, per_pick=5)
    sizes: list[int] = []
    real = DFAL._deepfool

    def spy(self, model, pool, ids, ctx, desc="deepfool"):
        sizes.append(len(ids))
        return real(self, model, pool, ids, ctx, desc)

    monkeypatch.setattr(DFAL, "_deepfool", spy)
    picked = select(fast, model, pool, candidates, 10, rng=np.random.default_rng(0))
    assert sizes == [50]  # 5 x 10, not half of the ~1,100 candidates
    exact = select(DFAL(mode="exact"), model, pool, candidates, 10, rng=np.random.default_rng(0))
    common = sorted(set(picked.item_ids.tolist()) & set(exact.item_ids.tolist()))
    assert len(common) >= 9
    # the chosen items carry their exact DeepFool score, not the first-order estimate
    score_of = lambda sel: dict(zip(sel.item_ids.tolist(), sel.scores.tolist()))  # noqa: E731
    np.testing.assert_allclose([score_of(picked)[i] for i in common], [score_of(exact)[i] for i in common],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError):
        make_strategy("dfal", per_pick=0)


def test_mode_is_a_parameter_and_validated():
    assert make_strategy("dfal").mode == "fast"
    assert "mode=exact" in repr(make_strategy("dfal", mode="exact"))
    with pytest.raises(ConfigError):
        make_strategy("dfal", mode="fastest")
    with pytest.raises(ConfigError):
        make_strategy("dfal", shortlist=0.0)


def test_folder_batches_prefetch_equals_load_and_reports_unreadable(tmp_path):
    """FolderPool streams with a one-batch read-ahead: same pixels, same order, same unreadable handling."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
    for i in range(23):
        Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(tmp_path / "ab"[i % 2] / f"{i:03d}.png")
    pool = load_dataset(f"folder:{tmp_path}").pool
    broken = pool.ids[5]
    pool.path_of(broken).write_bytes(pool.path_of(broken).read_bytes()[:40])  # decodes no more after the scan
    order = pool.ids[::-1]
    chunks = list(pool.batches(order, 4))
    assert [len(c) for c, _ in chunks] == [4] * 5 + [3]
    np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]), order)
    streamed = torch.cat([x for _, x in chunks])
    assert pool.unreadable == {int(broken)}
    np.testing.assert_array_equal(streamed.numpy(), pool.load(order).numpy())
    assert float(streamed[list(order).index(broken)].abs().sum()) == 0.0
