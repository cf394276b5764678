"""Full sync against real PostgreSQL: replay into shadow tables, reconcile, apply atomically."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from sorsync.datatypes import APOTEK, PRAKSIS, SYGEHUS
from sorsync.krs import wire
from sorsync.krs.errors import ReplicationFault, TransportError
from sorsync.krs.feed import Page
from sorsync.sync import Progress, sync
from tests.fixtures.sync import (
    MemorySource,
    ScriptedSource,
    as_copy_rows,
    make_entry,
    replica_rows,
    sync_token,
)

T0 = 1_700_000_000
VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def fill(source: MemorySource, n: int = 5) -> None:
    for pid in range(1, n + 1):
        source.put(SYGEHUS, pid, T0, sor_nummer=100 + pid, navn=f"S{pid}", valid_from=VALID_FROM)


def xmins(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT pid, xmin::text FROM krs.sor_sygehus_v1")).all()
    return {int(pid): str(x) for pid, x in rows}


@pytest.fixture
def view_on_replica(clean_db: Engine) -> Iterator[str]:
    """A view bound to the live table, like the `sor` views: the swap must keep it valid."""
    with clean_db.begin() as conn:
        conn.execute(
            text("CREATE VIEW public.sync_test_view AS SELECT pid, navn FROM krs.sor_sygehus_v1")
        )
    yield "public.sync_test_view"
    with clean_db.begin() as conn:
        conn.execute(text("DROP VIEW IF EXISTS public.sync_test_view"))


def test_full_into_empty_replica(clean_db: Engine, memory_source: MemorySource) -> None:
    fill(memory_source)
    result = sync(clean_db, memory_source, [SYGEHUS], kind="full", page_size=2)
    assert result.ok, result.error
    (res,) = result.datatypes
    assert (res.pages, res.records, res.inserted, res.updated, res.deleted) == (3, 5, 5, 0, 0)
    recon = res.reconciliation
    assert recon is not None
    assert (recon.old_rows, recon.new_rows, recon.only_new, recon.only_old, recon.changed) == (
        0,
        5,
        5,
        0,
        0,
    )
    assert recon.examples == {"only_new": [1, 2, 3, 4, 5]}
    assert sorted(replica_rows(clean_db, SYGEHUS)) == [1, 2, 3, 4, 5]
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(T0, 5)
    assert memory_source.calls[0][1] == wire.START_TOKEN


def test_full_repairs_drift_and_reports_it(
    clean_db: Engine, memory_source: MemorySource, view_on_replica: str
) -> None:
    fill(memory_source, 30)
    assert sync(clean_db, memory_source, [SYGEHUS]).ok
    # Drift: a row the source never had, a row lost, two rows edited by hand.
    with clean_db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO krs.sor_sygehus_v1 (pid, modified_at, token, navn)"
                " VALUES (999, now(), :t, 'ghost')"
            ),
            {"t": wire.make_token(T0, 999)},
        )
        conn.execute(text("DELETE FROM krs.sor_sygehus_v1 WHERE pid = 4"))
        conn.execute(text("UPDATE krs.sor_sygehus_v1 SET navn = 'edited' WHERE pid IN (2, 7)"))
        conn.execute(text("UPDATE krs.sor_sygehus_v1 SET valid_to = now() WHERE pid = 7"))
    untouched_before = xmins(clean_db)[10]

    result = sync(clean_db, memory_source, [SYGEHUS], kind="full", examples=1)

    assert result.ok, result.error
    (res,) = result.datatypes
    recon = res.reconciliation
    assert recon is not None
    assert (recon.old_rows, recon.new_rows) == (30, 30)
    assert (recon.only_old, recon.only_new, recon.changed, recon.unchanged) == (1, 1, 2, 27)
    assert recon.changed_columns == {"navn": 2, "valid_to": 1}
    assert recon.examples == {"only_old": [999], "only_new": [4], "changed": [2]}
    assert (res.inserted, res.updated, res.deleted) == (1, 2, 1)
    rows = replica_rows(clean_db, SYGEHUS)
    assert sorted(rows) == list(range(1, 31))
    assert rows[2]["navn"] == "S2"
    assert rows[7]["valid_to"] is None
    assert xmins(clean_db)[10] == untouched_before  # unchanged rows are not rewritten
    with clean_db.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {view_on_replica}")).scalar_one() == 30
        report = conn.execute(
            text("SELECT report FROM krs.sync_run ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    stored = report["datatypes"][SYGEHUS.key]["reconciliation"]
    assert stored["only_old"] == 1
    assert stored["examples"]["changed"] == [2]
    assert "1 only in the old replica" in recon.summary()


def test_live_replica_unchanged_while_loading(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    fill(memory_source, 4)
    assert sync(clean_db, memory_source, [SYGEHUS]).ok
    memory_source.put(SYGEHUS, 2, T0 + 10, sor_nummer=102, navn="renamed")
    memory_source.put(SYGEHUS, 9, T0 + 10, sor_nummer=109, navn="new")
    seen: list[tuple[str, int]] = []

    def watch(progress: Progress) -> None:
        if progress.phase == "load":
            rows = replica_rows(clean_db, SYGEHUS)
            seen.append((rows[2]["navn"], len(rows)))

    result = sync(clean_db, memory_source, [SYGEHUS], kind="full", page_size=1, on_progress=watch)
    assert result.ok, result.error
    assert seen == [("S2", 4)] * 5
    rows = replica_rows(clean_db, SYGEHUS)
    assert (rows[2]["navn"], len(rows)) == ("renamed", 5)


def test_failed_full_leaves_replica_and_token(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    fill(memory_source, 6)
    assert sync(clean_db, memory_source, [SYGEHUS]).ok
    before, token = replica_rows(clean_db, SYGEHUS), sync_token(clean_db, SYGEHUS)
    memory_source.put(SYGEHUS, 3, T0 + 5, sor_nummer=103, navn="changed")

    class FailsOnSecondPage(MemorySource):
        def replicate(self, datatype, offset, max_records):  # type: ignore[no-untyped-def]
            if offset != wire.START_TOKEN:
                raise TransportError("connection reset by KRS; try again later")
            return memory_source.replicate(datatype, offset, max_records)

    result = sync(clean_db, FailsOnSecondPage(), [SYGEHUS], kind="full", page_size=2)

    assert result.status == "failed"
    assert result.transient
    assert "connection reset" in (result.error or "")
    assert replica_rows(clean_db, SYGEHUS) == before
    assert sync_token(clean_db, SYGEHUS) == token
    # the next full starts over and succeeds
    again = sync(clean_db, memory_source, [SYGEHUS], kind="full")
    assert again.ok, again.error
    assert again.datatypes[0].reconciliation is not None
    assert again.datatypes[0].reconciliation.changed == 1


def test_one_datatype_failing_applies_nothing(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    fill(memory_source, 3)
    memory_source.put(APOTEK, 1, T0, sor_nummer=1)
    memory_source.fail[PRAKSIS.key] = ReplicationFault(
        "urn:stamdata:unauthorized-access", key=PRAKSIS.key
    )
    result = sync(clean_db, memory_source, [SYGEHUS, PRAKSIS, APOTEK], kind="full")
    assert [d.status for d in result.datatypes] == ["skipped", "failed", "skipped"]
    assert "unauthorized-access" in (result.error or "")
    assert replica_rows(clean_db, SYGEHUS) == {}
    assert replica_rows(clean_db, APOTEK) == {}
    assert sync_token(clean_db, SYGEHUS) is None


def test_refuses_to_empty_the_replica(clean_db: Engine, memory_source: MemorySource) -> None:
    fill(memory_source, 3)
    assert sync(clean_db, memory_source, [SYGEHUS]).ok
    result = sync(clean_db, MemorySource(), [SYGEHUS], kind="full")
    assert result.status == "failed"
    assert "received no rows" in (result.error or "")
    assert len(replica_rows(clean_db, SYGEHUS)) == 3


@pytest.mark.parametrize("copy_rows", [False, True], ids=["entries", "copy-rows"])
def test_pid_moved_during_full_is_taken_once(clean_db: Engine, copy_rows: bool) -> None:
    # The source imported while the full was running: PID 1 reappears later in the feed, and
    # PID 3 twice in one page. The first full copies pages straight into the live table; a page
    # that repeats a PID is taken back and merged instead, and the pages after it copy again.
    # Pages come as entries (the Python walk) or COPY-ready rows (the KRS client's native walk).
    first = Page([make_entry(SYGEHUS, p, T0, navn=f"v1-{p}") for p in (1, 2)])
    second = Page(
        [
            make_entry(SYGEHUS, 1, T0 + 9, navn="v2-1"),
            make_entry(SYGEHUS, 3, T0 + 9, navn="v1-3"),
            make_entry(SYGEHUS, 3, T0 + 10, navn="v2-3"),
        ]
    )
    third = Page([make_entry(SYGEHUS, 4, T0 + 11, navn="v1-4")])
    pages = [first, second, third]
    if copy_rows:
        pages = [as_copy_rows(SYGEHUS, page) for page in pages]
    source = ScriptedSource({SYGEHUS.key: pages})
    result = sync(clean_db, source, [SYGEHUS], kind="full")
    assert result.ok, result.error
    (res,) = result.datatypes
    assert (res.pages, res.records, res.inserted, res.updated) == (3, 6, 4, 1)
    rows = replica_rows(clean_db, SYGEHUS)
    assert {p: r["navn"] for p, r in rows.items()} == {1: "v2-1", 2: "v1-2", 3: "v2-3", 4: "v1-4"}
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(T0 + 11, 4)


def test_several_datatypes_swap_together(clean_db: Engine, memory_source: MemorySource) -> None:
    fill(memory_source, 2)
    memory_source.put(APOTEK, 5, T0, sor_nummer=55, navn="Apotek")
    result = sync(clean_db, memory_source, [SYGEHUS, APOTEK], kind="full")
    assert result.ok, result.error
    assert [d.status for d in result.datatypes] == ["ok", "ok"]
    assert replica_rows(clean_db, APOTEK)[5]["navn"] == "Apotek"
    with clean_db.connect() as conn:
        leftovers = conn.execute(
            text("SELECT count(*) FROM pg_class WHERE relname LIKE 'shadow\\_\\_%'")
        ).scalar_one()
    assert leftovers == 0


def test_first_full_is_invisible_until_it_commits(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    fill(memory_source, 6)
    seen: list[int] = []

    def watch(progress: Progress) -> None:
        if progress.phase == "load":
            seen.append(len(replica_rows(clean_db, SYGEHUS)))

    result = sync(clean_db, memory_source, [SYGEHUS], kind="full", page_size=2, on_progress=watch)
    assert result.ok, result.error
    assert seen == [0, 0, 0]
    assert len(replica_rows(clean_db, SYGEHUS)) == 6
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(T0, 6)
