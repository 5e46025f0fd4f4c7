"""The ML backend's ``/predict``: the latest round's checkpoint predicts a batch of tasks in one pass.

The model and the dataset are loaded once and kept until a newer round's
checkpoint appears; a batch of tasks is one ``predict_proba`` call (streamed in
``batch_size`` chunks), never one forward pass per task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activeadv.labelstudio import CONTROL, IMAGE, task_item_id

if TYPE_CHECKING:
    from activeadv.app.workspace import Workspace

log = logging.getLogger(__name__)


def prediction_payload(probs: Sequence[float], class_names: Sequence[str], model_version: str) -> dict[str, Any]:
    """One task's prediction as Label Studio stores it: the most likely class as a choice, its probability as score."""
    best = max(range(len(probs)), key=lambda c: probs[c])
    return {"result": [{"from_name": CONTROL, "to_name": IMAGE, "type": "choices",
                        "value": {"choices": [str(class_names[best])]}}],
            "score": float(probs[best]), "model_version": model_version}


def no_prediction(model_version: str) -> dict[str, Any]:
    """For a task that is not one of the project's items (or before any model): nothing pre-selected."""
    return {"result": [], "score": 0.0, "model_version": model_version}


class Predictor:
    """Predictions for a project's tasks from its latest trained round (``model_version`` = the round number)."""

    def __init__(self, ws: Workspace, project: str | None, *, device: str = "cpu", batch_size: int = 512) -> None:
        self.ws = ws
        self.project_name = project
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._model_path: str | None = None
        self._version = "none"
        self._pool: Any = None

    def latest(self) -> tuple[str | None, str]:
        """``(checkpoint path, round number)`` of the newest round with a model; ``(None, "none")`` before any."""
        project = self.ws.project(self.project_name)
        for rnd in reversed(self.ws.store.rounds(project.id)):
            if rnd.model_path and Path(rnd.model_path).exists():
                return rnd.model_path, str(rnd.number)
        return None, "none"

    @property
    def model_version(self) -> str:
        return self.latest()[1]

    def _load(self) -> None:
        from activeadv.training import load_checkpoint

        path, version = self.latest()
        if path is None:
            self._model, self._model_path, self._version = None, None, version
            return
        if path != self._model_path:
            log.info("predicting with the model of round %s", version)
            self._model = load_checkpoint(Path(path), self.device)
            self._model_path, self._version = path, version
        if self._pool is None:
            self._pool = self.ws.dataset(self.ws.project(self.project_name)).pool

    def predict(self, tasks: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        """One prediction per task, in order, and the model version; one batched pass over the known items."""
        import numpy as np

        from activeadv.training import predict_proba

        with self._lock:  # one model in memory; concurrent /predict calls wait instead of loading it twice
            self._load()
            version = self._version
            if self._model is None:
                return [no_prediction(version) for _ in tasks], version
            pool, classes = self._pool, self.ws.project(self.project_name).class_names
            items = [task_item_id(t) if isinstance(t, dict) else None for t in tasks]
            known = set(int(i) for i in np.asarray(pool.ids))
            ids = sorted({i for i in items if i is not None and i in known})
            probs = predict_proba(self._model, pool, np.asarray(ids, dtype=np.int64), batch_size=self.batch_size) \
                if ids else np.empty((0, len(classes)))
        row = {item: probs[k] for k, item in enumerate(ids)}
        return [prediction_payload(list(row[i]), classes, version) if i in row else no_prediction(version)
                for i in items], version
