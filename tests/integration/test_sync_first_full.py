"""The first full (empty replica) COPies every page straight into the live table, its lookup
indexes in place: they must be exactly as the migrations made them afterwards, also when the run
fails, and answer lookups."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text

from sorsync.datatypes import APOTEK, SYGEHUS
from sorsync.krs import wire
from sorsync.krs.errors import TransportError
from sorsync.sync import sync
from tests.fixtures.sync import MemorySource, replica_rows, sync_token

T0 = 1_700_000_000


def indexes(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'krs' "
                "ORDER BY indexname"
            )
        ).all()
    return [(str(name), str(definition)) for name, definition in rows]


def fill(source: MemorySource, n: int) -> None:
    for pid in range(1, n + 1):
        source.put(
            SYGEHUS,
            pid,
            T0,
            sor_nummer=100 + pid,
            navn=f"Sygehus {pid}",
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        )


def test_first_full_keeps_every_index(clean_db: Engine, memory_source: MemorySource) -> None:
    before = indexes(clean_db)
    assert any("trgm" in name for name, _ in before)
    fill(memory_source, 7)
    result = sync(clean_db, memory_source, [SYGEHUS], kind="full", page_size=3)
    assert result.ok, result.error
    (res,) = result.datatypes
    assert (res.pages, res.records, res.inserted, res.updated) == (3, 7, 7, 0)
    assert indexes(clean_db) == before
    assert sorted(replica_rows(clean_db, SYGEHUS)) == list(range(1, 8))
    with clean_db.connect() as conn:  # the indexes hold the copied rows
        conn.execute(text("SET enable_seqscan = off"))
        found = conn.execute(
            text("SELECT pid FROM krs.sor_sygehus_v1 WHERE sor_nummer = 104")
        ).scalar_one()
    assert found == 4


def test_failed_first_full_keeps_every_index(clean_db: Engine, memory_source: MemorySource) -> None:
    before = indexes(clean_db)
    fill(memory_source, 4)
    memory_source.put(APOTEK, 1, T0, sor_nummer=1)

    class FailsLate(MemorySource):
        def replicate(self, datatype, offset, max_records):  # type: ignore[no-untyped-def]
            if datatype.key == APOTEK.key:
                raise TransportError("KRS went away")
            return memory_source.replicate(datatype, offset, max_records)

    # SYGEHUS is copied in before APOTEK fails: all of it is rolled back
    result = sync(clean_db, FailsLate(), [SYGEHUS, APOTEK], kind="full", page_size=2)
    assert not result.ok
    assert [d.status for d in result.datatypes] == ["skipped", "failed"]
    assert replica_rows(clean_db, SYGEHUS) == {}
    assert sync_token(clean_db, SYGEHUS) is None
    with clean_db.connect() as conn:
        state = conn.execute(text("SELECT datatype, token, last_error FROM krs.sync_state")).all()
    assert state == [("apotek", wire.START_TOKEN, f"{APOTEK.key}: KRS went away")]
    assert indexes(clean_db) == before
