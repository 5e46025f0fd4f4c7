"""Training with FGSM adversarial regularization, prediction and evaluation.

One ``train_step`` holds the whole objective (Goodfellow et al. 2015, eq. 2)::

    loss = alpha * CE(x, y) + (1 - alpha) * CE(x_adv, y)

where ``x_adv`` is crafted by FGSM (or BIM/PGD with ``adv_steps`` iterations)
from the model's *predicted* label by default, which avoids label leaking
(Kurakin et al. 2016), or from the true label with ``adv_target="true"``.
``adv="ll"`` crafts it with the iterative least-likely class attack instead
(iter-LL, ``adv_steps`` steps toward ``argmin p(y|x)``; no label used), as
Kurakin et al. (2017) trained at scale.  ``adv="none"`` is the plain-training
ablation.

Ensemble adversarial training (Tramer et al. 2018) with ``adv_ensemble = K``:
the adversarial term's source alternates batch by batch, round robin, between
the model itself (its own ``adv`` examples) and up to K *static* models
(``train(static_models=...)``, e.g. earlier rounds' checkpoints): on their
turn ``x_adv`` is FGSM crafted on the static model and transferred.  Static
models are frozen (eval mode, no parameter gradients, never updated); only
their gradient w.r.t. the input is used.

The same step adds a term on *unlabeled* pool items when ``unlabeled`` is set
(the pool is 99% of the data a labeling project has):

    loss += unlabeled_weight * R(x_u)

``vat``: virtual adversarial training (Miyato et al., TPAMI 2018),
``R = KL(p(x_u) || p(x_u + r_adv))`` with ``r_adv`` from one power iteration
(``attacks.virtual_adversarial_perturbation``), plus the prediction entropy
on ``x_u`` with ``entmin`` (VAT+EntMin in the paper).
``pseudo-fgsm``: eq. 2's adversarial term on the confident unlabeled items,
with the model's prediction as the label (``pseudo_threshold``).

Unlabeled batches are drawn at random from the ids the caller passes,
``unlabeled_batch_size`` at a time, loaded per step (a folder pool is never
held in memory).  By default every round retrains from scratch, so results
depend only on the labeled set and the seed; ``init_state`` continues from
a previous round's weights (``warm_start``).  The model a run returns holds
the moving average of its weights over the steps (``ema``, ``WeightAverage``),
not the last step's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activeadv import attacks
from activeadv.data import Pool, canonical, stream
from activeadv.errors import ConfigError
from activeadv.networks import Ensemble, build_network, device_of, mode_free, row_slices
from activeadv.progress import bar as progress_bar
from activeadv.records import EvalMetrics
from activeadv.robustness import ATTACKS, RobustnessConfig

log = logging.getLogger(__name__)

ADV_METHODS = ("none", "fgsm", "bim", "pgd", "ll")
ADV_TARGETS = ("predicted", "true")
UNLABELED_METHODS = ("none", "vat", "pseudo-fgsm")
LR_SCHEDULES = ("constant", "cosine")
VAT_EPS_PER_DIM = 2.0 / 28  # VAT's default radius per sqrt(input value): 2.0 on 28x28 MNIST
# test items the per-round robustness suite attacks (the same ids every round); 0: off by default, because on
# digits the whole suite (4 eps, 10 steps, 500 items) cost more than the round's training (docs/robustness.md)
EVAL_SUBSET = 0
# options whose default is not what the versions before them did: a stored setting without the key (a project
# created, or a simulate log written, by such a version) ran with this value, not today's default
PREDATING = {"ema": 0.0}
# the final model's training (``activeadv final-model``, ``simulate --final-model``): once labeling is done, one long
# run on the chosen labels.  Measured on MNIST (docs/results.md, "The final model"): VAT on the pool with 256 items
# a step, shifted images and averaging at 0.999 for 3,000 steps take dfal's 300 labels from the rounds' 97.8% to
# 98.9-99.0%; 8,000-12,000 steps were worse and erratic on chosen labels
FINAL_RECIPE: dict[str, Any] = {"unlabeled": "vat", "unlabeled_min_steps": 3000, "unlabeled_batch_size": 256,
                                "augment": True, "ema": 0.999}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{name}': {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but CUDA is not available here")
    return device


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a trained model, besides the data (stored with each run)."""

    epochs: int = 50
    min_steps: int = 300  # tiny labeled sets still get enough updates
    max_steps: int = 3000  # large labeled sets (a full-pool reference) stay affordable
    batch_size: int = 64
    lr: float = 1e-3
    # "cosine": the learning rate decays from lr to 0 over the run's steps (half a cosine); "constant": no decay
    lr_schedule: str = "constant"
    # weight averaging: the returned model holds an exponential moving average of the iterates with this decay
    # (Polyak averaging; 0: the last iterate).  Why: with a constant rate and few labels the last iterate is one
    # noisy sample around the minimum, and VAT's round-to-round dips on chosen labels came from that noise
    # (MNIST, 3 seeds: docs/results.md "Weight averaging"); neutral with the default training, so on for all
    ema: float = 0.99
    weight_decay: float = 1e-4
    adv: str = "fgsm"
    epsilon: float = 0.1
    alpha: float = 0.5
    adv_steps: int = 5
    adv_target: str = "predicted"
    # ensemble adversarial training: alternate the own adversarial examples with FGSM ones from K static models
    adv_ensemble: int = 0
    arch: str = "auto"
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    eval_adv_max: int = 1000  # adversarial accuracy on a fixed subset of the test split
    # learning from the unlabeled pool (module docstring)
    unlabeled: str = "none"  # opt-in: measured on MNIST, docs/results.md ("Learning from the unlabeled pool")
    unlabeled_weight: float = 1.0
    unlabeled_batch_size: int = 64
    unlabeled_min_steps: int = 500  # the unlabeled term needs more updates than a few labels alone
    # the unlabeled term's weight rises over this share of the steps (Laine & Aila 2017's exp(-5(1-t)^2)); 0: off
    unlabeled_rampup: float = 0.0
    vat_epsilon: float | None = None  # L2 radius of r_adv; None: VAT_EPS_PER_DIM * sqrt(input size)
    vat_xi: float = 1e-6
    entmin: bool = False
    pseudo_threshold: float = 0.95
    # image augmentation of the labeled batch: random shifts of up to ``augment_shift`` pixels
    augment: bool = True  # on by default: the cheapest measured gain (docs/results.md); never on feature vectors
    augment_shift: int | None = None  # None: 1/14 of the image side, rounded down (2 px on 28x28, none on 8x8)
    # labeled batches drawn class-balanced (each class equally often, with replacement) instead of a permutation:
    # actively chosen label sets are skewed toward the classes the model confuses
    balance: bool = False
    # continue from the previous round's weights (``train(init_state=...)``) for this share of the steps
    warm_start: bool = False
    warm_fraction: float = 0.5
    # the robustness suite run after each round's evaluation (``robustness_config``; robustness.py); 0 items: off
    eval_eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    eval_attacks: tuple[str, ...] = ATTACKS
    eval_subset: int = EVAL_SUBSET
    eval_steps: int = 10
    eval_l2_eps: tuple[float, ...] | None = None  # L2 radii of pgd_l2, one per eps; None: in proportion to eps
    eval_surrogates: int = 1  # earlier rounds' checkpoints whose examples are transferred (black box)

    def __post_init__(self) -> None:
        for name in ("eval_eps", "eval_attacks", "eval_l2_eps"):  # lists when read back from JSON
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.adv not in ADV_METHODS:
            raise ConfigError(f"unknown --adv '{self.adv}': use {', '.join(ADV_METHODS)}")
        if self.adv_target not in ADV_TARGETS:
            raise ConfigError(f"unknown --adv-target '{self.adv_target}': use predicted or true")
        for name in ("epsilon", "alpha", "lr", "weight_decay", "unlabeled_weight", "warm_fraction",
                     "unlabeled_rampup", "ema"):
            if not math.isfinite(getattr(self, name)):  # nan slips through every comparison below
                raise ConfigError(f"--{name.replace('_', '-')} must be a number, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr}) and weight decay >= 0")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"--ema must be in [0, 1), got {self.ema}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown --lr-schedule '{self.lr_schedule}': use {', '.join(LR_SCHEDULES)}")
        if self.epsilon < 0:
            raise ConfigError(f"--epsilon must be >= 0, got {self.epsilon}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 1 or self.batch_size < 1 or self.adv_steps < 1:
            raise ConfigError("--epochs, --batch-size and --adv-steps must be >= 1")
        if self.adv_ensemble < 0 or (self.adv_ensemble > 0 and self.adv == "none"):
            raise ConfigError(f"--adv-ensemble must be >= 0 and needs --adv other than none (got "
                              f"{self.adv_ensemble} with --adv {self.adv})")
        if self.unlabeled not in UNLABELED_METHODS:
            raise ConfigError(f"unknown --unlabeled '{self.unlabeled}': use {', '.join(UNLABELED_METHODS)}")
        if not (self.unlabeled_weight >= 0 and (self.vat_epsilon is None or self.vat_epsilon > 0)
                and self.vat_xi > 0):
            raise ConfigError("--unlabeled-weight must be >= 0, --vat-eps and --vat-xi > 0")
        if self.unlabeled_batch_size < 1 or self.unlabeled_min_steps < 0:
            raise ConfigError("--unlabeled-batch-size must be >= 1 and --unlabeled-min-steps >= 0")
        if not 0.0 <= self.pseudo_threshold <= 1.0:
            raise ConfigError(f"--pseudo-threshold must be in [0, 1], got {self.pseudo_threshold}")
        if self.augment_shift is not None and self.augment_shift < 0:
            raise ConfigError(f"--augment-shift must be >= 0, got {self.augment_shift}")
        if not 0.0 <= self.unlabeled_rampup <= 1.0:
            raise ConfigError(f"--unlabeled-rampup must be in [0, 1], got {self.unlabeled_rampup}")
        if not 0.0 < self.warm_fraction <= 1.0:
            raise ConfigError(f"--warm-fraction must be in (0, 1], got {self.warm_fraction}")
        if self.eval_subset < 0 or self.eval_steps < 1 or self.eval_surrogates < 0:
            raise ConfigError("--eval-subset and --eval-surrogates must be >= 0 and --eval-steps >= 1")
        self.robustness_config()  # ConfigError on a bad --eval-eps, --eval-attacks or --eval-l2-eps

    def robustness_config(self) -> RobustnessConfig | None:
        """The suite each round runs (``robustness.evaluate_robustness``); None when ``eval_subset`` is 0."""
        cfg = RobustnessConfig(eps=self.eval_eps, attacks=self.eval_attacks, subset=max(self.eval_subset, 1),
                               steps=self.eval_steps, l2_eps=self.eval_l2_eps, batch_size=self.eval_batch_size)
        return cfg if self.eval_subset > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def vat_radius(self, input_shape: tuple[int, ...]) -> float:
        """``vat_epsilon``, or by default a radius that scales with the input size.

        A fixed L2 radius means very different perturbations on an 8x8 digit
        and on a 28x28 one; ``VAT_EPS_PER_DIM * sqrt(D)`` is the same
        root-mean-square change per input value (2.0 on MNIST, the
        radius measured best there: docs/results.md).
        """
        if self.vat_epsilon is not None:
            return self.vat_epsilon
        return VAT_EPS_PER_DIM * math.sqrt(math.prod(input_shape))

    def shift_for(self, input_shape: tuple[int, ...]) -> int:
        """Pixels of random shift for images of ``input_shape`` (0: no augmentation, e.g. feature vectors)."""
        if not self.augment or len(input_shape) != 3:
            return 0
        if self.augment_shift is not None:
            return self.augment_shift
        # rounded down: a 1-pixel shift of an 8x8 digit is an eighth of it, and cost 3 points on digits at 100
        # labels (91.1 -> 88.2%), where 2 pixels on 28x28 MNIST gained 8 (docs/results.md)
        return min(input_shape[1:]) // 14


def stored_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Every ``TrainConfig`` field for settings stored by any version: keys it predates get what it did
    (``PREDATING``, else today's default); keys no longer known are dropped."""
    out = {**TrainConfig().to_dict(), **PREDATING}
    out.update({k: v for k, v in values.items() if k in out})
    return out


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def adversarial_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                       clip: attacks.Clip, generator: torch.Generator | None = None, *,
                       source: nn.Module | None = None) -> torch.Tensor:
    """The perturbed copy of ``x`` used in the regularization term.

    ``source``: a static model of ensemble adversarial training; ``x_adv`` is
    then FGSM crafted on it (from the true label, or from the *source's*
    prediction with ``adv_target="predicted"``), whatever ``cfg.adv`` is.
    """
    if cfg.adv == "ll" and source is None:
        return attacks.iterative_least_likely(model, x, cfg.epsilon, steps=cfg.adv_steps, clip=clip)
    crafter = model if source is None else source
    if cfg.adv_target == "predicted":
        with torch.no_grad(), attacks.eval_mode(crafter):
            y = crafter(x).argmax(1)
    if source is not None:
        return attacks.fgsm(source, x, y, cfg.epsilon, clip=clip)
    if cfg.adv == "fgsm":
        return attacks.fgsm(model, x, y, cfg.epsilon, clip=clip)
    return attacks.pgd(model, x, y, cfg.epsilon, steps=cfg.adv_steps, random_start=cfg.adv == "pgd",
                       clip=clip, generator=generator)


def unlabeled_term(model: nn.Module, x_u: torch.Tensor, cfg: TrainConfig, clip: attacks.Clip,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss on an unlabeled batch ``x_u`` (``cfg.unlabeled``), differentiable w.r.t. the model's weights.

    The statistics are detached tensors (``train_step`` decides when to read them).
    """
    stats: dict[str, torch.Tensor] = {}
    if cfg.unlabeled == "vat":
        with torch.set_grad_enabled(cfg.entmin):  # VAT's target p(x_u) is a constant: no graph unless EntMin
            logits = model(x_u)
        r_adv = attacks.virtual_adversarial_perturbation(model, x_u, epsilon=cfg.vat_radius(tuple(x_u.shape[1:])),
                                                         xi=cfg.vat_xi,
                                                         logits=logits, generator=generator)
        term = attacks.kl_divergence(logits.detach(), model(x_u + r_adv)).mean()
        stats["vat_loss"] = term.detach()
        if cfg.entmin:
            log_p = F.log_softmax(logits, dim=1)
            entropy = -(log_p.exp() * log_p).sum(1).mean()
            stats["entropy"] = entropy.detach()
            term = term + entropy
        return term, stats
    # pseudo-fgsm: eq. 2's adversarial term with the prediction as the label, on confident items only
    with torch.no_grad(), attacks.eval_mode(model):
        probs = F.softmax(model(x_u), dim=1)
    confidence, pseudo = probs.max(1)
    keep = confidence >= cfg.pseudo_threshold
    stats["pseudo_kept"] = keep.float().mean()
    if not bool(keep.any()):
        return x_u.new_zeros(()), stats
    x_adv = attacks.fgsm(model, x_u[keep], pseudo[keep], cfg.epsilon, clip=clip)
    # scaled by the kept share, so the term's weight does not jump as the model grows confident
    term = F.cross_entropy(model(x_adv), pseudo[keep], reduction="sum") / len(x_u)
    stats["pseudo_fgsm_loss"] = term.detach()
    return term, stats


def augment(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image (N, C, H, W) shifted by a random whole number of pixels in ``[-max_shift, max_shift]``.

    Pixels shifted in repeat the border (the background of a digit or a
    photo's edge), so values stay in the input's range; shape unchanged.
    """
    if max_shift <= 0 or x.dim() != 4:
        return x
    n, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - shifts[:, :1]).clamp(0, h - 1)  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] - shifts[:, 1:]).clamp(0, w - 1)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C) in memory
    return canonical(out.permute(0, 3, 1, 2))  # the pools' layout (no copy: already channels-last in memory)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               cfg: TrainConfig, clip: attacks.Clip = (0.0, 1.0),
               generator: torch.Generator | None = None,
               x_unlabeled: torch.Tensor | None = None, source: nn.Module | None = None,
               sync: bool = True, unlabeled_scale: float = 1.0) -> dict[str, Any]:
    """One update on ``alpha * CE(x, y) + (1 - alpha) * CE(x_adv, y) [+ unlabeled_weight * R(x_unlabeled)]``.

    ``source``: the static model that crafts this batch's ``x_adv`` (ensemble
    adversarial training), ``None`` for the model's own examples.  Returns the
    loss terms; ``unlabeled_loss`` is 0 when no unlabeled batch is given or
    ``cfg.unlabeled == "none"``; ``unlabeled_scale`` multiplies its weight
    (the ramp-up, ``unlabeled_ramp``).  ``sync=False`` returns them as detached
    0-d tensors: reading a number off a GPU waits for its queue to drain, and
    a training loop that did so at every step would keep the GPU idle while
    Python issues the next step's kernels.
    """
    model.train()
    adversarial = not (cfg.adv == "none" or cfg.alpha >= 1.0 or cfg.epsilon == 0)
    # FGSM from the model's own gradient: the clean pass below is the one FGSM would run (docs/benchmarks.md)
    shared = adversarial and cfg.adv == "fgsm" and source is None and mode_free(model)
    x_in = x.detach().requires_grad_(True) if shared else x
    logits = model(x_in)
    clean_loss = F.cross_entropy(logits, y)
    stats: dict[str, Any] = {"clean_loss": clean_loss.detach()}
    if not adversarial:
        loss = clean_loss
    else:
        if shared:
            target = logits.detach().argmax(1) if cfg.adv_target == "predicted" else y
            x_adv = attacks.fgsm_from_pass(logits, x_in, target, cfg.epsilon, clip)
        else:
            x_adv = adversarial_inputs(model, x, y, cfg, clip, generator, source=source)
        adv_loss = F.cross_entropy(model(x_adv), y)
        loss = cfg.alpha * clean_loss + (1 - cfg.alpha) * adv_loss
        stats["adv_loss"] = adv_loss.detach()
    stats["unlabeled_loss"] = 0.0
    weight = cfg.unlabeled_weight * unlabeled_scale
    if x_unlabeled is not None and len(x_unlabeled) and cfg.unlabeled != "none" and weight > 0:
        term, extra = unlabeled_term(model, x_unlabeled, cfg, clip, generator)
        loss = loss + weight * term
        stats.update(extra, unlabeled_loss=term.detach())
    optimizer.zero_grad(set_to_none=True)
    # the weights' gradients only: with ``shared`` the input requires grad too, and its gradient is not wanted
    loss.backward(inputs=[p for p in model.parameters() if p.requires_grad] if shared else None)
    optimizer.step()
    stats["loss"] = loss.detach()
    return {k: float(v) for k, v in stats.items()} if sync else stats


@dataclass(frozen=True)
class Shard:
    """This process's part of each batch in data-parallel training (``distributed.train_on_ray``).

    Every process draws the same global batch (same seed, same generator
    calls) and keeps rows ``rank::world`` of it; gradients are then averaged
    across processes (DistributedDataParallel), so N processes take the same
    steps as one with the whole batch, each doing 1/N of the work.
    """

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ConfigError(f"shard rank {self.rank} outside a world of {self.world}")

    def of(self, rows: Any) -> Any:
        return rows if self.world == 1 else rows[self.rank :: self.world]


def unlabeled_batches(pool: Pool, ids: np.ndarray, batch_size: int,
                      generator: torch.Generator, shard: Shard = Shard()) -> Iterator[torch.Tensor]:
    """Endless random batches of unlabeled inputs: a fresh permutation of ``ids`` each pass, loaded per batch.

    Only the permutation (8 bytes an id) and one batch are in memory, so a
    folder pool of any size streams from disk.  Ids are sorted inside a batch
    (the loss is a mean: order does not matter, and files are read in order).
    With a ``shard``, each process loads only its rows of the global batch.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if pool.unreadable:
        ids = ids[~np.isin(ids, np.fromiter(pool.unreadable, dtype=np.int64))]
    if len(ids) == 0:
        return
    size = min(batch_size, len(ids))
    while True:
        order = torch.randperm(len(ids), generator=generator).numpy()
        for start in range(0, len(ids) - size + 1, size):
            yield pool.load(shard.of(np.sort(ids[order[start : start + size]])))


def batch_weights(y: torch.Tensor) -> torch.Tensor:
    """Sampling weights that draw every class present in ``y`` equally often (1 / its count per row)."""
    counts = torch.bincount(y)
    return 1.0 / counts[y].double()


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``total``: ``cfg.lr``, or its cosine decay toward 0.

    Decay matters for long runs on few labels (the unlabeled term's thousands
    of steps): a constant rate keeps the weights moving around the minimum,
    so consecutive rounds' models disagree more than their labels explain.
    """
    if cfg.lr_schedule == "cosine" and total > 1:
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    return cfg.lr


def unlabeled_ramp(cfg: TrainConfig, step: int, total: int) -> float:
    """The unlabeled term's share of its weight at step ``step`` of ``total``: ``exp(-5 (1 - t)^2)`` while
    ``t = step / (unlabeled_rampup * total)`` is below 1, then 1.

    Why: early in a run the model's predictions on the pool are poor, and
    VAT then pulls the pool toward them; on few, skewed labels that spreads
    the majority classes (docs/results.md: entropy + VAT stuck at 58-77% on
    MNIST).  Laine & Aila (2017) ramp their consistency term in this way.
    """
    span = cfg.unlabeled_rampup * total
    if span <= 0 or step >= span:
        return 1.0
    return math.exp(-5.0 * (1.0 - step / span) ** 2)


class WeightAverage:
    """An exponential moving average of a model's parameters, updated after each optimizer step.

    The decay of update ``k`` (1-based) is ``min(decay, (1 + k) / (10 + k))``,
    as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: a run
    of a few hundred steps would otherwise return mostly its random
    initialisation (0.999^300 = 74%).  Parameters only: the networks have no
    buffers that training changes (no batch-norm, networks.py).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.params = [p.detach().clone() for p in model.parameters()]

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.params, [p.detach() for p in model.parameters()], 1.0 - keep)

    def copy_to(self, model: nn.Module) -> None:
        with torch.no_grad():
            for target, value in zip(model.parameters(), self.params):
                target.copy_(value)


def step_count(n_labeled: int, cfg: TrainConfig, *, unlabeled: bool = False, warm: bool = False) -> int:
    """Optimizer steps for a training run: ``epochs`` passes over the labels, within ``[min_steps, max_steps]``.

    With the unlabeled term on, at least ``unlabeled_min_steps`` (it learns
    from the pool, whose size has nothing to do with the labels); a warm start
    runs ``warm_fraction`` of that.
    """
    per_epoch = math.ceil(n_labeled / cfg.batch_size)
    floor = max(cfg.min_steps, cfg.unlabeled_min_steps if unlabeled else 0)
    total = int(min(max(cfg.epochs * per_epoch, floor), max(cfg.max_steps, floor)))
    if warm:
        total = max(1, math.ceil(total * cfg.warm_fraction))
    return total


def train_surrogates(pool: Pool, ids: np.ndarray, labels: np.ndarray, cfg: TrainConfig, k: int, *,
                     adv: str | None = "none", progress: bool = False) -> list[nn.Module]:
    """``k`` independently seeded models on the same labels: static models or black-box surrogates.

    For ensemble adversarial training when no earlier checkpoints exist, and
    as the "independently seeded model on the same labels" of transfer
    attacks (Papernot et al. 2017).  Seeds ``cfg.seed + 7919 * (i + 1)``;
    ``adv="none"`` by default (Tramer et al. 2018's static models and
    black-box holdouts are undefended, and their examples transfer best),
    ``None`` keeps ``cfg.adv``.  No ensemble term, no unlabeled term, no
    warm start.  Returned in eval mode.
    """
    if k < 0:
        raise ConfigError(f"the number of surrogates must be >= 0, got {k}")
    base = replace(cfg, adv=cfg.adv if adv is None else adv, adv_ensemble=0, unlabeled="none", warm_start=False)
    return [train(pool, ids, labels, replace(base, seed=(cfg.seed + 7919 * (i + 1)) % 2**32), progress=progress)
            for i in range(k)]


def train(pool: Pool, ids: np.ndarray, labels: np.ndarray, cfg: TrainConfig, *,
          extra_x: torch.Tensor | None = None, extra_y: np.ndarray | None = None,
          unlabeled_ids: np.ndarray | None = None, init_state: dict[str, torch.Tensor] | None = None,
          static_models: Sequence[nn.Module] = (), progress: bool = False, shard: Shard = Shard(),
          wrap: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """A model trained on the labeled items (and optional extra examples, e.g. DFAL's adversarial copies).

    The labeled set is small by construction (it is what people labeled), so
    it is loaded once; the number of updates is ``step_count``.
    ``unlabeled_ids`` feed the unlabeled term when ``cfg.unlabeled`` is set
    (streamed, ``unlabeled_batches``).  ``init_state`` (a previous model's
    ``state_dict``) is the starting point instead of a fresh initialisation.

    ``static_models`` (with ``cfg.adv_ensemble = K > 0``): the last K of them
    (fewer when fewer are given) take turns with the model as the source of
    the adversarial term: step ``s`` uses the model itself when
    ``s % (K' + 1) == 0``, else static model ``s % (K' + 1) - 1``.  They are
    moved to the training device, held in eval mode with frozen parameters
    for the run (their previous mode and flags restored afterwards) and never
    updated.  With K > 0 and none given, K surrogates are trained first
    (``train_surrogates``: K extra trainings).  Ignored when K == 0.

    ``shard`` and ``wrap`` make this one process of a data-parallel run
    (``distributed.train_on_ray``): the steps see rows ``shard`` of each batch
    and go through ``wrap(model)`` (DistributedDataParallel, which averages
    the gradients); the unwrapped model is returned.
    """
    ids = np.asarray(ids, dtype=np.int64)
    labels = np.array(labels, dtype=np.int64)  # a copy: torch wants it writable (Ray hands read-only arrays)
    if len(ids) == 0:
        raise ConfigError("no labeled items to train on")
    if len(ids) != len(labels):
        raise ConfigError(f"{len(ids)} items but {len(labels)} labels")
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    model = build_network(pool.input_shape, pool.num_classes, cfg.arch).to(device)
    if init_state is not None:
        try:
            model.load_state_dict(init_state)
        except RuntimeError as exc:
            raise ConfigError(f"cannot warm-start from the previous model: {str(exc).splitlines()[0]}") from None
    x = pool.load(ids)
    if pool.unreadable:  # decoding failures show up only after loading
        keep = np.array([int(i) not in pool.unreadable for i in ids])
        x, labels = x[torch.from_numpy(keep)], labels[keep]
    y = torch.from_numpy(labels)
    if extra_x is not None and extra_y is not None and len(extra_y):
        x = torch.cat([x, extra_x.to(x.dtype)])
        y = torch.cat([y, torch.as_tensor(extra_y, dtype=torch.int64)])
    sampling = batch_weights(y) if cfg.balance else None  # on the CPU, as the generator
    x, y = x.to(device), y.to(device)
    statics: list[nn.Module] = []
    if cfg.adv_ensemble > 0:
        statics = list(static_models)[-cfg.adv_ensemble:] if len(static_models) else \
            train_surrogates(pool, ids, labels, replace(cfg, device=str(device)), cfg.adv_ensemble)
        generator = seed_everything(cfg.seed)  # the run does not depend on whether surrogates were trained here
        for static in statics:
            static.to(device)
            with torch.no_grad(), attacks.eval_mode(static):
                shape = tuple(static(x[:1]).shape)
            if shape != (1, pool.num_classes):
                raise ConfigError(f"a static model gives outputs of shape {shape[1:]}, not ({pool.num_classes},)")
    unlabeled = None
    if cfg.unlabeled != "none" and unlabeled_ids is not None and len(unlabeled_ids):
        unlabeled = unlabeled_batches(pool, unlabeled_ids, cfg.unlabeled_batch_size, generator, shard)
    shift = cfg.shift_for(pool.input_shape)
    stepped = model if wrap is None else wrap(model)  # what the steps run: the model, or its DDP wrapper
    optimizer = torch.optim.Adam(stepped.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(y)
    total = step_count(n, cfg, unlabeled=unlabeled is not None, warm=init_state is not None)
    bar = progress_bar(progress, total=total, desc=f"train ({n} labels)", unit="step", leave=False)
    average = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    step = 0
    with ExitStack() as frozen:
        for static in statics:
            frozen.enter_context(attacks.eval_mode(static))
        while step < total:
            order = (torch.randperm(n, generator=generator) if sampling is None
                     else torch.multinomial(sampling, n, replacement=True, generator=generator)).to(device)
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                if len(idx) < shard.world:  # an epoch's last few rows cannot give every process one
                    continue
                x_u = next(unlabeled, None) if unlabeled is not None else None
                turn = step % (len(statics) + 1)
                # the whole batch is augmented (the same random draws in every process), then sharded
                x_batch = shard.of(augment(x[idx], shift, generator))
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, step, total)
                stats = train_step(stepped, x_batch, shard.of(y[idx]), optimizer, cfg,
                                   pool.clip_range, generator, x_unlabeled=None if x_u is None else x_u.to(device),
                                   source=statics[turn - 1] if turn else None, sync=False,
                                   unlabeled_scale=unlabeled_ramp(cfg, step, total))
                if average is not None:
                    average.update(model)
                step += 1
                bar.update(1)
                if step >= total:
                    break
            bar.set_postfix(loss=f"{float(stats['loss']):.3f}")  # one read (and wait) per epoch
    bar.close()
    if average is not None:
        average.copy_to(model)
    model.eval()
    return model


def predict_proba(model: nn.Module, pool: Pool, ids: np.ndarray, *, batch_size: int = 512,
                  progress: bool = False, rows: int | None = None) -> np.ndarray:
    """Softmax probabilities (N, C) float64, streamed in batches (each run in ``row_slices``)."""
    out = np.empty((len(ids), pool.num_classes), dtype=np.float64)
    row = 0
    with attacks.eval_mode(model), torch.inference_mode():
        for _, x in stream(pool, ids, batch_size, device=device_of(model), desc="predict", progress=progress):
            for part in row_slices(x, rows):
                out[row : row + len(part)] = F.softmax(model(part), dim=1).double().cpu().numpy()
                row += len(part)
    return out


def clean_accuracy(model: nn.Module, test: Pool, cfg: TrainConfig, *, progress: bool = False) -> float:
    """Accuracy on the whole test split: ``evaluate`` without its attacks (an ensemble's members alone)."""
    probs = predict_proba(model, test, test.ids, batch_size=cfg.eval_batch_size, progress=progress)
    return float((probs.argmax(1) == test.targets(test.ids)).mean())


def evaluate(model: nn.Module, test: Pool, cfg: TrainConfig, *, progress: bool = False) -> EvalMetrics:
    """Clean accuracy on the whole test split; FGSM and PGD accuracy at the training eps on a fixed subset.

    The attacks use the true labels (the standard robustness measure).  With
    ``epsilon == 0`` the adversarial accuracies are not measured.
    """
    ids = test.ids
    accuracy = clean_accuracy(model, test, cfg, progress=progress)
    if cfg.epsilon <= 0:
        return EvalMetrics(accuracy=accuracy, n=len(ids))
    subset = ids
    if len(ids) > cfg.eval_adv_max:  # the same subset for every model of a dataset
        subset = np.sort(np.random.default_rng(12345).choice(ids, cfg.eval_adv_max, replace=False))
    fgsm_hits = pgd_hits = 0
    generator = torch.Generator().manual_seed(cfg.seed)
    for chunk, batch in stream(test, subset, cfg.eval_batch_size, device=device_of(model), desc="evaluate (attacks)",
                               progress=progress):
        labels = torch.from_numpy(test.targets(chunk)).to(batch.device)
        for x, y in zip(row_slices(batch), row_slices(labels)):  # same device: same slices
            x_fgsm = attacks.fgsm(model, x, y, cfg.epsilon, clip=test.clip_range)
            x_pgd = attacks.pgd(model, x, y, cfg.epsilon, steps=max(cfg.adv_steps, 10), clip=test.clip_range,
                                generator=generator)
            with torch.inference_mode():
                fgsm_hits += int((model(x_fgsm).argmax(1) == y).sum())
                pgd_hits += int((model(x_pgd).argmax(1) == y).sum())
    return EvalMetrics(accuracy=accuracy, fgsm_accuracy=fgsm_hits / len(subset),
                       pgd_accuracy=pgd_hits / len(subset), n=len(ids))


def train_ensemble(pool: Pool, ids: np.ndarray, labels: np.ndarray, cfg: TrainConfig, members: int, *,
                   trainer: Callable[..., nn.Module] | None = None, progress: bool = False,
                   unlabeled_ids: np.ndarray | None = None) -> nn.Module:
    """``members`` trainings on the same labels with model seeds ``cfg.seed``, ``cfg.seed + 1``, ...; one
    member is the plain network, more an ``Ensemble`` (the final model's option: ``final-model --ensemble``).

    Consecutive seeds, so that ``--seed 1 --ensemble 3`` is the three models of seeds 1, 2 and 3 measured one by
    one in docs/results.md.  ``trainer``: ``train`` or an executor's (Ray) equivalent.
    """
    if members < 1:
        raise ConfigError(f"an ensemble needs at least 1 member, got {members}")
    fit = trainer or train
    nets = []
    for i in range(members):
        if members > 1:
            log.info("ensemble member %d of %d (model seed %d)", i + 1, members, (cfg.seed + i) % 2**32)
        nets.append(fit(pool, ids, labels, replace(cfg, seed=(cfg.seed + i) % 2**32), progress=progress,
                        unlabeled_ids=unlabeled_ids))
    return nets[0] if members == 1 else Ensemble(nets).eval()


def save_checkpoint(model: nn.Module, path: Path, cfg: TrainConfig, meta: dict[str, Any] | None = None,
                    *, input_shape: tuple[int, ...], num_classes: int) -> Path:
    """Weights plus what is needed to rebuild the network (an ``Ensemble``: its member count); written
    atomically (tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    members = {"ensemble": len(model.members)} if isinstance(model, Ensemble) else {}
    torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "meta": meta or {},
                "input_shape": list(input_shape), "num_classes": num_classes, **members}, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's payload (``save_checkpoint``: state_dict, config, meta, input_shape, num_classes) on the CPU;
    ``ConfigError`` for a file that is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: not a checkpoint
        raise ConfigError(f"{path} is not an activeadv checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or not {"state_dict", "config", "input_shape", "num_classes"} <= set(payload):
        raise ConfigError(f"{path} is not an activeadv checkpoint (no weights, config or input shape)")
    return payload


def load_checkpoint(path: Path, device: str = "auto", *, payload: dict[str, Any] | None = None) -> nn.Module:
    """The model saved at ``path`` in eval mode on ``device`` (``payload``: the file's ``read_checkpoint``)."""
    payload = read_checkpoint(path) if payload is None else payload

    def network() -> nn.Module:
        return build_network(tuple(payload["input_shape"]), payload["num_classes"], payload["config"]["arch"])

    members = int(payload.get("ensemble") or 0)
    model = Ensemble([network() for _ in range(members)]) if members else network()
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:  # weights of another shape or layout: the file does not match its own header
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path or 'the checkpoint'} does not hold the network it describes ({first})") from None
    return model.to(resolve_device(device)).eval()
