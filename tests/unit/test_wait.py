"""``loop.wait_for_labels`` and ``run_rounds``' waiting rule, with a fake oracle and a fake clock (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from activeadv.errors import ConfigError, WaitTimeoutError
from activeadv.loop import new_labels, wait_for_labels
from activeadv.records import Annotation, EvalMetrics, Selection


class Trickle:
    """An oracle whose annotators answer ``per_poll`` of the requested items at each ``collect``."""

    def __init__(self, answers: list[Annotation], per_poll: int) -> None:
        self.answers, self.per_poll = list(answers), per_poll
        self.requested: list[int] = []
        self.commits = 0

    def request(self, selection: Selection, round_id: int) -> None:
        self.requested += [int(i) for i in selection.item_ids]

    def collect(self) -> list[Annotation]:
        out, self.answers = self.answers[:self.per_poll], self.answers[self.per_poll:]
        return out

    def commit(self) -> None:
        self.commits += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def asked(store):
    """A project whose round 0 trained on 1 label and asked for 4 items."""
    p = store.create_project("digits", "digits", ["a", "b"], train_settings={})
    ids = store.register_items(p.id, [str(i) for i in range(8)], [f"h{i}" for i in range(8)]).ids
    store.add_labels(p.id, [Annotation(int(ids[0]), "a", "import", external_id="x0")])
    rnd = store.start_round(p.id, "dfal", 4)
    store.record_model(rnd.id, "/ck/r0.pt", EvalMetrics(0.5, None, None, 10), labels_used=1)
    store.add_selection(rnd.id, Selection(ids[1:5], np.zeros(4), "dfal"))
    store.set_round_state(rnd.id, "requested")
    store.finish_round(rnd.id, {})
    answers = [Annotation(int(i), "b", "annotator", external_id=f"a{i}") for i in ids[1:5]]
    return p, ids, answers


def test_waits_until_enough_new_labels_are_stored(store, asked):
    p, ids, answers = asked
    oracle, clock = Trickle(answers, per_poll=1), Clock()
    polls = []
    res = wait_for_labels(store, p, oracle, 3, poll_seconds=5, before_poll=lambda: polls.append(1), timeout=1000,
                          sleep=clock.sleep, clock=clock)
    assert (res.new_labels, res.target, res.pending, res.polls) == (3, 3, 1, 3)
    assert clock.sleeps == [5, 5] and len(polls) == 3 and oracle.commits == 3
    assert sorted(oracle.requested) == sorted(int(i) for i in ids[1:5])  # pending requests re-sent once
    assert new_labels(store, p) == 3  # from the database alone: a restarted wait counts them


def test_ends_when_nothing_is_waiting_any_more(store, asked):
    p, _, answers = asked
    skips = [Annotation(a.item_id, None, "annotator", external_id="s" + a.external_id, skipped=True)
             for a in answers[1:]]
    res = wait_for_labels(store, p, Trickle(answers[:1] + skips, per_poll=4), 4, poll_seconds=1, timeout=1000,
                          sleep=lambda s: None)
    assert (res.new_labels, res.pending) == (1, 0)


def test_timeout_is_an_error_and_keeps_what_arrived(store, asked):
    p, _, answers = asked
    clock = Clock()
    with pytest.raises(WaitTimeoutError, match=r"timed out after 12 s .* 2 of 4 new label\(s\)"):
        wait_for_labels(store, p, Trickle(answers[:2], per_poll=1), 4, poll_seconds=5, timeout=12,
                        sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [5, 5, 2]  # the last sleep is cut to the deadline
    assert store.status(p.id).labeled == 3


def test_bad_options(store, asked):
    p, _, answers = asked
    with pytest.raises(ConfigError, match="min-new-labels"):
        wait_for_labels(store, p, Trickle(answers, 1), 0)
    with pytest.raises(ConfigError, match="poll-seconds"):
        wait_for_labels(store, p, Trickle(answers, 1), 1, poll_seconds=0)
