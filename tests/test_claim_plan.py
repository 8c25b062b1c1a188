"""A claim costs the same whatever the backlog: SQLite's plan for leasing the picked rows
looks them up by id instead of walking the status index over every pending row (with
1,000,000 events, 300,000 of them pending, that walk made a claim 150 times dearer)."""
from __future__ import annotations

from kwai_bridge.db import make_engine, migrate
from kwai_bridge.outbox import Outbox


def test_sqlite_leases_the_picked_rows_by_id(sqlite_url):
    engine = make_engine(sqlite_url)
    migrate(engine)
    compiled = Outbox(engine)._statements.lease_due.compile(engine)
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string,
                                                       tuple(None for _ in compiled.positiontup)).all()]
    assert plan[0] == "SEARCH events USING INTEGER PRIMARY KEY (rowid=?)", plan
    # ... and the rows are picked from the due index, oldest first, without a sort.
    assert any("ix_events_status_due (status=? AND next_attempt_at<?)" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
