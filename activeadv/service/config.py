"""What one ``activeadv serve`` process serves: which database and project, where, and when a round runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activeadv.execution import Execution

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090  # the ML-backend port Label Studio's docs use


@dataclass(frozen=True)
class ServiceConfig:
    """Plain settings; the secret is passed beside it (never part of anything printed or stored)."""

    database_url: str | None = None
    project: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    min_new_labels: int | None = None  # [the round's query size]
    seed_round: int | None = None  # a project without rounds starts with this many random items; None: a person's
    strategy: str = "dfal"
    query_size: int = 20
    device: str = "auto"
    checkpoint_dir: Path | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    queue_size: int = 256  # wake-ups waiting for the worker; events themselves are in the database
    retry_seconds: float = 10.0  # Label Studio down, lock held by another process: try again after this
    predict_batch: int = 512
    execution: Execution = field(default_factory=Execution)  # where rounds score and train (--executor)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"
