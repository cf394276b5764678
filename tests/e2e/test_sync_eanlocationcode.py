"""A SOR2 datatype added by the checklist (docs/development.md, "Adding a field or a
datatype"): `sor/v2/eanlocationcode/v1` replicates from the simulator over HTTP, its view
`sor.eanlocationcode` answers with typed columns, and a code that goes away stops being current."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from sorsync.config import Settings
from sorsync.datatypes import SOR2_OPTIONAL_DATATYPES, lookup
from sorsync.simulator.generator import SnapshotModel, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.sor2 import EANLOCATION
from sorsync.simulator.store import Store
from sorsync.sync.service import run_sync

EAN = lookup(EANLOCATION)


def load(store: Store, model: SnapshotModel) -> None:
    tree = io.BytesIO()
    write_sortree(model, tree)
    tree.seek(0)
    load_snapshot(store, tree)


@pytest.fixture
def sim() -> Iterator[tuple[SimulatorHandle, SnapshotModel]]:
    model = generate(200, seed=5)
    store = Store()
    load(store, model)
    handle = serve_in_thread(store)
    try:
        yield handle, model
    finally:
        handle.stop()


def current_codes(store: Store) -> set[tuple[object, object]]:
    """(SorId, EanLocationCode) of the rows current in the simulator's (NSP's) table."""
    out = set()
    for row in store.table(EANLOCATION):
        valid_to = row.values.get("ValidTo")
        if isinstance(valid_to, datetime) and valid_to.year >= 2999:
            out.add((row.values["SorId"], row.values["EanLocationCode"]))
    return out


def replica_codes(engine: Engine) -> set[tuple[object, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT sor_id, ean FROM sor.eanlocationcode WHERE nsp_valid_to >= '2999-01-01'")
        ).all()
    return {(r.sor_id, r.ean) for r in rows}


def served_ean(served: set[tuple[object, object]], sor_id: int) -> object:
    return next(ean for sid, ean in served if sid == sor_id)


def test_eanlocationcode_replicates_and_is_queryable(
    clean_db: Engine, sim: tuple[SimulatorHandle, SnapshotModel]
) -> None:
    handle, _ = sim
    assert EANLOCATION in SOR2_OPTIONAL_DATATYPES
    assert EAN.is_document
    served = current_codes(handle.store)
    assert len(served) > 10  # institution owners and units with an EAN of their own

    settings = Settings(krs_datatypes=(EANLOCATION,), krs_url=handle.url)
    result = run_sync(clean_db, settings, kind="full", krs_url=handle.url, rebind=True)
    assert result.ok, result.error
    assert result.records == len(handle.store.table(EANLOCATION))

    assert replica_codes(clean_db) == served
    with clean_db.connect() as conn:
        rows = conn.execute(
            text("SELECT ean, region_code, from_date, to_date FROM sor.eanlocationcode")
        ).all()
        drift = conn.execute(
            text("SELECT drift FROM krs.sync_state WHERE datatype = 'eanlocationcode'")
        ).scalar_one()
        indexes = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": EAN.table}
        ).scalars()
        assert any("ean" in i.lower() and "ixm_" in i for i in indexes)
    assert all(isinstance(r.ean, int) and isinstance(r.from_date, date) for r in rows)
    assert all(r.region_code for r in rows)
    assert drift is None or drift == {"mapped_not_seen": [], "seen_not_mapped": []}, drift

    # The next night a unit's code is gone: the delta ends it in the replica too.
    handle, model = sim
    owner = next(u for u in model.units() if u.ean is not None and u.level != "IE")
    owner.ean = None
    model.snapshot_date += timedelta(days=1)
    load(handle.store, model)
    assert (owner.sor_id, served_ean(served, owner.sor_id)) not in current_codes(handle.store)
    delta = run_sync(clean_db, settings, kind="delta", krs_url=handle.url)
    assert delta.ok, delta.error
    assert replica_codes(clean_db) == current_codes(handle.store)
