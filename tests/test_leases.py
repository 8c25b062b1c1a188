"""The dispatcher's queries on the outbox (`kwai_bridge.outbox.leases`), on both
backends: claims under a lease, outcomes, holds, replays, and claimers racing."""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from functools import partial

import pytest

from kwai_bridge import outbox as outbox_module
from kwai_bridge.db import make_engine
from kwai_bridge.outbox import Finish, Outbox
from tests.outbox_helpers import (  # noqa: F401  (engine and box are fixtures)
    LEASE, T0, accept, box, claim, conv, engine, event_of, queue, status_of,
)
from tests.threads import at_once


# -- claims and leases ------------------------------------------------------------------
def test_claims_take_the_oldest_due_rows_under_a_lease(box, caplog):
    ids = queue(box, 4)
    now = T0 + timedelta(seconds=2)  # rows 0, 1 and 2 are due
    first = box.claim_for_sending(now=now, limit=2, lease_seconds=LEASE, owner="w1")
    assert [(r.id, r.store_id, r.attempts) for r in first] == [(i, "store-a", 0) for i in ids[:2]]
    assert first[0].event == conv("order:0:EVENT_PURCHASE").event
    assert {(r.status, r.lease_until, r.lease_owner) for r in map(partial(event_of, box), ids[:2])} == {
        ("sending", now + timedelta(seconds=LEASE), "w1")}
    assert claim(box, now=now, limit=5, owner="w2") == [ids[2]]
    held = now + timedelta(seconds=LEASE - 1)  # row 3 fell due; the leases still hold
    assert claim(box, now=held, limit=5, owner="w2") == [ids[3]]
    assert claim(box, now=held, limit=5) == []
    # the leases of w1 and w2 run out: their rows come back, oldest lease first
    later = now + timedelta(seconds=2 * LEASE)
    with caplog.at_level(logging.WARNING, logger="kwai_bridge.outbox"):
        again = claim(box, now=later, limit=10, owner="w3")
    assert again == ids
    assert {event_of(box, i).lease_owner for i in again} == {"w3"}
    assert "recovered 4 events whose lease had expired" in caplog.text


def test_a_row_is_claimable_from_its_due_time_and_again_from_the_end_of_its_lease(box):
    assert claim(box, now=T0, limit=3) == []
    ids = queue(box, 3)  # due at T0, T0 + 1 s and T0 + 2 s
    tick = timedelta(microseconds=1)
    assert claim(box, now=T0 - tick, limit=3) == []
    assert claim(box, now=T0 + timedelta(seconds=1), limit=0) == []
    assert claim(box, now=T0 + timedelta(seconds=1), limit=3, owner="w1") == ids[:2]
    ends = T0 + timedelta(seconds=1 + LEASE)
    assert claim(box, now=ends - tick, limit=3, owner="w1") == [ids[2]]  # due; the leases still hold
    assert box.claim_for_sending(now=ends, limit=3, lease_seconds=LEASE, recover_expired=False) == []
    assert claim(box, now=ends, limit=3, owner="w2") == ids[:2]


# -- outcomes, holds and replays -----------------------------------------------------------
LATER = T0 + timedelta(minutes=5)
OUTCOMES = {
    "sent": lambda i: Finish(i, "sent", LATER, response="ok", result=1),
    "retry": lambda i: Finish(i, "pending", LATER, next_attempt_at=LATER + timedelta(minutes=1), error="503",
                              response="busy"),
    "dead": lambda i: Finish(i, "dead", LATER, error="bad pixel", response="x" * 5000, result=4001),
    "held": lambda i: Finish(i, "held", LATER, error="token", response="no", result=4003),
}
MARKED = {"sent": "sent", "retry": "pending", "dead": "dead", "held": "held"}


def finish(box: Outbox, event_id: int, outcome: str, *, owner: str = "") -> bool:
    """Record one outcome as the dispatcher does; whether the row was still ours."""
    return box.finish_many([OUTCOMES[outcome](event_id)], owner=owner) == 1


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_an_outcome_applies_only_while_the_row_is_leased_to_us(box, outcome):
    (event_id,) = queue(box, 1)
    assert finish(box, event_id, outcome) is False  # pending, not claimed
    claim(box, now=T0, limit=1, owner="w1")
    assert finish(box, event_id, outcome, owner="w2") is False
    assert status_of(box, event_id) == "sending"
    assert finish(box, event_id, outcome, owner="w1") is True
    assert finish(box, event_id, outcome, owner="w1") is False
    row = event_of(box, event_id)
    assert (row.status, row.attempts, row.lease_until, row.updated_at) == (MARKED[outcome], 1, None, LATER)
    assert row.sent_at == (LATER if outcome == "sent" else None)
    assert row.next_attempt_at == (LATER + timedelta(minutes=1) if outcome == "retry" else None)
    assert len(row.last_response) <= outbox_module.RESPONSE_LIMIT


def test_many_outcomes_are_recorded_at_once_and_only_on_rows_still_ours(box):
    ids = queue(box, 4)
    claim(box, now=T0 + timedelta(seconds=3), limit=3, owner="w1")  # the fourth stays pending
    finishes = [OUTCOMES["sent"](ids[0]), OUTCOMES["dead"](ids[1]), OUTCOMES["sent"](ids[2]),
                OUTCOMES["sent"](ids[3])]
    assert box.finish_many(finishes, owner="w1") == 3
    assert [status_of(box, i) for i in ids] == ["sent", "dead", "sent", "pending"]
    assert (event_of(box, ids[1]).last_error, event_of(box, ids[2]).last_result) == ("bad pixel", 1)
    assert box.finish_many([], owner="w1") == 0


def test_a_retried_row_is_claimed_again_when_due(box):
    (event_id,) = queue(box, 1)
    claim(box, now=T0, limit=1)
    assert finish(box, event_id, "retry")
    assert claim(box, now=LATER, limit=1) == []
    (row,) = box.claim_for_sending(now=LATER + timedelta(minutes=1), limit=1, lease_seconds=LEASE)
    assert (row.id, row.attempts, event_of(box, event_id).last_error) == (event_id, 1, "503")


def test_hold_store_parks_only_that_stores_pending_rows(box):
    a = queue(box, 3, store_id="store-a")
    b = queue(box, 2, store_id="store-b")
    claim(box, now=T0, limit=1)  # a[0] is in flight
    assert box.hold_store("store-a", now=LATER, error="token revoked") == 2
    assert [status_of(box, i) for i in a] == ["sending", "held", "held"]
    assert [status_of(box, i) for i in b] == ["pending", "pending"]
    assert event_of(box, a[1]).last_error == "token revoked"


def test_replay_moves_dead_and_held_rows_back_and_never_sent_ones(box):
    a = queue(box, 3, store_id="store-a")
    b = queue(box, 1, store_id="store-b")
    claim(box, now=T0 + timedelta(hours=1), limit=100)
    finish(box, a[0], "dead")
    finish(box, a[1], "held")
    finish(box, a[2], "sent")
    finish(box, b[0], "dead")
    now = T0 + timedelta(days=1)
    assert box.replay(now=now, store_id="store-a", result=4003) == 1
    assert status_of(box, a[1]) == "pending" and status_of(box, a[0]) == "dead"
    assert box.replay(now=now, event_id=a[2]) == 0
    assert box.replay(now=now) == 2
    row = event_of(box, a[0])
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == ("pending", 0, now, "bad pixel")
    assert status_of(box, a[2]) == "sent"
    assert set(claim(box, now=now, limit=10)) == {a[0], a[1], b[0]}


# -- concurrency ---------------------------------------------------------------------------
@pytest.mark.parametrize("engines", ["shared", "separate"])
def test_two_claimers_never_get_the_same_row(database_url, box, engines):
    accept(box, "w-bulk", [conv(f"order:{i}:EVENT_PURCHASE") for i in range(500)])
    if engines == "shared":
        boxes = [box, box]
    else:
        boxes = [Outbox(make_engine(database_url)) for _ in range(2)]
    claimed: list[list[int]] = [[], []]

    def claimer(n):
        while rows := boxes[n].claim_for_sending(now=T0, limit=7, lease_seconds=LEASE, owner=f"w{n}"):
            claimed[n].extend(r.id for r in rows)
            time.sleep(0.001)  # a dispatcher sends between claims; SQLite's lock is not fair

    _, errors = at_once(claimer, range(2))
    assert errors == []
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 500
    if box.engine.dialect.name == "postgresql":
        # SQLite's busy handler is not fair (a waiter backs off while the other writer
        # takes the lock again), so only PostgreSQL promises that both got some rows.
        assert claimed[0] and claimed[1], "both claimers should have taken some rows"
    assert box.counts()["sending"] == 500
    if engines == "separate":
        for b in boxes:
            b.engine.dispose()
