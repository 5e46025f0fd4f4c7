"""Label Studio adapter: turns the project's records into Label Studio tasks and back.

One job per module; only ``client`` talks to the server (and imports ``label_studio_sdk``/``httpx``):

* ``config``: the labeling config, a single-choice image classifier whose
  ``<Choices>`` are exactly the class names (``label_config``, ``config_choices``).
* ``images``: how an item is shown, as a local-file URL Label Studio serves from
  disk or an inline PNG data URI (``pool_image_refs``).
* ``annotations``: task JSON -> records, pure functions tested with canned
  payloads: every vote, the label per item resolved by majority (ties flagged,
  never trained on), skipped tasks, and annotations refused because their label
  is not a class (Label Studio stores any choice without complaint), plus the
  cursor for the next pull (``parse_tasks`` -> ``SyncResult``).
* ``client``: ``connect(url, token)`` checks the server and the token once and
  returns a ``LabelStudioClient``; every SDK and network failure becomes a
  one-line ``LabelStudioError`` whose text never holds the token.  Its
  ``push_tasks`` is safe to re-run (items are looked up on the server, writes
  are never retried blindly); ``pull_annotations`` reads what annotators did
  since a cursor.
* ``oracle``: ``LabelStudioOracle``, the loop's ``Oracle`` over a client, and
  ``TaskBook``, the one interface to where the item -> task map and the sync
  cursor live (the database in a project, ``MemoryTaskBook`` in tests).

Everything other code uses is re-exported here: ``from activeadv.labelstudio import connect``.
"""

from __future__ import annotations

from activeadv.labelstudio.annotations import (
    EDIT_GRACE,
    SyncResult,
    ls_time,
    parse_task,
    parse_tasks,
    parse_time,
    resolve,
    task_item_id,
)
from activeadv.labelstudio.client import (
    CURSOR_SLACK,
    TASK_PAGE,
    LabelStudioClient,
    OnCreated,
    PushItem,
    PushResult,
    clean_token,
    connect,
    masked_url,
    task_payload,
)
from activeadv.labelstudio.config import CONTROL, IMAGE, config_choices, label_config
from activeadv.labelstudio.images import local_file_url, png_data_uri, pool_image_refs, served_from_disk
from activeadv.labelstudio.oracle import LabelStudioOracle, MemoryTaskBook, TaskBook

__all__ = [
    "CONTROL",
    "CURSOR_SLACK",
    "EDIT_GRACE",
    "IMAGE",
    "TASK_PAGE",
    "LabelStudioClient",
    "LabelStudioOracle",
    "MemoryTaskBook",
    "OnCreated",
    "PushItem",
    "PushResult",
    "SyncResult",
    "TaskBook",
    "clean_token",
    "config_choices",
    "connect",
    "label_config",
    "local_file_url",
    "ls_time",
    "masked_url",
    "parse_task",
    "parse_tasks",
    "parse_time",
    "png_data_uri",
    "pool_image_refs",
    "resolve",
    "served_from_disk",
    "task_item_id",
    "task_payload",
]
