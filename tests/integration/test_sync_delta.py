"""Delta sync against real PostgreSQL with hand-built pages: merge by PID, token with the page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from structlog.testing import capture_logs

from sorsync.datatypes import APOTEK, PRAKSIS, SYGEHUS
from sorsync.db.locks import LockHeld, advisory_lock
from sorsync.krs import wire
from sorsync.krs.errors import ReplicationFault, TransportError
from sorsync.krs.feed import Page
from sorsync.sync import LOCK_NAME, Progress, sync
from tests.fixtures.sync import (
    MemorySource,
    ScriptedSource,
    make_entry,
    replica_rows,
    sync_token,
)

T0 = 1_700_000_000
VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def xmins(engine: Engine, table: str) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(text(f'SELECT pid, xmin::text FROM krs."{table}"')).all()
    return {int(pid): str(x) for pid, x in rows}


def runs(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(text("SELECT * FROM krs.sync_run ORDER BY id")).mappings()
        ]


def state(engine: Engine) -> dict[str, dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM krs.sync_state")).mappings().all()
    return {f"{r['register']}/{r['datatype']}/v{r['version']}": dict(r) for r in rows}


def test_insert_then_nothing_new(clean_db: Engine, memory_source: MemorySource) -> None:
    for pid in range(1, 6):
        memory_source.put(
            SYGEHUS, pid, T0, sor_nummer=1000 + pid, navn=f"S{pid}", valid_from=VALID_FROM
        )

    first = sync(clean_db, memory_source, [SYGEHUS], page_size=2)

    assert first.ok, first.error
    (res,) = first.datatypes
    assert (res.pages, res.records, res.inserted, res.updated) == (3, 5, 5, 0)
    rows = replica_rows(clean_db, SYGEHUS)
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert rows[3]["navn"] == "S3"
    assert rows[3]["valid_from"] == VALID_FROM
    assert rows[3]["valid_to"] is None
    assert rows[3]["token"] == wire.make_token(T0, 3)
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(T0, 5)
    # page_size is passed through; the loop ends on the first empty page
    assert [c[1] for c in memory_source.calls] == [
        wire.START_TOKEN,
        wire.make_token(T0, 2),
        wire.make_token(T0, 4),
        wire.make_token(T0, 5),
    ]
    assert {c[2] for c in memory_source.calls} == {2}

    memory_source.calls.clear()
    second = sync(clean_db, memory_source, [SYGEHUS])
    assert second.ok
    assert second.records == 0
    assert memory_source.calls == [(SYGEHUS.key, wire.make_token(T0, 5), 2000)]

    recorded = runs(clean_db)
    assert [(r["kind"], r["status"], r["pages"], r["records"]) for r in recorded] == [
        ("delta", "ok", 3, 5),
        ("delta", "ok", 0, 0),
    ]
    assert recorded[0]["report"]["datatypes"][SYGEHUS.key]["inserted"] == 5  # type: ignore[index]
    st = state(clean_db)[SYGEHUS.key]
    assert st["last_success_at"] is not None
    assert st["last_error"] is None


def test_changed_row_updated_unchanged_row_untouched(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    memory_source.put(SYGEHUS, 1, T0, sor_nummer=11, navn="Old name", valid_from=VALID_FROM)
    memory_source.put(SYGEHUS, 2, T0, sor_nummer=12, navn="Same", valid_from=VALID_FROM)
    assert sync(clean_db, memory_source, [SYGEHUS]).ok
    before = xmins(clean_db, SYGEHUS.table)

    # The importer changed PID 1 (same PID, newer ModifiedDate). The token is then reset to the
    # start, so the replay delivers PID 2 again verbatim: it must not be rewritten.
    memory_source.put(SYGEHUS, 1, T0 + 60, sor_nummer=11, navn="New name", valid_from=VALID_FROM)
    with clean_db.begin() as conn:
        conn.execute(text("UPDATE krs.sync_state SET token = :t"), {"t": wire.START_TOKEN})
    result = sync(clean_db, memory_source, [SYGEHUS])

    assert result.ok, result.error
    (res,) = result.datatypes
    assert (res.records, res.inserted, res.updated) == (2, 0, 1)
    after = xmins(clean_db, SYGEHUS.table)
    assert after[2] == before[2]  # no new tuple for the unchanged row
    assert after[1] != before[1]
    rows = replica_rows(clean_db, SYGEHUS)
    assert rows[1]["navn"] == "New name"
    assert rows[1]["token"] == wire.make_token(T0 + 60, 1)


def test_same_pid_twice_in_one_page_later_wins(clean_db: Engine) -> None:
    early = make_entry(SYGEHUS, 7, T0, navn="first", sor_nummer=1)
    late = make_entry(SYGEHUS, 7, T0 + 1, navn="second", sor_nummer=1)
    result = sync(clean_db, ScriptedSource({SYGEHUS.key: [Page([early, late])]}), [SYGEHUS])
    assert result.ok, result.error
    rows = replica_rows(clean_db, SYGEHUS)
    assert rows[7]["navn"] == "second"
    assert rows[7]["token"] == late.token
    assert sync_token(clean_db, SYGEHUS) == late.token


def test_redelivered_pid_replaces_and_closing_closes(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    memory_source.put(
        SYGEHUS, 1, T0, sor_nummer=5, navn="Unit", nummer="ABC", valid_from=VALID_FROM
    )
    memory_source.put(SYGEHUS, 2, T0, sor_nummer=6, navn="Other", valid_from=VALID_FROM)
    assert sync(clean_db, memory_source, [SYGEHUS]).ok

    closed_at = datetime(2024, 5, 1, tzinfo=UTC)
    # Next import: PID 1 closed in place (validTo set), its data also changed (nummer omitted
    # = NULL); PID 3 new.
    memory_source.put(
        SYGEHUS, 1, T0 + 86400, sor_nummer=5, navn="Unit", valid_from=VALID_FROM, valid_to=closed_at
    )
    memory_source.put(SYGEHUS, 3, T0 + 86400, sor_nummer=7, navn="New", valid_from=VALID_FROM)
    result = sync(clean_db, memory_source, [SYGEHUS])

    assert result.ok, result.error
    (res,) = result.datatypes
    assert (res.records, res.inserted, res.updated) == (2, 1, 1)
    rows = replica_rows(clean_db, SYGEHUS)
    assert rows[1]["valid_to"] == closed_at
    assert rows[1]["nummer"] is None
    assert rows[2]["navn"] == "Other"
    assert rows[3]["navn"] == "New"
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(T0 + 86400, 3)


def test_page_and_token_commit_together(clean_db: Engine) -> None:
    good = [make_entry(SYGEHUS, pid, T0, sor_nummer=pid, navn="ok") for pid in (1, 2)]
    # The second page holds a value PostgreSQL refuses (a bigint out of range) in its middle.
    bad_page = Page(
        [
            make_entry(SYGEHUS, 3, T0, sor_nummer=3, navn="would be stored"),
            make_entry(SYGEHUS, 4, T0, sor_nummer=2**64, navn="too big"),
            make_entry(SYGEHUS, 5, T0, sor_nummer=5, navn="after"),
        ]
    )
    later = Page([make_entry(SYGEHUS, 6, T0, sor_nummer=6)])
    source = ScriptedSource({SYGEHUS.key: [Page(good), bad_page, later]})

    result = sync(clean_db, source, [SYGEHUS])

    assert not result.ok
    (res,) = result.datatypes
    assert res.status == "failed"
    assert res.pages == 1
    assert SYGEHUS.key in (result.error or "")
    assert sorted(replica_rows(clean_db, SYGEHUS)) == [1, 2]
    assert sync_token(clean_db, SYGEHUS) == good[-1].token
    st = state(clean_db)[SYGEHUS.key]
    assert st["last_error"] == res.error
    assert st["last_success_at"] is None
    (run,) = runs(clean_db)
    assert (run["status"], run["pages"], run["records"]) == ("failed", 1, 2)
    assert run["error"] == result.error

    # The next run resumes after the committed page and clears the error.
    fixed = ScriptedSource(
        {SYGEHUS.key: [Page([make_entry(SYGEHUS, 3, T0, sor_nummer=3), later.entries[0]])]}
    )
    again = sync(clean_db, fixed, [SYGEHUS])
    assert again.ok
    assert fixed.calls[0][1] == good[-1].token
    assert sorted(replica_rows(clean_db, SYGEHUS)) == [1, 2, 3, 6]
    assert state(clean_db)[SYGEHUS.key]["last_error"] is None


def test_replication_fault_fails_one_datatype_others_continue(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    memory_source.put(SYGEHUS, 1, T0, sor_nummer=1)
    memory_source.put(APOTEK, 1, T0, sor_nummer=2)
    memory_source.fail[PRAKSIS.key] = ReplicationFault(
        "urn:stamdata:unauthorized-access", key=PRAKSIS.key
    )
    result = sync(clean_db, memory_source, [SYGEHUS, PRAKSIS, APOTEK])
    assert result.status == "failed"
    assert [d.status for d in result.datatypes] == ["ok", "failed", "ok"]
    assert "unauthorized-access" in (result.error or "")
    assert PRAKSIS.key in (result.error or "")
    assert not result.transient
    assert len(replica_rows(clean_db, APOTEK)) == 1


def test_transport_error_stops_the_run(clean_db: Engine, memory_source: MemorySource) -> None:
    memory_source.put(APOTEK, 1, T0, sor_nummer=2)
    memory_source.fail[SYGEHUS.key] = TransportError("KRS did not answer within 1 s")
    result = sync(clean_db, memory_source, [SYGEHUS, APOTEK])
    assert [d.status for d in result.datatypes] == ["failed", "skipped"]
    assert result.transient
    assert result.error == f"{SYGEHUS.key}: KRS did not answer within 1 s"
    assert replica_rows(clean_db, APOTEK) == {}


def test_unknown_elements_kept_and_warned_once(clean_db: Engine) -> None:
    pages = [
        Page(
            [make_entry(SYGEHUS, pid, T0, sor_nummer=pid, extra={"nytFelt": f"v{pid}"})],
            unknown_elements=frozenset({"nytFelt"}),
        )
        for pid in (1, 2, 3)
    ]
    with capture_logs() as logs:
        result = sync(clean_db, ScriptedSource({SYGEHUS.key: pages}), [SYGEHUS], prefetch=False)
    assert result.ok
    assert result.datatypes[0].unknown_elements == ["nytFelt"]
    assert replica_rows(clean_db, SYGEHUS)[2]["extra"] == {"nytFelt": "v2"}
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "does not know" in warnings[0]["event"]
    assert warnings[0]["elements"] == ["nytFelt"]
    assert warnings[0]["datatype"] == SYGEHUS.key


def test_progress_reported_per_page(clean_db: Engine, memory_source: MemorySource) -> None:
    for pid in range(1, 4):
        memory_source.put(SYGEHUS, pid, T0, sor_nummer=pid)
    seen: list[Progress] = []
    assert sync(clean_db, memory_source, [SYGEHUS], page_size=1, on_progress=seen.append).ok
    assert [(p.phase, p.pages, p.records) for p in seen] == [
        ("load", 1, 1),
        ("load", 2, 2),
        ("load", 3, 3),
        ("done", 3, 3),
    ]


def test_lock_held(clean_db: Engine, memory_source: MemorySource) -> None:
    with advisory_lock(clean_db, LOCK_NAME), pytest.raises(LockHeld):
        sync(clean_db, memory_source, [SYGEHUS])
    assert runs(clean_db) == []


def test_abandoned_run_is_marked_failed(clean_db: Engine, memory_source: MemorySource) -> None:
    with clean_db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO krs.sync_run (kind, status, datatypes)"
                " VALUES ('delta', 'running', '{}')"
            )
        )
    assert sync(clean_db, memory_source, [SYGEHUS]).ok
    first, second = runs(clean_db)
    assert first["status"] == "failed"
    assert "abandoned" in str(first["error"])
    assert second["status"] == "ok"


def test_bad_arguments(clean_db: Engine, memory_source: MemorySource) -> None:
    with pytest.raises(ValueError, match="page_size"):
        sync(clean_db, memory_source, [SYGEHUS], page_size=0)
    with pytest.raises(ValueError, match="page_size"):
        sync(clean_db, memory_source, [SYGEHUS], page_size=2001)
    with pytest.raises(ValueError, match="kind"):
        sync(clean_db, memory_source, [SYGEHUS], kind="partial")  # type: ignore[arg-type]


class Stop(BaseException):
    pass


def test_progress_callback_can_stop_between_pages(
    clean_db: Engine, memory_source: MemorySource
) -> None:
    for pid in range(1, 6):
        memory_source.put(SYGEHUS, pid, T0, sor_nummer=pid)

    def stop_after_two(progress: Progress) -> None:
        if progress.phase == "load" and progress.pages == 2:
            raise Stop

    with pytest.raises(Stop):
        sync(clean_db, memory_source, [SYGEHUS], page_size=2, on_progress=stop_after_two)
    assert sorted(replica_rows(clean_db, SYGEHUS)) == [1, 2, 3, 4]
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(T0, 4)
    (run,) = runs(clean_db)
    assert run["status"] == "failed"
    assert str(run["error"]).startswith("interrupted")
    # the lock was released: the next run continues
    assert sync(clean_db, memory_source, [SYGEHUS]).records == 1
