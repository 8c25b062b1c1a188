"""Retention pruning leaves webhooks room: after each batch it rests as long as the batch
took, through the `rest` it is given."""
from __future__ import annotations

from datetime import timedelta

from kwai_bridge import outbox as outbox_module
from kwai_bridge.outbox import Finish
from tests.outbox_helpers import T0, accept, box, claim, conv, engine  # noqa: F401  (fixtures)


def test_prune_rests_after_each_full_batch_as_long_as_it_took(box, monkeypatch):
    monkeypatch.setattr(outbox_module, "PRUNE_BATCH", 2)
    old = T0 - timedelta(days=40)
    for i in range(5):
        accept(box, f"old-{i}", [conv(f"order:{i}:EVENT_PURCHASE")], received_at=old)
    box.finish_many([Finish(i, "sent", old, response="ok", result=1) for i in claim(box, now=old, limit=10)])
    rests: list[float] = []

    assert box.prune(now=T0, rest=rests.append) == {"bodies": 5, "events": 5, "deliveries": 5}
    # Five rows of each kind in batches of two: two full batches each, and a last one
    # (one row) after which there is nothing left to rest for.
    assert len(rests) == 6 and all(0 <= seconds < 60 for seconds in rests)
