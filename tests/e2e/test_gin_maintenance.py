"""After a sync, the GIN pending lists of the tables it changed are merged
(sorsync.db.maintenance); a role that may not do that gets a warning and a good sync."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text
from structlog.testing import capture_logs

from sorsync.config import Settings
from sorsync.datatypes import SYGEHUS
from sorsync.db.engine import make_engine
from sorsync.simulator.server import SimulatorHandle
from sorsync.sync import sync
from sorsync.sync.service import krs_source, run_sync
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import source_values

SETTINGS = Settings(krs_datatypes=(SYGEHUS.key,), krs_timeout=5)
TRGM = f"krs.ix_{SYGEHUS.table}_navn_trgm"


def pending_tuples(engine: Engine) -> int:
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
        row = conn.execute(
            text("SELECT pending_tuples FROM pgstatginindex(CAST(:ix AS regclass))"), {"ix": TRGM}
        )
        return int(row.scalar_one())


def test_a_sync_leaves_no_pending_list(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(20)])
    with krs_source(SETTINGS, simulator.url) as source:
        assert sync(clean_db, source.client, [SYGEHUS]).ok  # the engine alone
    assert pending_tuples(clean_db) > 0  # fastupdate: the new names wait in the pending list

    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(20, 30)])
    result = run_sync(clean_db, SETTINGS, krs_url=simulator.url)
    assert result.ok
    assert result.datatypes[0].inserted == 10
    assert pending_tuples(clean_db) == 0


@pytest.fixture
def non_owner(clean_db: Engine, database_url: str) -> Iterator[Engine]:
    """An engine of a role that may read and write the krs tables but owns none of them."""
    role = f"sorsync_writer_{uuid.uuid4().hex[:8]}"
    with clean_db.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA krs, sor TO "{role}"'))
        conn.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA krs TO "{role}"'))
        conn.execute(text(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA krs TO "{role}"'))
    engine = make_engine(make_url(database_url).set(username=role).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with clean_db.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))


def test_a_non_owner_gets_a_warning_and_a_good_sync(
    clean_db: Engine, non_owner: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(5)])
    with capture_logs() as logs:
        result = run_sync(non_owner, SETTINGS, krs_url=simulator.url)
    assert result.ok
    assert result.datatypes[0].inserted == 5
    warnings = [e for e in logs if "GIN pending lists" in str(e.get("event"))]
    assert len(warnings) == 1, logs
    assert warnings[0]["log_level"] == "warning"
    assert "owner" in warnings[0]["event"]
    assert "must be owner" in warnings[0]["error"]
    assert pending_tuples(clean_db) > 0  # left for autovacuum
