"""Where a command's heavy steps run: in this process, or on a Ray cluster (``--executor ray``).

A plain value (no torch, no Ray imported) that the CLI builds from its
options and every use case passes down: ``round``, ``run``, ``serve``,
``simulate`` and ``bench rank`` all read the same four settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from activeadv.errors import ConfigError

if TYPE_CHECKING:
    from activeadv.acquisition import Ranker

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Execution:
    """``executor``: ``local`` (this process) or ``ray``; with Ray, ``ray_workers`` scoring actors (Ray Data)
    and, when ``train_workers`` > 0, data-parallel training in that many Ray Train processes."""

    executor: str = "local"
    ray_address: str | None = None  # None: the cluster in RAY_ADDRESS, else a local one started on demand
    ray_workers: int = 1
    train_workers: int = 0  # 0: train in this process (also with --executor ray)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor '{self.executor}': use {' or '.join(EXECUTORS)}")
        if self.ray_workers < 1:
            raise ConfigError(f"--ray-workers must be >= 1, got {self.ray_workers}")
        if self.train_workers < 0:
            raise ConfigError(f"--train-workers must be >= 0, got {self.train_workers}")
        if self.train_workers and self.executor != "ray":
            raise ConfigError("--train-workers needs --executor ray")

    @property
    def on_ray(self) -> bool:
        return self.executor == "ray"

    def ranker(self, arch: str) -> Ranker | None:
        """The pool scorer: None (``acquisition.select``'s own, in this process) or Ray Data actors."""
        if not self.on_ray:
            return None
        from activeadv.distributed import make_ranker

        return make_ranker(arch=arch, workers=self.ray_workers, address=self.ray_address)

    def trainer(self) -> Any:
        """``training.train``, or the same call run by ``train_workers`` Ray Train processes."""
        if not self.train_workers:
            from activeadv.training import train

            return train
        from activeadv.distributed import make_trainer

        return make_trainer(self.train_workers, address=self.ray_address)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
