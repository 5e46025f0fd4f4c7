"""Classifiers small enough to retrain from scratch every round.

``build_network`` picks a small CNN for images and an MLP for feature vectors.
Both expose ``embed(x)`` (the penultimate activations) for core-set selection.
Neither uses batch-norm or dropout, so a sample's logits never depend on the
rest of its batch: batched attacks (DeepFool over the pool) and per-sample
gradients through a summed loss are then exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from activeadv.data import chunks
from activeadv.errors import ConfigError

ARCHITECTURES = ("auto", "cnn", "mlp")

# Rows per forward/backward pass on CPU.  Streamed batches (I/O, progress) stay
# large, but the network sees slices of them: on the 2-core reference machine
# the MNIST CNN runs 1.8x faster at 64 rows than at 512 (activations stay in
# cache: forward 6,800 vs 3,800 img/s, forward+backward 3,900 vs 2,200), and a
# DeepFool pass holds ~1 MB of graph per row (52 MB at 64 rows, 243 MB at 256).
# On CUDA the whole batch goes at once: there, batch size is what buys speed.
CPU_ROWS = 64


def row_slices(x: torch.Tensor, rows: int | None = None) -> Iterator[torch.Tensor]:
    """``x`` cut into the slices a network pass runs on: ``rows`` each, by default ``CPU_ROWS`` on CPU, all on GPU."""
    size = rows or (x.shape[0] if x.device.type != "cpu" else CPU_ROWS)
    yield from chunks(x, max(1, size))


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights live: the device a pass over the pool moves its batches to."""
    return next(model.parameters()).device


class SmallCNN(nn.Module):
    """conv32-pool-conv64-pool-fc128: 421k parameters on 28x28 inputs (the MNIST reference model)."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        # Pool before ReLU: the same function (max and ReLU commute, and the ReLU
        # sees a quarter of the values), the same parameter names as checkpoints
        # saved with the other order.
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        h, w = max(height // 4, 1), max(width // 4, 1)
        if h > 7 or w > 7:  # large photos: cap the dense layer's size
            self.features.append(nn.AdaptiveAvgPool2d((min(h, 7), min(w, 7))))
            h, w = min(h, 7), min(w, 7)
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(64 * h * w, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)
        # Channels-last weights keep every activation channels-last, the layout of
        # the pools' images (data.canonical): a 1-channel input carries no layout
        # of its own, and on CPU torch 2.13's max-pool runs 6x slower on row-major
        # activations (docs/benchmarks.md, section 7b).
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class MLP(nn.Module):
    """Two hidden layers for feature vectors (N, D)."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, int] = (256, 128)) -> None:
        super().__init__()
        self.embedding = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU()
        )
        self.head = nn.Linear(hidden[1], num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def build_network(input_shape: tuple[int, ...], num_classes: int, arch: str = "auto") -> nn.Module:
    """A fresh, randomly initialised classifier (seed torch before calling for determinism)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture '{arch}': use {', '.join(ARCHITECTURES)}")
    if num_classes < 2:
        raise ConfigError("a classifier needs at least 2 classes")
    if arch == "cnn" or (arch == "auto" and len(input_shape) == 3):
        if len(input_shape) != 3:
            raise ConfigError(f"the CNN needs (C, H, W) images, got input shape {input_shape}")
        return SmallCNN(*input_shape, num_classes=num_classes)
    features = 1
    for size in input_shape:
        features *= int(size)
    return MLP(features, num_classes)


class Ensemble(nn.Module):
    """Networks trained on the same labels from different seeds, answering as one: the mean of their softmax.

    Why: on MNIST's 300 dfal-chosen labels three model seeds average to 99.10% where each alone gives 98.9-99.0%
    (docs/results.md); the seeds disagree on the few items near the boundary, and averaging settles them.
    ``forward`` returns the log of the mean probability, so it stands wherever logits are expected (softmax gives
    the mean back, argmax the ensemble's vote) and attacks differentiate through every member.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one network")
        self.members = nn.ModuleList(members)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed(x) for m in self.members], dim=1)  # type: ignore[operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([torch.log_softmax(m(x), dim=1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


# Layers whose output does not depend on train/eval mode or on the rest of the batch.
_MODE_FREE = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Sequential,
              nn.ModuleList, SmallCNN, MLP, Ensemble)


def mode_free(model: nn.Module) -> bool:
    """Whether ``model`` computes the same function in train and eval mode (no batch-norm, no dropout).

    Why: a training step may then reuse its clean forward pass for what an
    attack would recompute in eval mode (``training.train_step``).  A layer
    not known here counts as mode-dependent.
    """
    return all(isinstance(m, _MODE_FREE) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
