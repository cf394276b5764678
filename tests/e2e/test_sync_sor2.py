"""SOR2 end to end: simulator (real HTTP on 127.0.0.1) → KRS client → sync engine → the
document tables `krs.sor_v2_*`, whose `record` keeps every element the simulator rendered,
whatever the shape (another namespace, renamed, dropped and added elements)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from sorsync.datatypes import SOR2_DATATYPES, lookup
from sorsync.krs.client import KrsClient
from sorsync.simulator.generator import SnapshotModel, evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.sor2 import SORENTITY, RecordShape
from sorsync.simulator.store import Row, Store
from sorsync.sync import sync
from tests.fixtures.simulator import serving_generated

SOR2 = [lookup(key) for key in SOR2_DATATYPES]
ENTITY = lookup(SORENTITY)


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with serving_generated(300, seed=11) as handle:
        yield handle


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[KrsClient]:
    with KrsClient(sim.url, timeout=20) as c:
        yield c


def stored(engine: Engine, table: str) -> dict[int, tuple[dict[str, Any], str | None, str]]:
    """pid → (record, record_namespace, token) of a document table."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f'SELECT pid, record, record_namespace, token FROM krs."{table}"')
        ).all()
    return {int(pid): (record, namespace, token) for pid, record, namespace, token in rows}


def as_text(value: object, timed: bool) -> str:
    """How the simulator writes a stored value (render.py, the default shape)."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00" if timed else value.isoformat()
    return str(value)


def source_rows(sim: SimulatorHandle, key: str) -> dict[int, Row]:
    with sim.store.lock:
        return {row.pid: row for row in sim.store.table(key)}


def test_sor2_replicates_every_rendered_field(
    clean_db: Engine, sim: SimulatorHandle, client: KrsClient
) -> None:
    result = sync(clean_db, client, SOR2, kind="full", page_size=500)
    assert result.ok, result.error
    for dt in SOR2:
        source = source_rows(sim, dt.key)
        replica = stored(clean_db, dt.table)
        assert sorted(replica) == sorted(source), dt.key
        for pid, row in source.items():
            record, namespace, _ = replica[pid]
            assert namespace == "http://nsi.dk/-/stamdata/3.0/sor"
            rendered = {k for k, v in row.values.items() if v is not None}
            assert set(record) == rendered, (dt.key, pid)
            assert record["ValidTo"] == "2999-12-31T00:00:00.000+01:00"
            if dt.key == SORENTITY:
                assert record["SorId"] == str(row.values["SorId"])
                assert record["EntityName"] == row.values["EntityName"]
                from_date = record["FromDate"]
                assert from_date[:10] == as_text(row.values["FromDate"], False)
                if pid % 5 == 0:  # the mixed date style: every 5th row writes date-times
                    assert from_date[10:] in ("T00:00:00+01:00", "T00:00:00+02:00")
                else:
                    assert len(from_date) == 10
    entity_rows = stored(clean_db, ENTITY.table)
    first = next(iter(entity_rows.values()))[0]
    assert "PostalAddressCoordETRS89z32EMeasure" in first

    # Nothing new: the delta fetches nothing.
    again = sync(clean_db, client, SOR2)
    assert again.ok, again.error
    assert again.records == 0


def snapshot(model: SnapshotModel) -> io.BytesIO:
    out = io.BytesIO()
    write_sortree(model, out)
    out.seek(0)
    return out


def test_next_snapshot_arrives_as_sor2_deltas(clean_db: Engine) -> None:
    store = Store()
    model = generate(400, seed=3)
    load_snapshot(store, snapshot(model))
    handle = serve_in_thread(store)
    try:
        with KrsClient(handle.url, timeout=20) as c:
            assert sync(clean_db, c, SOR2, kind="full").ok
            before = stored(clean_db, ENTITY.table)
            # The next night: the evolved tree, loaded into the running simulator.
            report = load_snapshot(store, snapshot(evolve(model, 30, seed=3)))
            delta = sync(clean_db, c, SOR2)
        assert delta.ok, delta.error
        counts = report.counts[SORENTITY]
        by_key = {d.key: d for d in delta.datatypes}
        # every row the import wrote, and nothing else, comes as the delta
        assert by_key[SORENTITY].records == counts.written > 0
        assert counts.inserted > 0
        assert counts.updated > 0
        expected = source_rows(handle, SORENTITY)
        after = stored(clean_db, ENTITY.table)
        assert sorted(after) == sorted(expected)
        assert len(after) == len(before) + counts.inserted  # new versions: new PIDs
        for pid, row in expected.items():
            record = after[pid][0]
            assert record["EntityName"] == row.values["EntityName"]
            assert ("ToDate" in record) == (row.values.get("ToDate") is not None)
    finally:
        handle.stop()


def test_shape_changes_reach_the_stored_record(
    clean_db: Engine, sim: SimulatorHandle, client: KrsClient
) -> None:
    namespace = "urn:example:sor2:other"
    shape = RecordShape.from_options(
        namespace=namespace,
        dates="datetime",
        rename=["sorentity:EntityName=Name"],
        drop=["sorentity:ShakId"],
        add=["sorentity:NewField=ny værdi & mere"],
    )
    sim.set_shape(shape)
    result = sync(clean_db, client, [ENTITY], kind="full")
    assert result.ok, result.error
    replica = stored(clean_db, ENTITY.table)
    source = source_rows(sim, SORENTITY)
    assert sorted(replica) == sorted(source)
    for pid, row in source.items():
        record, stored_namespace, _ = replica[pid]
        assert stored_namespace == namespace
        assert "EntityName" not in record
        assert record["Name"] == row.values["EntityName"]
        assert "ShakId" not in record
        assert record["NewField"] == "ny værdi & mere"
        assert record["FromDate"].startswith(as_text(row.values["FromDate"], True))

    # Through the admin API, between two syncs of a running simulator: back to the default,
    # then a rename of one element; a full sync rewrites what changed shape.
    assert requests.delete(sim.base_url + "/admin/shape", timeout=10).ok
    answer = requests.post(
        sim.base_url + "/admin/shape",
        json={"datatypes": {"sorentity": {"rename": {"SorType": "Level"}}}},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["datatypes"] == {"sorentity": {"rename": {"SorType": "Level"}}}
    again = sync(clean_db, client, [ENTITY], kind="full")
    assert again.ok, again.error
    for pid, row in source.items():
        record, stored_namespace, _ = stored(clean_db, ENTITY.table)[pid]
        assert stored_namespace == "http://nsi.dk/-/stamdata/3.0/sor"
        assert record["Level"] == row.values["SorType"]
        assert "SorType" not in record
        assert record["EntityName"] == row.values["EntityName"]
        assert "NewField" not in record


def test_records_big_enough_to_compress_are_stored_with_lz4(
    clean_db: Engine, sim: SimulatorHandle, client: KrsClient
) -> None:
    # ~2.5 KB of record: past PostgreSQL's ~2 KB threshold, so every row is compressed — with
    # the lz4 a sync asks for (sorsync.sync.run._prefer_lz4), on a full and on the deltas merged
    # after it.
    sim.set_shape(RecordShape.from_options(add=[f"sorentity:Padding={'Tekst ' * 400}"]))
    with clean_db.connect() as conn:
        try:
            conn.execute(text("SET default_toast_compression = 'lz4'"))
        except DBAPIError:
            pytest.skip("this PostgreSQL is built without lz4; the sync keeps pglz")
    result = sync(clean_db, client, [ENTITY], kind="full")
    assert result.ok, result.error
    with clean_db.connect() as conn:
        methods: dict[str | None, int] = dict(
            conn.execute(
                text(
                    f"SELECT pg_column_compression(record), count(*) FROM krs.{ENTITY.table}"
                    " GROUP BY 1"
                )
            ).all()
        )
    assert set(methods) == {"lz4"}, methods
