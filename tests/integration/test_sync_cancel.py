"""Cancelling a running sync through its `Cancellation` (sorsync.sync.cancel), against the
simulator over HTTP and PostgreSQL: a delta keeps its whole committed pages and the next run
continues from them, a full and a first full change nothing, and a run waiting for a slow page
stops without waiting for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from sorsync.datatypes import SYGEHUS, SYGEHUSAFDELING
from sorsync.db.locks import advisory_lock
from sorsync.krs import wire
from sorsync.krs.client import KrsClient
from sorsync.simulator.server import SimulatorHandle
from sorsync.sync import LOCK_NAME, Kind, RunResult, sync
from sorsync.sync.cancel import Cancellation
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import (
    assert_replica_matches_store,
    replica_rows,
    source_values,
    sync_token,
)

DTS = [SYGEHUS, SYGEHUSAFDELING]


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[KrsClient]:
    with KrsClient(simulator.url, timeout=10) as c:
        yield c


def token_after(simulator: SimulatorHandle, n: int) -> str:
    rows = simulator.store.table(SYGEHUS.key).page((0, 0), n)
    return wire.make_token(rows[-1].modified, rows[-1].pid)


def sync_run(engine: Engine) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, error FROM krs.sync_run ORDER BY id DESC")).first()
    assert row is not None
    return row[0], row[1]


def in_thread(
    engine: Engine, client: KrsClient, kind: Kind, cancel: Cancellation
) -> tuple[threading.Thread, list[RunResult]]:
    out: list[RunResult] = []
    job = threading.Thread(
        target=lambda: out.append(sync(engine, client, DTS, kind=kind, page_size=2, cancel=cancel))
    )
    job.start()
    return job, out


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def fill(sim_add_rows: AddRows, n: int) -> None:
    for dt in DTS:
        sim_add_rows(dt.key, [source_values(dt, i) for i in range(n)])


def test_a_cancelled_delta_keeps_whole_pages_and_the_next_run_continues(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows, client: KrsClient
) -> None:
    fill(sim_add_rows, 20)
    for _ in range(25):
        simulator.faults.next("delay", seconds=0.1)
    cancel = Cancellation()
    job, out = in_thread(clean_db, client, "delta", cancel)
    wait_for(lambda: (sync_token(clean_db, SYGEHUS) or "") >= token_after(simulator, 4), "pages")
    cancel.cancel("stopped by the test")
    job.join(timeout=10)
    assert not job.is_alive()

    (result,) = out
    assert result.interrupted
    assert not result.ok
    assert result.error == "interrupted: stopped by the test"
    assert sync_run(clean_db) == ("failed", "interrupted: stopped by the test")
    rows = replica_rows(clean_db, SYGEHUS)
    assert 4 <= len(rows) < 20
    assert len(rows) % 2 == 0  # whole pages only
    assert max(r["token"] for r in rows.values()) == sync_token(clean_db, SYGEHUS)
    assert replica_rows(clean_db, SYGEHUSAFDELING) == {}  # never reached
    with advisory_lock(clean_db, LOCK_NAME):
        pass  # released

    simulator.faults.clear()
    again = sync(clean_db, client, DTS, page_size=2)
    assert again.ok, again.error
    assert again.records == 40 - len(rows)
    assert_replica_matches_store(clean_db, simulator.store, DTS)


@pytest.mark.parametrize("first", [True, False], ids=["first-full", "full"])
def test_a_cancelled_full_changes_nothing(
    first: bool,
    clean_db: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    client: KrsClient,
) -> None:
    fill(sim_add_rows, 10)
    if not first:
        assert sync(clean_db, client, DTS, kind="full", page_size=5).ok
    before = {dt.key: replica_rows(clean_db, dt) for dt in DTS}
    tokens = {dt.key: sync_token(clean_db, dt) for dt in DTS}
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(10, 20)])
    for _ in range(30):
        simulator.faults.next("delay", seconds=0.1)
    cancel = Cancellation()
    pages: list[str] = []
    out: list[RunResult] = []

    def watch(progress: object) -> None:
        pages.append(str(progress))

    job = threading.Thread(
        target=lambda: out.append(
            sync(clean_db, client, DTS, kind="full", page_size=2, cancel=cancel, on_progress=watch)
        )
    )
    job.start()
    wait_for(lambda: len(pages) >= 3, "three loaded pages")
    cancel.cancel()
    job.join(timeout=10)

    (result,) = out
    assert result.interrupted
    status, error = sync_run(clean_db)
    assert status == "failed"
    assert error is not None
    assert error.startswith("interrupted")
    assert {dt.key: replica_rows(clean_db, dt) for dt in DTS} == before
    assert {dt.key: sync_token(clean_db, dt) for dt in DTS} == tokens

    simulator.faults.clear()
    assert sync(clean_db, client, DTS, kind="full", page_size=5).ok
    assert_replica_matches_store(clean_db, simulator.store, DTS)


def test_a_run_waiting_for_a_slow_page_stops_without_it(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows, client: KrsClient
) -> None:
    fill(sim_add_rows, 6)
    # The KRS client asks for page N+1 before page N is handed on (sorsync.sync.pages), so the
    # third request is the one in flight once the first page is stored.
    simulator.faults.next("delay", seconds=0.05)
    simulator.faults.next("delay", seconds=0.05)
    simulator.faults.next("delay", seconds=8)
    cancel = Cancellation()
    job, out = in_thread(clean_db, client, "delta", cancel)
    wait_for(lambda: sync_token(clean_db, SYGEHUS) == token_after(simulator, 2), "the first page")
    time.sleep(0.3)  # the second request is in flight
    cancelled = time.monotonic()
    cancel.cancel()
    job.join(timeout=10)
    assert time.monotonic() - cancelled < 5  # not the 8 s the page takes
    (result,) = out
    assert result.interrupted
    assert len(replica_rows(clean_db, SYGEHUS)) == 2
    simulator.faults.clear()
