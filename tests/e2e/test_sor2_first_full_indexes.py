"""The name search's trigram GIN on an empty SOR2 table is built by the first full that fills it,
after its rows and inside its transaction (sorsync.sync.initial), not kept up row by row; the
btree lookup indexes are there from the start. Simulator (real HTTP on 127.0.0.1) → KRS client →
sync → PostgreSQL. `views.ensure` builds whatever a table with rows lacks."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from sorsync.config import Settings
from sorsync.datatypes import SOR2_DATATYPES, SOR2_OPTIONAL_DATATYPES, Datatype, lookup
from sorsync.db import views
from sorsync.db.models import KRS_SCHEMA
from sorsync.krs.client import KrsClient
from sorsync.krs.errors import TransportError
from sorsync.krs.feed import Page
from sorsync.mapping import default_mapping
from sorsync.simulator.server import SimulatorHandle
from sorsync.simulator.sor2 import SORENTITY
from sorsync.sync import sync
from sorsync.sync.service import run_sync
from tests.fixtures.simulator import serving_generated

KEYS = (*SOR2_DATATYPES, *SOR2_OPTIONAL_DATATYPES)
DTS = [lookup(key) for key in KEYS]
WANTED = views.index_statements(default_mapping())
AFTER_ROWS = {name for name, index in WANTED.items() if index.after_rows}


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with serving_generated(200, seed=3) as handle:
        yield handle


def lookup_indexes(engine: Engine) -> dict[str, bool]:
    """The `ixm_` indexes on the SOR2 tables: name → valid (pg_index.indisvalid)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, i.indisvalid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :s AND c.relname LIKE 'ixm\\_%'"
            ),
            {"s": KRS_SCHEMA},
        ).all()
    return {str(name): bool(valid) for name, valid in rows}


def fresh(engine: Engine) -> None:
    """The SOR2 tables as a new database has them: empty, with the btree lookup indexes and
    without the GIN (the other tests' truncated tables keep all of theirs)."""
    with engine.begin() as conn:
        for name in lookup_indexes(engine):
            conn.execute(text(f'DROP INDEX {KRS_SCHEMA}."{name}"'))
    views.ensure(engine, default_mapping(), DTS, force=True)
    # the GIN of an empty table is left to its first full
    assert AFTER_ROWS
    assert lookup_indexes(engine) == dict.fromkeys(WANTED.keys() - AFTER_ROWS, True)


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            dt.key: conn.execute(text(f'SELECT count(*) FROM krs."{dt.table}"')).scalar_one()
            for dt in DTS
        }


def test_the_first_full_builds_every_lookup_index(clean_db: Engine, sim: SimulatorHandle) -> None:
    fresh(clean_db)
    settings = Settings(krs_datatypes=KEYS, krs_url=sim.url)
    result = run_sync(clean_db, settings, kind="full", krs_url=sim.url, rebind=True)
    assert result.ok, result.error
    assert all(n > 0 for n in counts(clean_db).values()), counts(clean_db)
    assert lookup_indexes(clean_db) == dict.fromkeys(WANTED, True)
    with clean_db.connect() as conn:  # the indexes hold the rows copied before they were built
        conn.execute(text("SET enable_seqscan = off"))
        shak = conn.execute(
            text("SELECT shak FROM sor.sorentity WHERE shak IS NOT NULL LIMIT 1")
        ).scalar_one()
        conn.execute(text("SET enable_bitmapscan = off"))
        found = conn.execute(
            text("SELECT count(*) FROM sor.sorentity WHERE shak = :s"), {"s": shak}
        ).scalar_one()
        plan = conn.execute(
            text("EXPLAIN SELECT * FROM sor.sorentity WHERE shak = :s"), {"s": shak}
        ).scalars()
    assert found >= 1
    assert any("Index Scan using ixm_" in line for line in plan)


def test_the_indexes_are_built_inside_the_first_fulls_transaction(
    clean_db: Engine, sim: SimulatorHandle
) -> None:
    """Straight through the engine, with no `views.ensure` after it: the first full itself
    builds the GIN; an index dropped later is rebuilt by the next `ensure`."""
    fresh(clean_db)
    indexes = views.indexes_by_table(default_mapping())
    with KrsClient(sim.url, timeout=20) as client:
        result = sync(clean_db, client, DTS, kind="full", page_size=150, indexes=indexes)
    assert result.ok, result.error
    assert lookup_indexes(clean_db) == dict.fromkeys(WANTED, True)

    views.ensure(clean_db, default_mapping(), DTS)  # the views switch to SOR2 here
    assert views.ensure(clean_db, default_mapping(), DTS) is False
    for gone in (min(AFTER_ROWS), min(WANTED.keys() - AFTER_ROWS)):
        with clean_db.begin() as conn:
            conn.execute(text(f'DROP INDEX {KRS_SCHEMA}."{gone}"'))
        assert views.ensure(clean_db, default_mapping(), DTS) is True  # same fingerprint
        assert lookup_indexes(clean_db) == dict.fromkeys(WANTED, True)


class FailsOn:
    """The simulator's client, failing every call for one datatype (KRS went away)."""

    def __init__(self, client: KrsClient, key: str) -> None:
        self.client, self.key = client, key

    def replicate(self, datatype: Datatype, offset: str, max_records: int) -> Page:
        if datatype.key == self.key:
            raise TransportError("KRS went away")
        return self.client.replicate(datatype, offset, max_records)


def test_a_failed_first_full_takes_back_the_gin_it_built(
    clean_db: Engine, sim: SimulatorHandle
) -> None:
    fresh(clean_db)
    before = lookup_indexes(clean_db)
    indexes = views.indexes_by_table(default_mapping())
    with KrsClient(sim.url, timeout=20) as client:
        # sorentity is loaded and its GIN built before the last datatype fails
        failing = FailsOn(client, KEYS[-1])
        result = sync(clean_db, failing, DTS, kind="full", page_size=150, indexes=indexes)
        assert not result.ok
        assert result.datatypes[0].records > 0
        assert counts(clean_db) == dict.fromkeys(KEYS, 0)
        assert lookup_indexes(clean_db) == before
        assert views.ensure(clean_db, default_mapping(), DTS) is False  # nothing to build yet

        result = sync(clean_db, client, DTS, kind="full", page_size=150, indexes=indexes)
    assert result.ok, result.error
    assert lookup_indexes(clean_db) == dict.fromkeys(WANTED, True)


def test_a_code_too_long_for_an_index_does_not_stop_the_sync(
    clean_db: Engine, sim: SimulatorHandle
) -> None:
    """A ShakId of 6 000 random characters fits a jsonb record but no btree entry: the indexed
    text columns read a text over views.MAX_KEY_BYTES as NULL, so the first full and the next
    delta go through, and the record keeps what was sent."""
    fresh(clean_db)
    table = sim.store.table(SORENTITY)
    huge = secrets.token_urlsafe(4500)
    with sim.store.lock:
        row = next(r for r in table if r.values.get("ShakId"))
        table.update(row.pid, {**row.values, "ShakId": huge}, row.modified)
    settings = Settings(krs_datatypes=KEYS, krs_url=sim.url)
    result = run_sync(clean_db, settings, kind="full", krs_url=sim.url, rebind=True)
    assert result.ok, result.error
    assert lookup_indexes(clean_db) == dict.fromkeys(WANTED, True)
    with sim.store.lock:  # and as a change the next night
        other = next(r for r in table if r.values.get("ShakId") and r.pid != row.pid)
        table.update(other.pid, {**other.values, "ShakId": huge + "x"}, other.modified + 1)
    result = run_sync(clean_db, settings, kind="delta", krs_url=sim.url)
    assert result.ok, result.error
    assert result.datatypes[0].records == 1
    with clean_db.connect() as conn:
        rows = conn.execute(
            text("SELECT pid, shak, record ->> 'ShakId' FROM sor.sorentity WHERE pid = ANY(:p)"),
            {"p": [row.pid, other.pid]},
        ).all()
    assert sorted(rows) == sorted([(row.pid, None, huge), (other.pid, None, huge + "x")])
