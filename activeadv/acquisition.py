"""Which unlabeled items to ask about next.

A strategy *scores* the candidates it is given (higher = ask first) and may
*choose* the batch from the ranked candidates (``Strategy.choose``: core-set's
k-center greedy, the ``+kcenter`` / ``+kmeans++`` spread; by default nothing,
and ``select`` takes the top n).  ``select`` owns everything else: excluding
labeled and duplicate ids, random subsampling of the candidates, the ranking
with seeded random tie-breaking, and the model's prediction for each chosen
item (the pre-annotation sent to annotators).

A strategy is stored (``rounds.strategy`` / ``rounds.strategy_params``) as its
registry ``name`` and ``params()``, a JSON-safe dict; ``make_strategy(name,
**params)`` rebuilds it.  ``repr`` (``dfal(mode=fast, ...)``) is for display.

Strategies:
  random            uniform (all scores tie; ``select`` breaks ties at random)
  least-confidence  1 - max softmax probability
  margin            -(p1 - p2), the gap between the two most probable classes
  entropy           Shannon entropy of the softmax
  coreset           k-center greedy on penultimate-layer embeddings (Sener & Savarese 2018)
  dfal              -DeepFool L2 distance to the decision boundary (Ducoffe & Precioso 2018); mode=fast
                    (default) runs DeepFool only on a first-order shortlist, mode=exact on every candidate
  fgsm-margin       -smallest FGSM epsilon that flips the prediction (cheap adversarial margin)

Batch diversity, for any strategy but coreset (``NAME+kcenter``, ``NAME+kmeans++``,
or ``make_strategy(name, diversity=..., diversity_factor=k)``; stored as the
parameters ``diversity`` and ``diversity_factor``, not in the name): the ``k x n``
best-scored candidates form a shortlist, and the n picks are spread over it in
the model's penultimate embedding: greedy k-center from the best-scored item,
or k-means++ seeding (D^2 sampling, as BADGE does; Ash et al. 2020).  Top-n of
a margin score tends to ask n near-copies of the same confusion; the spread
batch asks about n different ones.  It is the base class's ``choose``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from activeadv import attacks
from activeadv.data import Pool, chunks, stream
from activeadv.errors import ConfigError
from activeadv.networks import device_of, row_slices
from activeadv.records import Selection, strategy_text
from activeadv.training import predict_proba


@dataclass
class ScoringContext:
    """What a strategy may need besides the model and the candidates."""

    labeled_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    batch_size: int = 256  # items streamed from the pool at a time
    progress: bool = False
    n: int | None = None  # how many items the caller will take (``select``); None: a full ranking is wanted
    rows: int | None = None  # rows per network pass (None: networks.CPU_ROWS on CPU, the whole batch on GPU)
    # scratch space of one ``select``: what a strategy's score() computed and its choose() reuses (embeddings)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def slices(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """``x`` cut into the slices each network pass runs on (``networks.row_slices``)."""
        return row_slices(x, self.rows)


DIVERSITY = ("none", "kcenter", "kmeans++")


class Strategy:
    """Base class: ``score(model, pool, ids, ctx) -> (len(ids),) float64``, higher = ask first.

    ``choose`` may pick the batch from the ranked candidates; the default
    takes the top n, or, with ``diversity`` / ``diversity_factor`` set (by
    ``make_strategy``), spreads the n picks over the ``factor x n``
    best-scored candidates.  ``name`` and ``params()`` are what a round stores.
    """

    name: ClassVar[str] = ""
    diverse: ClassVar[bool] = False  # ``choose`` already spreads the batch: ``+kcenter`` / ``+kmeans++`` do not apply
    diversity: str = "none"
    diversity_factor: int = 10

    def own_params(self) -> dict[str, object]:
        """The strategy's own settings (subclasses), without batch diversity."""
        return {}

    def params(self) -> dict[str, object]:
        """Every setting, JSON-safe: ``make_strategy(self.name, **self.params())`` rebuilds this strategy.

        ``own_params()`` plus ``diversity`` and ``diversity_factor`` when
        batch diversity is on; numpy scalars become plain numbers.
        """
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in self.own_params().items()}
        if self.diversity != "none":
            params.update(diversity=self.diversity, diversity_factor=int(self.diversity_factor))
        return params

    @property
    def label(self) -> str:
        """Short name: ``dfal`` or ``dfal+kcenter``."""
        return self.name if self.diversity == "none" else f"{self.name}+{self.diversity}"

    def __repr__(self) -> str:
        return strategy_text(self.name, self.params())

    def score(self, model: nn.Module, pool: Pool, ids: np.ndarray, ctx: ScoringContext) -> np.ndarray:
        raise NotImplementedError

    def choose(self, model: nn.Module, pool: Pool, ids: np.ndarray, scores: np.ndarray, ranked: np.ndarray,
               n: int, ctx: ScoringContext, rng: np.random.Generator) -> np.ndarray | None:
        """Positions (into ``ids``) of the at most ``n`` items to ask, in asking order; None: the top n.

        ``scores``: ``score``'s result for ``ids``; ``ranked``: every position,
        best score first, equal scores in a seeded random order.  The
        default spreads the batch when ``diversity`` is on (``_spread``) and
        otherwise leaves the choice to ``select`` (the first n of ``ranked``).
        """
        if self.diversity == "none":
            return None
        return _spread(self, model, pool, ids, scores, ranked, n, rng, ctx)


class RandomStrategy(Strategy):
    name = "random"

    def score(self, model, pool, ids, ctx):
        return np.zeros(len(ids))


class _ProbabilityStrategy(Strategy):
    def score(self, model, pool, ids, ctx):
        probs = predict_proba(model, pool, ids, batch_size=ctx.batch_size, progress=ctx.progress, rows=ctx.rows)
        return self.from_probabilities(probs)

    @staticmethod
    def from_probabilities(probs: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class LeastConfidence(_ProbabilityStrategy):
    name = "least-confidence"

    @staticmethod
    def from_probabilities(probs):
        return 1.0 - probs.max(1)


class Margin(_ProbabilityStrategy):
    name = "margin"

    @staticmethod
    def from_probabilities(probs):
        top2 = np.sort(probs, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])


class Entropy(_ProbabilityStrategy):
    name = "entropy"

    @staticmethod
    def from_probabilities(probs):
        return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)


def per_item(model: nn.Module, pool: Pool, ids: np.ndarray, ctx: ScoringContext,
             fn: Callable[[torch.Tensor], torch.Tensor], desc: str) -> np.ndarray:
    """``fn`` (a (rows,) value per input row) over ``ids``, streamed, as one (N,) float64 array.

    ``fn`` runs on ``ctx.slices`` of each batch.  Values go
    straight into one preallocated array: keeping a small array per slice
    until the end interleaves long-lived allocations with each slice's
    transient autograd buffers, and glibc's heap then grew with the pool
    (peak RSS 1 GB instead of under 500 MB ranking a 200,000-image folder).
    """
    out = np.empty(len(ids), dtype=np.float64)
    row = 0
    for _, x in stream(pool, ids, ctx.batch_size, device=device_of(model), desc=desc, progress=ctx.progress):
        for rows in ctx.slices(x):
            out[row : row + len(rows)] = fn(rows).detach().cpu().numpy()
            row += len(rows)
    return out


def embeddings(model: nn.Module, pool: Pool, ids: np.ndarray, ctx: ScoringContext) -> np.ndarray:
    """Penultimate-layer activations ``model.embed`` (N, D) float32, streamed."""
    out: np.ndarray | None = None  # (N, D), allocated once D is known
    row = 0
    with attacks.eval_mode(model), torch.inference_mode():
        for _, x in stream(pool, ids, ctx.batch_size, device=device_of(model), desc="embed", progress=ctx.progress):
            for part in ctx.slices(x):
                emb = model.embed(part).float().cpu().numpy()  # type: ignore[operator]  # a network's own method
                if out is None:
                    out = np.empty((len(ids), emb.shape[1]), dtype=np.float32)
                out[row : row + len(part)] = emb
                row += len(part)
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


class CoreSet(Strategy):
    """Core-set (Sener & Savarese 2018): score = distance to the nearest labeled embedding; ``choose`` then
    picks the batch by k-center greedy, each pick covering the candidates nearest to it."""

    name = "coreset"
    diverse = True

    def score(self, model, pool, ids, ctx):
        candidates = embeddings(model, pool, ids, ctx)
        ctx.memo["coreset"] = (model, ids, candidates)  # for choose(): the pass is not run twice
        if len(ctx.labeled_ids) == 0:
            return np.zeros(len(ids))
        labeled = embeddings(model, pool, ctx.labeled_ids, ctx)
        return _min_distances(candidates, labeled)

    def choose(self, model, pool, ids, scores, ranked, n, ctx, rng):
        memo = ctx.memo.get("coreset")
        if memo is not None and memo[0] is model and np.array_equal(memo[1], ids):
            emb = memo[2]
        else:  # score() ran elsewhere (another context)
            emb = embeddings(model, pool, ids, ctx)
        # the distance to what is covered: the labeled set (the scores), or nothing yet
        covered = np.asarray(scores, dtype=np.float64) if len(ctx.labeled_ids) else np.full(len(ids), np.inf)
        return np.array(_kcenter_greedy(emb, covered, n, ranked), dtype=np.int64)


def _min_distances(points: np.ndarray, centers: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.empty(len(points))
    c2 = (centers**2).sum(1)
    row = 0
    for p in chunks(points, chunk):
        d2 = (p**2).sum(1)[:, None] - 2 * p @ centers.T + c2[None]
        out[row : row + len(p)] = np.sqrt(np.clip(d2.min(1), 0, None))
        row += len(p)
    return out


class DFAL(Strategy):
    """DeepFool distance to the boundary, smallest first (DFAL, Ducoffe & Precioso 2018).

    ``mode="exact"`` runs batched DeepFool (``top_k`` classes, ``steps``
    iterations, ``overshoot``) on every candidate: about 45 forward+backward
    passes per image on the MNIST reference CNN.

    ``mode="fast"`` (default) ranks at the cost of about two: a first pass
    computes the first-order distance of every candidate (DeepFool's first
    step towards the runner-up class, ``attacks.linear_margin``: one forward
    and one backward), then exact DeepFool runs on the ``shortlist`` fraction
    of candidates closest by that estimate (at least ``min_shortlist``
    items).  When the caller says how many items it will take (``ctx.n``,
    set by ``select``), the shortlist is also capped at ``per_pick`` times
    that: only the top n must be exact, and on MNIST exact DeepFool's top n
    was inside the first-order top n itself for n = 10 to 200 of 20,000
    (docs/benchmarks.md), so 5x is a wide margin that keeps a round on a
    large pool from spending most of its time on the shortlist.
    Shortlisted items get their exact DeepFool distance and rank first; the
    others follow, ordered by their first-order distance.  On MNIST the top
    1% agrees with exact DeepFool's top 1% (overlap 1.00); ``activeadv bench
    scoring`` measures it for a model and pool.  Both passes stream the
    pool in batches.
    """

    name = "dfal"
    MODES = ("fast", "exact")

    def __init__(self, top_k: int = 10, steps: int = 50, overshoot: float = 0.02, mode: str = "fast",
                 shortlist: float = 0.05, min_shortlist: int = 256, per_pick: int = 5) -> None:
        if mode not in self.MODES:
            raise ConfigError(f"unknown dfal mode '{mode}': use fast or exact")
        if not 0.0 < shortlist <= 1.0:
            raise ConfigError(f"dfal shortlist must be a fraction in (0, 1], got {shortlist}")
        if min_shortlist < 0:
            raise ConfigError("dfal min_shortlist must be >= 0")
        if per_pick < 1:
            raise ConfigError("dfal per_pick must be >= 1")
        self.top_k, self.steps, self.overshoot = top_k, steps, overshoot
        self.mode, self.shortlist, self.min_shortlist, self.per_pick = mode, shortlist, min_shortlist, per_pick

    def own_params(self):
        params: dict[str, object] = {"mode": self.mode, "top_k": self.top_k, "steps": self.steps,
                                     "overshoot": self.overshoot}
        if self.mode == "fast":
            params.update(shortlist=self.shortlist, min_shortlist=self.min_shortlist, per_pick=self.per_pick)
        return params

    def _deepfool(self, model, pool, ids, ctx, desc="deepfool") -> np.ndarray:
        def distance(rows: torch.Tensor) -> torch.Tensor:
            return attacks.deepfool(model, rows, steps=self.steps, overshoot=self.overshoot, top_k=self.top_k)[0]

        return per_item(model, pool, ids, ctx, distance, desc)

    def shortlist_size(self, count: int, take: int | None = None) -> int:
        """How many of ``count`` candidates the fast mode sends to exact DeepFool when ``take`` will be kept."""
        size = math.ceil(self.shortlist * count)
        if take is not None:
            size = min(size, self.per_pick * take)
        return min(count, max(size, self.min_shortlist))

    def rank_distances(self, model: nn.Module, pool: Pool, ids: np.ndarray,
                       ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray]:
        """``(distance, exact)``: (N,) float64 distances and a bool mask of those computed by full DeepFool.

        Exact mode: all exact.  Fast mode: exact for the shortlist, the
        first-order estimate (``attacks.linear_margin``) for the rest.
        """
        ids = np.asarray(ids, dtype=np.int64)
        size = self.shortlist_size(len(ids), ctx.n)
        if self.mode == "exact" or size >= len(ids):
            return self._deepfool(model, pool, ids, ctx), np.ones(len(ids), dtype=bool)
        distance = per_item(model, pool, ids, ctx, lambda rows: attacks.linear_margin(model, rows, top_k=1),
                            "first-order margin")
        # the closest by the estimate; stable, so equal estimates keep candidate order
        short = np.sort(np.argsort(distance, kind="stable")[:size])
        distance[short] = self._deepfool(model, pool, ids[short], ctx, "deepfool (shortlist)")
        exact = np.zeros(len(ids), dtype=bool)
        exact[short] = True
        return distance, exact

    def score(self, model, pool, ids, ctx):
        distance, exact = self.rank_distances(model, pool, ids, ctx)
        if exact.all():
            return -distance
        # every shortlisted (exact) item ranks before every estimated one
        offset = distance[exact].max() if exact.any() else 0.0
        return np.where(exact, -distance, -(offset + distance))

    def adversarial_examples(self, model: nn.Module, pool: Pool, ids: np.ndarray) -> torch.Tensor:
        """DeepFool points of ``ids`` (DFAL adds them to the training set with the annotator's label)."""
        device = next(model.parameters()).device
        _, x_adv = attacks.deepfool(model, pool.load(ids).to(device), steps=self.steps,
                                    overshoot=self.overshoot, top_k=self.top_k, clip=pool.clip_range)
        return x_adv.cpu()


class FGSMMargin(Strategy):
    """Smallest FGSM epsilon that flips the prediction, smallest first."""

    name = "fgsm-margin"

    def __init__(self, max_epsilon: float = 0.5, grid: int = 12, bisection_steps: int = 6) -> None:
        self.max_epsilon, self.grid, self.bisection_steps = max_epsilon, grid, bisection_steps

    def own_params(self):
        return {"max_epsilon": self.max_epsilon, "grid": self.grid, "bisection_steps": self.bisection_steps}

    def score(self, model, pool, ids, ctx):
        def flip_epsilon(rows: torch.Tensor) -> torch.Tensor:
            return attacks.fgsm_flip_epsilon(model, rows, max_epsilon=self.max_epsilon, grid=self.grid,
                                             bisection_steps=self.bisection_steps, clip=pool.clip_range)

        return -per_item(model, pool, ids, ctx, flip_epsilon, "fgsm-margin")


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (RandomStrategy, LeastConfidence, Margin, Entropy, CoreSet, DFAL, FGSMMargin)
}


def make_strategy(name: str, **params: object) -> Strategy:
    """A strategy by its registry name and ``params()``: what a round stores, rebuilt.

    ``name`` may also be the command line's ``NAME+DIVERSITY`` (``dfal+kcenter``);
    ``diversity`` and ``diversity_factor`` may come as parameters (as
    ``Strategy.params()`` gives them).  Unknown names and bad parameters raise
    ``ConfigError`` listing the choices.
    """
    base, _, suffix = name.partition("+")
    diversity = str(params.pop("diversity", suffix or "none"))
    factor = params.pop("diversity_factor", 10)
    try:
        cls = STRATEGIES[base]
    except KeyError:
        choices = ", ".join(STRATEGIES)
        raise ConfigError(f"unknown strategy '{name}': use {choices} (optionally +kcenter or +kmeans++)") from None
    if diversity not in DIVERSITY:
        raise ConfigError(f"unknown batch diversity '{diversity}': use {', '.join(DIVERSITY)}")
    if diversity != "none" and cls.diverse:
        raise ConfigError(f"'{base}' already picks a diverse batch; '+{diversity}' does not apply to it")
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ConfigError(f"diversity factor must be an integer >= 1, got {factor!r}")
    try:
        strategy = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for strategy '{base}': {exc}") from None
    strategy.diversity, strategy.diversity_factor = diversity, factor
    return strategy



def _kmeanspp(emb: np.ndarray, n: int, order: np.ndarray, rng: np.random.Generator) -> list[int]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) as BADGE uses it: the first of ``order``,
    then each next point drawn with probability proportional to its squared distance to those chosen."""
    chosen = [int(order[0])]
    dist2 = _min_distances(emb, emb[chosen[0] : chosen[0] + 1]) ** 2
    while len(chosen) < min(n, len(emb)):
        dist2[chosen] = 0.0
        total = dist2.sum()
        if total <= 0:  # every remaining point coincides with a chosen one: fall back to the order
            best = next(int(i) for i in order if int(i) not in chosen)
        else:
            best = int(rng.choice(len(emb), p=dist2 / total))
        chosen.append(best)
        dist2 = np.minimum(dist2, _min_distances(emb, emb[best : best + 1]) ** 2)
    return chosen


def _spread(strategy: Strategy, model: nn.Module, pool: Pool, pool_ids: np.ndarray, scores: np.ndarray,
            ranked: np.ndarray, n: int, rng: np.random.Generator, ctx: ScoringContext) -> np.ndarray:
    """Positions of n picks spread over the ``diversity_factor x n`` best (``ranked``: positions best first)."""
    short = ranked[: strategy.diversity_factor * n]
    if len(short) <= n:
        return short
    emb = embeddings(model, pool, pool_ids[short], ctx)
    best_first = np.arange(len(short))  # the shortlist is already in score order
    if strategy.diversity == "kcenter":
        picks = _kcenter_greedy(emb, np.full(len(short), np.inf), n, best_first)
    else:
        picks = _kmeanspp(emb, n, best_first, rng)
    chosen = short[np.array(picks, dtype=np.int64)]
    return chosen[np.argsort(-scores[chosen], kind="stable")]  # asked best first, as top-n is


def _kcenter_greedy(candidate_emb: np.ndarray, covered: np.ndarray, n: int, order: np.ndarray) -> list[int]:
    """Positions (into ``candidate_emb``) chosen greedily to cover the embedding space.

    ``covered``: each candidate's distance to what is already covered (the
    labeled set; ``inf`` for nothing: the first pick is then the first of
    ``order``).  Each pick is the candidate farthest from everything covered
    or picked; ties go to the one first in ``order``.
    """
    dist = np.array(covered, dtype=np.float64)
    chosen: list[int] = []
    for _ in range(min(n, len(candidate_emb))):
        best = int(order[np.argmax(dist[order])])
        chosen.append(best)
        dist = np.minimum(dist, _min_distances(candidate_emb, candidate_emb[best : best + 1]))
        dist[best] = -np.inf
    return chosen


class Ranker(Protocol):
    """Where a selection's scoring runs: ``rank_local`` here, ``distributed.RayRanker`` on a Ray cluster.

    Given the candidate ids (sorted) and the seeded tie-break ``order``,
    returns ``(ids, scores, ranked)``: the candidates it kept (all of them,
    or only the best ``ctx.n`` when the pool is too large to hold scores for),
    their scores, and positions into those ids best first, equal scores in
    ``order``'s order.  ``select`` then lets the strategy choose from them.
    """

    def __call__(self, strategy: Strategy, model: nn.Module, pool: Pool, pool_ids: np.ndarray, order: np.ndarray,
                 ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def rank_local(strategy: Strategy, model: nn.Module, pool: Pool, pool_ids: np.ndarray, order: np.ndarray,
               ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score every candidate in this process; keep them all (the default ``Ranker``)."""
    all_scores = np.asarray(strategy.score(model, pool, pool_ids, ctx), dtype=np.float64)
    if all_scores.shape != (len(pool_ids),):
        raise RuntimeError(f"{strategy!r} returned {all_scores.shape} scores for {len(pool_ids)} items")
    # stable sort on the shuffled order: equal scores come out in random (seeded) order
    return pool_ids, all_scores, order[np.argsort(-all_scores[order], kind="stable")]


def select(strategy: Strategy, model: nn.Module, pool: Pool, candidates: np.ndarray, n: int, *,
           rng: np.random.Generator, labeled_ids: np.ndarray | None = None, subsample: int | None = None,
           batch_size: int = 256, progress: bool = False, rows: int | None = None,
           ranker: Ranker | None = None) -> Selection:
    """Choose ``n`` items among ``candidates`` (unlabeled only, no duplicates), best first.

    ``subsample`` scores only a random subset of that size (DFAL's protocol
    for large pools).  Ties are broken by a random order drawn from ``rng``,
    so a run is deterministic given its seed.  The strategy scores the
    candidates, then its ``choose`` picks the batch from the ranking (core-set:
    k-center greedy; ``diversity`` set: n picks spread over the
    ``diversity_factor x n`` best, still best first); by default the top n.
    ``ranker`` says where the scoring runs (``rank_local``: here).
    """
    labeled = np.unique(np.asarray(labeled_ids if labeled_ids is not None else [], dtype=np.int64))
    pool_ids = np.unique(np.asarray(candidates, dtype=np.int64))
    pool_ids = pool_ids[~np.isin(pool_ids, labeled)]
    if pool.unreadable:
        pool_ids = pool_ids[~np.isin(pool_ids, np.fromiter(pool.unreadable, dtype=np.int64))]
    if n < 0:
        raise ConfigError("query size must be >= 0")
    if subsample is not None and subsample < len(pool_ids):
        pool_ids = np.sort(rng.choice(pool_ids, size=max(subsample, n), replace=False))
    order = rng.permutation(len(pool_ids))
    take = n if strategy.diversity == "none" else n * strategy.diversity_factor  # what must be ranked well
    ctx = ScoringContext(labeled_ids=labeled, batch_size=batch_size, progress=progress, rows=rows, n=take)
    if len(pool_ids) == 0 or n == 0:
        empty = np.empty(0, dtype=np.int64)
        return Selection(empty, np.empty(0), repr(strategy), empty, np.empty(0))
    pool_ids, all_scores, ranked = (ranker or rank_local)(strategy, model, pool, pool_ids, order, ctx)
    picks = strategy.choose(model, pool, pool_ids, all_scores, ranked, n, ctx, rng)
    if picks is None:
        picks = ranked[:n]
    picks = np.asarray(picks, dtype=np.int64)
    if len(picks) > n or len(np.unique(picks)) != len(picks) or (len(picks) and (
            picks.min() < 0 or picks.max() >= len(pool_ids))):
        raise RuntimeError(f"{strategy!r} chose {len(picks)} positions, not at most {n} distinct candidates")
    ctx.memo.clear()
    chosen, scores = pool_ids[picks], all_scores[picks]
    probs = predict_proba(model, pool, chosen, batch_size=batch_size, rows=rows)
    return Selection(item_ids=chosen, scores=scores, strategy=repr(strategy),
                     predicted=probs.argmax(1).astype(np.int64), confidence=probs.max(1))
