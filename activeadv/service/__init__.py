"""``activeadv serve``: an always-on HTTP service beside Label Studio.

It speaks Label Studio's two ways of connecting a model:

* project **webhooks** (``POST /webhook/labelstudio``, shared-secret header):
  each delivery is stored in the ``events`` table *before* anything acts on it;
  a worker thread then syncs through ``app.annotation.sync`` and, after enough
  new labels, runs ``app.rounds.run_round``, the very use cases the CLI calls,
  under the same project lock;
* the **ML-backend protocol** (``/health``, ``/setup``, ``/predict``,
  ``/webhook``): the latest round's model predicts a batch of tasks in one pass.

One job per module: ``events`` (payload -> dedupe key, pure), ``secret`` (the
shared secret), ``predict`` (checkpoint -> Label Studio predictions), ``worker``
(stored events -> sync -> round), ``http`` (the Starlette app), ``daemon``
(run, detach, stop, status).  The CLI imports only ``activeadv.service.daemon``
and ``activeadv.service.secret`` (and ``app.*``).
"""

from __future__ import annotations

from activeadv.service.config import ServiceConfig

__all__ = ["ServiceConfig"]
