"""The ``Oracle`` protocol (``activeadv.oracle``) over Label Studio, and the one seam to the bookkeeping.

The oracle turns a selection into tasks and pulled annotations into labels; it keeps no state that
must survive a crash.  What must survive (which item already has which task, how far the last sync
got) lives behind ``TaskBook``: the database in a project, memory in tests.  The oracle imports
nothing from the store, so the CLI decides where the book lives and tests need no database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from activeadv.labelstudio.annotations import SyncResult
from activeadv.labelstudio.client import LabelStudioClient, PushItem, PushResult
from activeadv.records import Annotation, Selection


class TaskBook(Protocol):
    """Where the item -> task map and the sync cursor live (the database in a project; memory in tests)."""

    def known_tasks(self) -> dict[int, int]:
        """``item_id -> Label Studio task id`` for the open requests (trusted only where the task still exists)."""
        ...

    def tasks_created(self, round_id: int, new: dict[int, int]) -> None:
        """Record ``new`` tasks of round ``round_id``: called per imported chunk, so a crash loses at most one."""
        ...

    def cursor(self) -> datetime | None:
        """The sync cursor: annotations updated after it are pulled (None: all)."""
        ...

    def save_cursor(self, when: datetime) -> None:
        """Move the cursor; called by ``LabelStudioOracle.commit()``, after the caller stored the labels."""
        ...

    def model_version(self, round_id: int) -> str:
        """The predictions' ``model_version`` for round ``round_id`` (what annotators see in Label Studio)."""
        ...


@dataclass
class MemoryTaskBook:
    """A ``TaskBook`` in memory: the oracle's default, and the book for tests.

    ``model_version`` is the round id itself; a store-backed book uses the round number people see.
    """

    tasks: dict[int, int] = field(default_factory=dict)
    saved_cursor: datetime | None = None

    def known_tasks(self) -> dict[int, int]:
        return dict(self.tasks)

    def tasks_created(self, round_id: int, new: dict[int, int]) -> None:
        self.tasks.update(new)

    def cursor(self) -> datetime | None:
        return self.saved_cursor

    def save_cursor(self, when: datetime) -> None:
        self.saved_cursor = when

    def model_version(self, round_id: int) -> str:
        return str(round_id)


class LabelStudioOracle:
    """The ``Oracle`` protocol over Label Studio, with the bookkeeping in a ``TaskBook``.

    * ``image_ref(item_ids) -> {item_id: image}``: e.g. ``partial(pool_image_refs, pool, files_root=...)``.
    * ``book``: the task map and the sync cursor (default: a fresh ``MemoryTaskBook``).
    * ``top_k``: how many of a selection to send (None: all).

    The cursor is saved through the book lazily (see ``collect``), so that the caller stores the
    annotations ``collect`` returned before the cursor passes them.
    """

    def __init__(self, client: LabelStudioClient, project_id: int, class_names: Sequence[str], *,
                 image_ref: Callable[[Sequence[int]], dict[int, str]], book: TaskBook | None = None,
                 top_k: int | None = None) -> None:
        self.client = client
        self.project_id = int(project_id)
        self.class_names = list(class_names)
        self.image_ref = image_ref
        self.book: TaskBook = book if book is not None else MemoryTaskBook()
        self.top_k = top_k
        self.last_sync: SyncResult | None = None
        self._pending: datetime | None = None

    def request(self, selection: Selection, round_id: int) -> None:
        """Send the selection's top items (with the model's prediction) as tasks; ``book.model_version(round)``."""
        self.push(selection, round_id)

    def push(self, selection: Selection, round_id: int, *, progress: Callable[[int], None] | None = None
             ) -> PushResult:
        """``request`` for a ``push`` command: ``progress(n)`` is told how many items were handled, and the
        ``PushResult`` comes back (``created``: items that got a new task now).

        A separate method because ``Oracle.request`` returns None: a ``request`` returning the result would no
        longer satisfy the protocol.
        """
        n = len(selection) if self.top_k is None else min(self.top_k, len(selection))
        ids = [int(i) for i in selection.item_ids[:n]]
        images = self.image_ref(ids)
        items = []
        for pos, item_id in enumerate(ids):
            predicted = score = None
            if selection.predicted is not None:
                cls = int(selection.predicted[pos])
                predicted = self.class_names[cls] if 0 <= cls < len(self.class_names) else None
            if selection.confidence is not None:
                score = float(selection.confidence[pos])
            items.append(PushItem(item_id, images[item_id], predicted, score))

        def created(new: dict[int, int]) -> None:
            self.book.tasks_created(round_id, new)

        return self.client.push_tasks(self.project_id, items, model_version=self.book.model_version(round_id),
                                      known=self.book.known_tasks(), on_created=created, progress=progress)

    def collect(self) -> list[Annotation]:
        """Resolved labels (and skips) since the book's cursor; never blocks.

        Refused labels come too (``SyncResult.for_store``): the store checks every
        label against the classes and keeps unknown ones as rejects.

        The cursor moves lazily: the cursor of one ``collect`` is saved (through
        ``book.save_cursor``) at the start of the next one, or by ``commit()``, i.e.
        once the caller has had the chance to store the labels.  A crash in between
        only means the same annotations are pulled again, which the store
        ignores by ``external_id``.  Rejects and ties of the last pull: ``last_sync``.
        """
        self.commit()
        result = self.client.pull_annotations(self.project_id, self.class_names, self.book.cursor())
        self.last_sync = result
        self._pending = result.cursor
        return result.for_store()

    def commit(self) -> None:
        """Save the cursor of the last ``collect`` (call after its labels are stored)."""
        if self._pending is not None:
            self.book.save_cursor(self._pending)
            self._pending = None
