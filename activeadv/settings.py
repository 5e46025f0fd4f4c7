"""Configuration read once, at the edge (the CLI), and passed down as data.

Nothing here reads the environment at import time; ``Settings.from_env`` is
called by the CLI.  Secrets (the Label Studio token) have no default and are
never written to the database or to logs: ``repr`` hides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DB_FILE = "activeadv.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{DEFAULT_DB_FILE}"
    label_studio_url: str | None = None
    label_studio_token: str | None = field(default=None, repr=False)
    checkpoint_dir: Path = Path("checkpoints")
    device: str = "auto"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``ACTIVEADV_*`` / ``LABEL_STUDIO_*`` variables; explicit overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "database_url": env.get("ACTIVEADV_DATABASE_URL") or f"sqlite:///{DEFAULT_DB_FILE}",
            "label_studio_url": env.get("LABEL_STUDIO_URL") or None,
            "label_studio_token": env.get("LABEL_STUDIO_API_KEY") or None,
            "checkpoint_dir": Path(env.get("ACTIVEADV_CHECKPOINT_DIR", "checkpoints")),
            "device": env.get("ACTIVEADV_DEVICE", "auto"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
