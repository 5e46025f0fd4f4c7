"""Training with FGSM adversarial regularization, prediction and evaluation.

One ``train_step`` holds the whole objective (Goodfellow et al. 2015, eq. 2)::

    loss = alpha * CE(x, y) + (1 - alpha) * CE(x_adv, y)

where ``x_adv`` is crafted by FGSM (or BIM/PGD with ``adv_steps`` iterations)
from the model's *predicted* label by default, which avoids label leaking
(Kurakin et al. 2016), or from the true label with ``adv_target="true"``.
``adv="none"`` is the plain-training ablation.  Every round retrains from
scratch, so results depend only on the labeled set and the seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from activeadv import attacks
from activeadv.data import Pool
from activeadv.errors import ConfigError
from activeadv.networks import build_network, row_slices
from activeadv.records import EvalMetrics

log = logging.getLogger(__name__)

ADV_METHODS = ("none", "fgsm", "bim", "pgd")
ADV_TARGETS = ("predicted", "true")


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
    weight_decay: float = 1e-4
    adv: str = "fgsm"
    epsilon: float = 0.1
    alpha: float = 0.5
    adv_steps: int = 5
    adv_target: str = "predicted"
    arch: str = "auto"
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    eval_adv_max: int = 1000  # adversarial accuracy on a fixed subset of the test split

    def __post_init__(self) -> None:
        if self.adv not in ADV_METHODS:
            raise ConfigError(f"unknown --adv '{self.adv}': use {', '.join(ADV_METHODS)}")
        if self.adv_target not in ADV_TARGETS:
            raise ConfigError(f"unknown --adv-target '{self.adv_target}': use predicted or true")
        if self.epsilon < 0:
            raise ConfigError(f"--epsilon must be >= 0, got {self.epsilon}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 1 or self.batch_size < 1 or self.adv_steps < 1:
            raise ConfigError("--epochs, --batch-size and --adv-steps must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def adversarial_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                       clip: attacks.Clip, generator: torch.Generator | None = None) -> torch.Tensor:
    """The perturbed copy of ``x`` used in the regularization term."""
    if cfg.adv_target == "predicted":
        with torch.no_grad(), attacks.eval_mode(model):
            y = model(x).argmax(1)
    if cfg.adv == "fgsm":
        return attacks.fgsm(model, x, y, cfg.epsilon, clip=clip)
    return attacks.pgd(model, x, y, cfg.epsilon, steps=cfg.adv_steps, random_start=cfg.adv == "pgd",
                       clip=clip, generator=generator)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               cfg: TrainConfig, clip: attacks.Clip = (0.0, 1.0),
               generator: torch.Generator | None = None) -> dict[str, float]:
    """One update on ``alpha * CE(x, y) + (1 - alpha) * CE(x_adv, y)``; returns the loss terms."""
    model.train()
    clean_loss = F.cross_entropy(model(x), y)
    stats = {"clean_loss": float(clean_loss.detach())}
    if cfg.adv == "none" or cfg.alpha >= 1.0 or cfg.epsilon == 0:
        loss = clean_loss
    else:
        x_adv = adversarial_inputs(model, x, y, cfg, clip, generator)
        adv_loss = F.cross_entropy(model(x_adv), y)
        loss = cfg.alpha * clean_loss + (1 - cfg.alpha) * adv_loss
        stats["adv_loss"] = float(adv_loss.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    stats["loss"] = float(loss.detach())
    return stats


def train(pool: Pool, ids: np.ndarray, labels: np.ndarray, cfg: TrainConfig, *,
          extra_x: torch.Tensor | None = None, extra_y: np.ndarray | None = None,
          progress: bool = False) -> nn.Module:
    """A fresh model trained on the labeled items (and optional extra examples, e.g. DFAL's adversarial copies).

    The labeled set is small by construction (it is what people labeled), so
    it is loaded once; the number of updates is ``epochs`` passes, bounded
    by ``[min_steps, max_steps]``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(ids) == 0:
        raise ConfigError("no labeled items to train on")
    if len(ids) != len(labels):
        raise ConfigError(f"{len(ids)} items but {len(labels)} labels")
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    model = build_network(pool.input_shape, pool.num_classes, cfg.arch).to(device)
    x = pool.load(ids)
    if pool.unreadable:  # decoding failures show up only after loading
        keep = np.array([int(i) not in pool.unreadable for i in ids])
        x, labels = x[torch.from_numpy(keep)], labels[keep]
    y = torch.from_numpy(labels)
    if extra_x is not None and extra_y is not None and len(extra_y):
        x = torch.cat([x, extra_x.to(x.dtype)])
        y = torch.cat([y, torch.as_tensor(extra_y, dtype=torch.int64)])
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(y)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = int(min(max(cfg.epochs * per_epoch, cfg.min_steps), cfg.max_steps))
    bar = tqdm(total=total, desc=f"train ({n} labels)", unit="step", disable=not progress, leave=False)
    step = 0
    while step < total:
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            stats = train_step(model, x[idx], y[idx], optimizer, cfg, pool.clip_range, generator)
            step += 1
            bar.update(1)
            if step >= total:
                break
        bar.set_postfix(loss=f"{stats['loss']:.3f}")
    bar.close()
    model.eval()
    return model


def stream(model: nn.Module, pool: Pool, ids: np.ndarray, batch_size: int, *, desc: str,
           progress: bool = False) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``pool.batches`` moved to the model's device, with an images/s progress bar: every pass over a pool."""
    device = next(model.parameters()).device
    with tqdm(total=len(ids), desc=desc, unit="img", unit_scale=True, disable=not progress, leave=False) as bar:
        for chunk, x in pool.batches(ids, batch_size):
            yield chunk, x.to(device)
            bar.update(len(chunk))


def predict_proba(model: nn.Module, pool: Pool, ids: np.ndarray, *, batch_size: int = 512,
                  progress: bool = False, rows: int | None = None) -> np.ndarray:
    """Softmax probabilities (N, C) float64, streamed in batches (each run in ``row_slices``)."""
    out = np.empty((len(ids), pool.num_classes), dtype=np.float64)
    row = 0
    with attacks.eval_mode(model), torch.inference_mode():
        for _, x in stream(model, pool, ids, batch_size, desc="predict", progress=progress):
            for part in row_slices(x, rows):
                out[row : row + len(part)] = F.softmax(model(part), dim=1).double().cpu().numpy()
                row += len(part)
    return out


def evaluate(model: nn.Module, test: Pool, cfg: TrainConfig, *, progress: bool = False) -> EvalMetrics:
    """Clean accuracy on the whole test split; FGSM and PGD accuracy at the training eps on a fixed subset.

    The attacks use the true labels (the standard robustness measure).  With
    ``epsilon == 0`` the adversarial accuracies are not measured.
    """
    ids = test.ids
    probs = predict_proba(model, test, ids, batch_size=cfg.eval_batch_size, progress=progress)
    truth = test.targets(ids)
    accuracy = float((probs.argmax(1) == truth).mean())
    if cfg.epsilon <= 0:
        return EvalMetrics(accuracy=accuracy, n=len(ids))
    subset = ids
    if len(ids) > cfg.eval_adv_max:  # the same subset for every model of a dataset
        subset = np.sort(np.random.default_rng(12345).choice(ids, cfg.eval_adv_max, replace=False))
    fgsm_hits = pgd_hits = 0
    generator = torch.Generator().manual_seed(cfg.seed)
    for chunk, batch in stream(model, test, subset, cfg.eval_batch_size, desc="evaluate (attacks)", progress=progress):
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


def save_checkpoint(model: nn.Module, path: Path, cfg: TrainConfig, meta: dict[str, Any] | None = None,
                    *, input_shape: tuple[int, ...], num_classes: int) -> Path:
    """Weights plus what is needed to rebuild the network; written atomically (tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "meta": meta or {},
                "input_shape": list(input_shape), "num_classes": num_classes}, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path, device: str = "auto") -> nn.Module:
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_network(tuple(payload["input_shape"]), payload["num_classes"], payload["config"]["arch"])
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
