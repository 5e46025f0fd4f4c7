"""The robustness evaluation suite: accuracy under each attack at a sweep of epsilons, on a fixed test subset.

``evaluate_robustness(model, test_pool, cfg)`` measures, on the same
``cfg.subset`` test ids every time (drawn by ``cfg.seed``, sorted), the
accuracy w.r.t. the true labels of:

- ``clean``: no attack (key eps 0.0);
- ``fgsm`` / ``fgsm_true``: FGSM from the true label (Goodfellow et al. 2015);
  the two names are the same measurement (computed once), ``fgsm_true`` being
  the label-leaking column's name;
- ``fgsm_pred``: FGSM from the model's predicted label.  A model trained on
  true-label FGSM scores *higher* on ``fgsm_true`` than on clean inputs when
  it leaks labels (Kurakin et al. 2017); ``fgsm_pred`` shows it does not;
- ``bim``: the basic iterative method, ``cfg.steps`` steps, no random start
  (Kurakin et al. 2016);
- ``pgd``: L-inf PGD with a random start (Madry et al. 2018);
- ``pgd_l2``: PGD in the L2 ball of radius ``l2_radius(eps)`` (below);
- ``ll``: the iterative least-likely class attack, iter-LL (Kurakin et al.
  2016), ``cfg.steps`` steps toward ``argmin p(y|x)``;
- ``transfer``: black-box transfer (Papernot et al. 2017; Tramer et al. 2018):
  FGSM and PGD examples crafted on each surrogate from the true label,
  evaluated on the model.  ``transfer_fgsm`` / ``transfer_pgd`` are the worst
  case (lowest accuracy) over the surrogates, ``transfer`` the worst of the
  two.  Absent from the result when no surrogate is given.

Every attack's L-inf radius is an eps of the sweep; accuracies are keyed by
that eps for every attack (one x-axis), ``pgd_l2`` included, whose actual L2
radius is in its ``RobustnessRow.radius``.

L2 radius.  By default ``l2_radius(eps) = L2_PER_LINF_SQRT_D * eps * sqrt(D)``
(``D`` the number of input values): the L-inf and L2 threat models of Madry
et al. 2018 on MNIST, eps 0.3 and 2.0 on 28x28 images (the MNIST challenge's
L-inf eps, and the L2 radius their L2 evaluation and later MNIST L2 work
use), put in proportion (``2.0 / (0.3 * 28) = 0.238``): the same
root-mean-square change per input value at any image size.  On 8x8 digits
the sweep 0.05..0.3 becomes L2 radii 0.095..0.57; on MNIST 0.33..2.0.  (The
CIFAR-10 convention, L-inf 8/255 and L2 0.5, gives 0.29, the same order.)
``RobustnessConfig.l2_eps`` sets the radii explicitly instead.

Random starts come from generators seeded with ``cfg.seed``, one per
(attack, eps) and per surrogate, consumed in batch order: results do not
depend on which other attacks run, and PGD transferred from the model itself
is exactly white-box PGD.  Each attack is timed (seconds, its evaluation
forward included) so the cost per round can be reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from activeadv import attacks
from activeadv.data import Pool, stream
from activeadv.errors import ConfigError
from activeadv.networks import device_of, row_slices
from activeadv.records import RobustnessRow

ATTACKS = ("fgsm", "bim", "pgd", "pgd_l2", "ll", "fgsm_true", "fgsm_pred", "transfer")
L2_PER_LINF_SQRT_D = 2.0 / (0.3 * 28)  # Madry et al. 2018 MNIST: L-inf 0.3 <-> L2 2.0 on 28x28 = 784 values


def l2_radius(eps: float, input_shape: tuple[int, ...]) -> float:
    """The default L2 radius that goes with the L-inf ``eps`` for inputs of ``input_shape`` (module docstring)."""
    return L2_PER_LINF_SQRT_D * eps * math.sqrt(math.prod(input_shape))


def fixed_subset(ids: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` of ``ids`` drawn by ``seed``, sorted (all of them when there are no more): the same every round."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) <= size:
        return np.sort(ids)
    return np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))


@dataclass(frozen=True)
class RobustnessConfig:
    """What the suite measures: attacks (``ATTACKS``) at each eps of ``eps`` (L-inf, inputs in [0, 1])."""

    eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    attacks: tuple[str, ...] = ATTACKS
    subset: int = 1000  # test items attacked (the same ids every round)
    steps: int = 10  # iterations of bim, pgd, pgd_l2, ll and the transferred PGD
    l2_eps: tuple[float, ...] | None = None  # L2 radii, one per eps; None: l2_radius(eps, input_shape)
    seed: int = 0
    batch_size: int = 512  # items loaded at a time (the network sees row_slices of them)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", tuple(float(e) for e in self.eps))
        object.__setattr__(self, "attacks", tuple(self.attacks))
        if self.l2_eps is not None:
            object.__setattr__(self, "l2_eps", tuple(float(e) for e in self.l2_eps))
        if not self.eps or not all(math.isfinite(e) and e > 0 for e in self.eps):
            raise ConfigError(f"--eval-eps must be one or more numbers > 0, got {','.join(map(str, self.eps))}")
        if len(set(self.eps)) != len(self.eps) or len(set(self.attacks)) != len(self.attacks):
            raise ConfigError("--eval-eps and the attacks must not repeat")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise ConfigError(f"unknown attack '{unknown[0]}': use {', '.join(ATTACKS)}")
        if self.l2_eps is not None and (len(self.l2_eps) != len(self.eps)
                                        or not all(math.isfinite(e) and e > 0 for e in self.l2_eps)):
            raise ConfigError(f"--eval-l2-eps needs one radius > 0 per eps ({len(self.eps)}), got {self.l2_eps}")
        if self.subset < 1 or self.steps < 1 or self.batch_size < 1:
            raise ConfigError("the robustness subset, steps and batch size must be >= 1")

    def l2_radii(self, input_shape: tuple[int, ...]) -> tuple[float, ...]:
        """The L2 radius of ``pgd_l2`` for each eps."""
        return self.l2_eps if self.l2_eps is not None else tuple(l2_radius(e, input_shape) for e in self.eps)


@dataclass(frozen=True)
class RobustnessResult:
    """``accuracy[attack][eps]``, ``seconds[attack]`` (summed over eps), the flat ``rows`` and the ids attacked.

    ``seconds`` overlap where measurements are shared: ``fgsm_true`` repeats
    ``fgsm`` (one computation), ``transfer`` is ``transfer_fgsm`` plus
    ``transfer_pgd``.  ``total_seconds`` is the whole call's wall time
    (loading included): the cost per round.
    """

    accuracy: dict[str, dict[float, float]]
    seconds: dict[str, float]
    rows: tuple[RobustnessRow, ...]
    ids: np.ndarray = field(repr=False)
    total_seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(len(self.ids))


class _Clock:
    """Seconds per key; waits for the device so that CUDA kernels are counted where they run."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[tuple, float] = {}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, key: tuple, start: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + self.now() - start


def evaluate_robustness(model: nn.Module, test_pool: Pool, cfg: RobustnessConfig = RobustnessConfig(), *,
                        surrogates: Sequence[nn.Module] = (), device: str | None = None,
                        progress: bool = False) -> RobustnessResult:
    """Accuracy of ``model`` under each attack of ``cfg`` at each eps, on ``fixed_subset(test_pool.ids)``.

    The subset is streamed ``cfg.batch_size`` items at a time
    (``data.stream``); the network sees ``row_slices`` of each batch.
    ``surrogates``: models crafting the ``transfer`` examples (an
    independently seeded model, earlier rounds' checkpoints).  ``device``:
    where to run (``None``: the model's device); the model and surrogates
    are moved there, held in eval mode with frozen parameters, and their
    mode and flags restored afterwards.  Items found unreadable while
    loading are left out of every count.
    """
    if not test_pool.has_targets:
        raise ConfigError("robustness needs a test split with known labels")
    from activeadv.training import resolve_device  # training imports this module (TrainConfig's suite)

    dev = device_of(model) if device is None else resolve_device(device)
    model.to(dev)
    for surrogate in surrogates:
        surrogate.to(dev)
    wanted = set(cfg.attacks)
    if not surrogates:
        wanted.discard("transfer")
    known_bad = np.fromiter(test_pool.unreadable, dtype=np.int64)
    ids = fixed_subset(test_pool.ids[~np.isin(test_pool.ids, known_bad)], cfg.subset, cfg.seed)
    clip = test_pool.clip_range
    radii = cfg.l2_radii(test_pool.input_shape)
    clock = _Clock(dev)
    hits: dict[tuple, int] = {}
    generators: dict[tuple, torch.Generator] = {}

    def gen(*key) -> torch.Generator:
        if key not in generators:
            generators[key] = torch.Generator().manual_seed(cfg.seed)
        return generators[key]

    def run(key: tuple, y: torch.Tensor, craft, *args, **kwargs) -> None:
        """Craft with ``craft(*args, **kwargs)`` and count the model's correct answers, timed together."""
        t0 = clock.now()
        x_adv = craft(*args, **kwargs)
        with torch.inference_mode():
            hits[key] = hits.get(key, 0) + int((model(x_adv).argmax(1) == y).sum())
        clock.add(key, t0)

    n = 0
    start = time.perf_counter()
    with ExitStack() as stack, torch.enable_grad():
        for net in (model, *surrogates):
            stack.enter_context(attacks.eval_mode(net))
        for chunk, batch in stream(test_pool, ids, cfg.batch_size, device=dev, desc="robustness", progress=progress):
            labels = torch.from_numpy(test_pool.targets(chunk)).to(dev)
            if test_pool.unreadable:
                keep = torch.from_numpy(~np.isin(chunk, np.fromiter(test_pool.unreadable, dtype=np.int64))).to(dev)
                batch, labels = batch[keep], labels[keep]
            n += len(labels)
            for x, y in zip(row_slices(batch), row_slices(labels)):
                t0 = clock.now()
                with torch.no_grad():  # not inference_mode: ``pred`` is fgsm_pred's label, saved for backward
                    pred = model(x).argmax(1)
                hits[("clean", 0.0)] = hits.get(("clean", 0.0), 0) + int((pred == y).sum())
                clock.add(("clean", 0.0), t0)
                for eps, radius in zip(cfg.eps, radii):
                    if wanted & {"fgsm", "fgsm_true"}:
                        run(("fgsm", eps), y, attacks.fgsm, model, x, y, eps, clip=clip)
                    if "fgsm_pred" in wanted:
                        run(("fgsm_pred", eps), y, attacks.fgsm, model, x, pred, eps, clip=clip)
                    if "bim" in wanted:
                        run(("bim", eps), y, attacks.pgd, model, x, y, eps, steps=cfg.steps, random_start=False,
                            clip=clip)
                    if "pgd" in wanted:
                        run(("pgd", eps), y, attacks.pgd, model, x, y, eps, steps=cfg.steps, clip=clip,
                            generator=gen("pgd", eps))
                    if "pgd_l2" in wanted:
                        run(("pgd_l2", eps), y, attacks.pgd, model, x, y, radius, steps=cfg.steps, clip=clip,
                            generator=gen("pgd_l2", eps), norm="2")
                    if "ll" in wanted:
                        run(("ll", eps), y, attacks.iterative_least_likely, model, x, eps, steps=cfg.steps, clip=clip)
                    if "transfer" in wanted:
                        for j, surrogate in enumerate(surrogates):
                            run(("transfer_fgsm", eps, j), y, attacks.fgsm, surrogate, x, y, eps, clip=clip)
                            run(("transfer_pgd", eps, j), y, attacks.pgd, surrogate, x, y, eps, steps=cfg.steps,
                                clip=clip, generator=gen("transfer_pgd", eps, j))
    total = time.perf_counter() - start
    return _collect(cfg, wanted, hits, clock.seconds, n, ids, radii, len(surrogates), total)


def _collect(cfg: RobustnessConfig, wanted: set[str], hits: dict[tuple, int], seconds: dict[tuple, float], n: int,
             ids: np.ndarray, radii: tuple[float, ...], n_surrogates: int, total: float) -> RobustnessResult:
    """The counts turned into ``RobustnessResult`` (in ``cfg.attacks`` order, ``clean`` first)."""
    rows = [RobustnessRow("clean", 0.0, hits.get(("clean", 0.0), 0) / max(n, 1), n, "", 0.0,
                          seconds.get(("clean", 0.0), 0.0))]
    for attack in cfg.attacks:
        if attack not in wanted:
            continue
        for eps, radius in zip(cfg.eps, radii):
            if attack == "transfer":
                worst = {}
                for method in ("transfer_fgsm", "transfer_pgd"):
                    keys = [(method, eps, j) for j in range(n_surrogates)]
                    worst[method] = (min(hits.get(k, 0) for k in keys) / max(n, 1),
                                     sum(seconds.get(k, 0.0) for k in keys))
                    rows.append(RobustnessRow(method, eps, worst[method][0], n, "inf", eps, worst[method][1]))
                rows.append(RobustnessRow("transfer", eps, min(a for a, _ in worst.values()), n, "inf", eps,
                                          sum(s for _, s in worst.values())))
                continue
            key = ("fgsm" if attack == "fgsm_true" else attack, eps)
            norm, r = ("2", radius) if attack == "pgd_l2" else ("inf", eps)
            rows.append(RobustnessRow(attack, eps, hits.get(key, 0) / max(n, 1), n, norm, r, seconds.get(key, 0.0)))
    accuracy: dict[str, dict[float, float]] = {}
    per_attack: dict[str, float] = {}
    for row in rows:
        accuracy.setdefault(row.attack, {})[row.eps] = row.accuracy
        per_attack[row.attack] = per_attack.get(row.attack, 0.0) + row.seconds
    return RobustnessResult(accuracy=accuracy, seconds=per_attack, rows=tuple(rows), ids=ids, total_seconds=total)
