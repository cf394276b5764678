"""`sorsync.sync.status`: what `sorsync status` and `/v1/status` report."""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from sorsync.config import Settings
from sorsync.datatypes import APOTEK, SYGEHUS
from sorsync.krs import wire
from sorsync.krs.errors import ReplicationFault
from sorsync.sync import status, sync
from tests.fixtures.sync import MemorySource

T0 = 1_700_000_000
SETTINGS = Settings(krs_datatypes=(SYGEHUS.key, APOTEK.key), delta_interval=15)


def test_never_synced(clean_db: Engine) -> None:
    report = status(clean_db, SETTINGS)
    assert [d.key for d in report.datatypes] == [SYGEHUS.key, APOTEK.key]
    assert all(d.token is None and d.rows == 0 for d in report.datatypes)
    assert report.data_age_seconds is None
    assert report.stale
    assert report.last_run is None
    assert report.stale_after_seconds == 1800
    json.dumps(report.to_dict())


def test_after_sync_then_stale_then_error(clean_db: Engine, memory_source: MemorySource) -> None:
    memory_source.put(SYGEHUS, 1, T0, sor_nummer=1)
    memory_source.put(SYGEHUS, 2, T0, sor_nummer=2)
    assert sync(clean_db, memory_source, [SYGEHUS, APOTEK]).ok

    report = status(clean_db, SETTINGS)
    sygehus, apotek = report.datatypes
    assert (sygehus.rows, sygehus.token) == (2, wire.make_token(T0, 2))
    assert (apotek.rows, apotek.token) == (0, wire.START_TOKEN)
    assert sygehus.last_success_at is not None
    assert report.data_age_seconds is not None
    assert report.data_age_seconds < 60
    assert not report.stale
    assert report.last_run is not None
    assert (report.last_run.kind, report.last_run.status, report.last_run.records) == (
        "delta",
        "ok",
        2,
    )
    assert report.last_ok_run == report.last_run

    # One datatype has not succeeded for an hour: the data as a whole is that old.
    with clean_db.begin() as conn:
        conn.execute(
            text(
                "UPDATE krs.sync_state SET last_success_at = now() - interval '1 hour'"
                " WHERE datatype = 'apotek'"
            )
        )
    report = status(clean_db, SETTINGS)
    assert report.stale
    assert report.data_age_seconds is not None
    assert 3590 < report.data_age_seconds < 3700

    memory_source.fail[APOTEK.key] = ReplicationFault(
        "urn:stamdata:unauthorized-access", key=APOTEK.key
    )
    assert not sync(clean_db, memory_source, [APOTEK]).ok
    report = status(clean_db, SETTINGS)
    assert report.datatypes[1].last_error is not None
    assert "unauthorized-access" in report.datatypes[1].last_error
    assert report.last_run is not None
    assert report.last_run.status == "failed"
    assert report.last_ok_run is not None
    assert report.last_ok_run.status == "ok"
    data = report.to_dict()
    assert data["datatypes"][1]["last_error"] == report.datatypes[1].last_error
    json.dumps(data)
