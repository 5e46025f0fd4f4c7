"""The store at scale: bulk registration (COPY on PostgreSQL) is idempotent; candidates by id ranges."""

from __future__ import annotations

import numpy as np

from activeadv.records import Annotation, Selection


def test_bulk_register_is_idempotent(store):
    p = store.create_project("big", "manifest:m.csv", ["a", "b"])
    keys = [f"img/{i:05d}.png" for i in range(12_000)]  # more than one executemany chunk
    hashes = [f"h{i % 300}" for i in range(len(keys))]  # repeated content, as a synthetic manifest has
    first = store.register_items(p.id, keys, hashes)
    assert first.added == len(keys) and len(np.unique(first.ids)) == len(keys)
    again = store.register_items(p.id, keys, hashes)
    assert (again.added, again.renamed, again.changed) == (0, 0, 0)
    np.testing.assert_array_equal(again.ids, first.ids)
    more = store.register_items(p.id, [*keys, "img/new.png"], [*hashes, "hnew"])
    assert more.added == 1 and store.status(p.id).pool == len(keys) + 1


def test_candidates_by_id_ranges_equal_candidates(store):
    p = store.create_project("ranges", "manifest:m.csv", ["a", "b"])
    ids = store.register_items(p.id, [f"k{i}" for i in range(1000)], [f"h{i}" for i in range(1000)]).ids
    store.register_items(p.id, ["t0", "t1"], ["x0", "x1"], split="test")  # never candidates
    store.add_labels(p.id, [Annotation(int(i), "a", "import", external_id=f"e{i}") for i in ids[::7]])
    rnd = store.start_round(p.id, "dfal", 3)
    store.add_selection(rnd.id, Selection(ids[[1, 2, 500]], np.zeros(3), "dfal", np.zeros(3, dtype=np.int64),
                                          np.ones(3)))
    expected = store.candidates(p.id)
    for chunk in (1, 64, 333, 100_000):
        parts = list(store.iter_candidates(p.id, chunk=chunk))
        np.testing.assert_array_equal(np.concatenate(parts), expected)
        assert all(len(part) <= chunk for part in parts)
    assert len(expected) == 1000 - len(ids[::7]) - 3  # positions 1, 2 and 500 are not multiples of 7
