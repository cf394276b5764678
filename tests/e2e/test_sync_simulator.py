"""Simulator → KRS client (real HTTP) → sync engine → PostgreSQL, in one process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine

from sorsync.datatypes import DATATYPES, DEMO_DATATYPES, SYGEHUS, SYGEHUSAFDELING, lookup
from sorsync.krs import wire
from sorsync.krs.client import KrsClient
from sorsync.simulator.demo import load_demo
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.store import Store
from sorsync.sync import sync
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import (
    CPH,
    assert_replica_matches_store,
    replica_rows,
    source_values,
    sync_token,
)

ALL = list(DATATYPES.values())
DEMO = [lookup(key) for key in DEMO_DATATYPES]  # what the demo serves: v1 and SOR2


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[KrsClient]:
    with KrsClient(simulator.url, timeout=10) as c:
        yield c


def fill(add: AddRows, n: int) -> None:
    for dt in ALL:
        add(dt.key, [source_values(dt, i) for i in range(n)])


def test_full_then_delta_mirrors_the_source(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows, client: KrsClient
) -> None:
    fill(sim_add_rows, 23)

    full = sync(clean_db, client, ALL, kind="full", page_size=10)
    assert full.ok, full.error
    assert full.records == 23 * len(ALL)
    assert_replica_matches_store(clean_db, simulator.store, ALL)

    delta = sync(clean_db, client, ALL, page_size=10)
    assert delta.ok, delta.error
    assert delta.records == 0

    # The next night's import: two units change in place (same PID), one closes, one is new.
    closed = datetime(2025, 3, 1, tzinfo=CPH)
    sim_add_rows(
        SYGEHUS.key,
        [source_values(SYGEHUS, 100)],
        update={
            1: source_values(SYGEHUS, 0, tag=" (renamed)"),
            2: source_values(SYGEHUS, 1, valid_to=closed),
        },
    )
    sim_add_rows(SYGEHUSAFDELING.key, update={5: source_values(SYGEHUSAFDELING, 4, tag="!")})

    delta = sync(clean_db, client, ALL, page_size=2)
    assert delta.ok, delta.error
    by_key = {d.key: d for d in delta.datatypes}
    assert (by_key[SYGEHUS.key].records, by_key[SYGEHUS.key].inserted) == (3, 1)
    assert by_key[SYGEHUS.key].updated == 2
    assert by_key[SYGEHUSAFDELING.key].records == 1
    assert_replica_matches_store(clean_db, simulator.store, ALL)
    last = max(simulator.store.table(SYGEHUS.key), key=lambda r: (r.modified, r.pid))
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(last.modified, last.pid)

    # A full afterwards finds nothing to repair.
    again = sync(clean_db, client, ALL, kind="full")
    assert again.ok, again.error
    for d in again.datatypes:
        assert d.reconciliation is not None
        assert d.reconciliation.differences == 0, (d.key, d.reconciliation)


@pytest.mark.parametrize("copy_rows", [True, False], ids=["native-walk", "python-walk"])
def test_both_walks_give_the_same_replica(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows, copy_rows: bool
) -> None:
    """The KRS client hands the sync COPY-ready rows (the native walk) unless told not to;
    either way, first full and delta, the replica equals the simulator's tables."""
    load_demo(simulator.store)
    with KrsClient(simulator.url, timeout=10, copy_rows=copy_rows) as client:
        full = sync(clean_db, client, ALL, kind="full", page_size=500)
        assert full.ok, full.error
        assert_replica_matches_store(clean_db, simulator.store, ALL)
        sim_add_rows(
            SYGEHUSAFDELING.key,
            [source_values(SYGEHUSAFDELING, 1)],
            update={1: source_values(SYGEHUSAFDELING, 0, tag=" (renamed)")},
        )
        delta = sync(clean_db, client, ALL)
    assert delta.ok, delta.error
    afdeling = next(d for d in delta.datatypes if d.key == SYGEHUSAFDELING.key)
    assert (delta.records, afdeling.inserted, afdeling.updated) == (2, 1, 1)
    assert_replica_matches_store(clean_db, simulator.store, ALL)


def _last_tokens(store: Store) -> dict[str, str]:
    out = {}
    for key, table in store.tables.items():
        last = table.last()
        assert last is not None, key
        out[key] = wire.make_token(last.modified, last.pid)
    return out


def test_a_restarted_demo_simulator_delivers_nothing_new(clean_db: Engine) -> None:
    """The bundled demo is stamped with its own CreatedAtTime, not the clock: a simulator
    restarted on it serves the same rows with the same tokens, so the next delta is empty."""
    first = serve_in_thread(Store())
    try:
        load_demo(first.store)
        with KrsClient(first.url, timeout=10) as client:
            full = sync(clean_db, client, DEMO, kind="full")
        assert full.ok, full.error
        assert full.records > 1000
        before = _last_tokens(first.store)
    finally:
        first.stop()

    second = serve_in_thread(Store())
    try:
        load_demo(second.store)
        # the same stamp whenever it is loaded: the snapshot's CreatedAtTime
        demo_time = int(datetime(2025, 1, 6, tzinfo=CPH).timestamp())
        assert {r.modified for t in second.store.tables.values() for r in t} == {demo_time}
        assert _last_tokens(second.store) == before
        with KrsClient(second.url, timeout=10) as client:
            delta = sync(clean_db, client, DEMO)
        assert delta.ok, delta.error
        assert delta.records == 0
        # the demo's datatypes (the simulator serves more: the optional SOR2 ones)
        assert {d.key: sync_token(clean_db, d) for d in DEMO} == {
            d.key: before[d.key] for d in DEMO
        }
        assert_replica_matches_store(clean_db, second.store, ALL)
    finally:
        second.stop()


def test_unknown_element_lands_in_extra(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows, client: KrsClient
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(3)])
    simulator.faults.next("unknown_element", name="nytFelt", value="ukendt")
    result = sync(clean_db, client, [SYGEHUS])
    assert result.ok, result.error
    assert result.datatypes[0].unknown_elements == ["nytFelt"]
    extras = [r["extra"] for r in replica_rows(clean_db, SYGEHUS).values()]
    assert extras == [{"nytFelt": "ukendt"}] * 3


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("backwards_token", {}),
        ("oversized_page", {"records": 7}),
        ("missing_token", {"index": 1}),
    ],
)
def test_broken_feed_stops_before_storing(
    clean_db: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    client: KrsClient,
    kind: str,
    params: dict[str, object],
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(9)])
    simulator.faults.next("delay", seconds=0).next(kind, **params)
    result = sync(clean_db, client, [SYGEHUS], page_size=3, prefetch=False)
    assert result.status == "failed"
    assert SYGEHUS.key in (result.error or "")
    # the first page is committed, nothing of the broken one
    rows = simulator.store.table(SYGEHUS.key).page((0, 0), 3)
    assert sync_token(clean_db, SYGEHUS) == wire.make_token(rows[-1].modified, rows[-1].pid)
