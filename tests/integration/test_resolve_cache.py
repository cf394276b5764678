"""sorsync.lookup.resolve's timeline cache on a real database: a stream that asks again for a
code the cache still holds, in the chunk whose fresh timelines push that code out, is answered
(the CSV streams and `sorsync resolve` keep a bounded cache of codes); and the
connections `sorsync resolve` answers on read one snapshot."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, text

from sorsync.cli.resolve import snapshot_connections
from sorsync.lookup import resolve as rs
from sorsync.lookup import run_steps
from tests.fixtures.api import empty_replica, load_sor_data

DAY = dt.date(2025, 6, 1)


def test_a_hit_evicted_by_its_own_chunk_is_still_answered(clean_db: Engine) -> None:
    cache = rs.TimelineCache(limit=2)

    def items(*codes: str) -> list[rs.Item]:
        return [rs.item("shak", code, None, DAY) for code in codes]

    with clean_db.connect() as conn:
        first = run_steps(conn, rs.resolve_cached(items("1001", "1002"), cache))
        assert [a.status for a in first] == ["not_found", "not_found"]
        # 1001 is a hit; 1003 and 1004 are fresh and leave no room for it.
        again = run_steps(conn, rs.resolve_cached(items("1001", "1003", "1004", "xx"), cache))
    assert [(a.item.code, a.status) for a in again] == [
        ("1001", "not_found"), ("1003", "not_found"), ("1004", "not_found"), ("XX", "invalid"),
    ]  # fmt: skip
    assert len(cache.timelines) == 2


def test_the_resolve_commands_connections_read_one_snapshot(clean_db: Engine) -> None:
    # `sorsync resolve` answers a file on two connections; a sync that commits while it runs
    # must change no answer on either of them.
    def units(conn: Connection) -> int:
        return int(conn.execute(text("SELECT count(*) FROM sor.unit")).scalar_one())

    with snapshot_connections(clean_db, 2) as conns:
        load_sor_data(clean_db)  # committed after the snapshot was taken
        with clean_db.connect() as fresh:
            assert units(fresh) > 0
        assert [units(conn) for conn in conns] == [0, 0]
    empty_replica(clean_db)
