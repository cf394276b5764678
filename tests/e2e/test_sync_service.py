"""`sorsync.sync.service`: the entry points `sorsync run` and the scheduler use."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from sorsync.config import Settings
from sorsync.datatypes import SYGEHUS
from sorsync.scheduler import ServiceRunner
from sorsync.simulator.server import SimulatorHandle
from sorsync.sync.service import SourceError, SyncFailed, krs_source, sync_if_empty
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import assert_replica_matches_store, source_values

SETTINGS = Settings(krs_datatypes=(SYGEHUS.key,), krs_timeout=5)


def test_sync_if_empty_runs_one_full(
    clean_db: Engine, database_url: str, simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(4)])
    first = sync_if_empty(database_url, simulator.url, SETTINGS)
    assert first is not None
    assert (first.kind, first.status, first.records) == ("full", "ok", 4)
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])
    assert sync_if_empty(database_url, simulator.url, SETTINGS) is None


def test_the_schedulers_runner_raises_a_failed_run(
    clean_db: Engine, simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(2)])
    runner = ServiceRunner(clean_db, SETTINGS, threading.Event(), simulator.url)
    assert runner("delta").records == 2

    simulator.faults.next("replication_fault", code="urn:stamdata:internal-error")
    with pytest.raises(SyncFailed) as caught:
        runner("delta")
    assert caught.value.transient
    assert "internal-error" in str(caught.value)
    assert caught.value.result.status == "failed"


def test_bad_krs_url_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="KRS client"), krs_source(SETTINGS, "ftp://x/y"):
        pass


def test_demo_mode_needs_the_builtin_source_from_the_cli() -> None:
    # Below the CLI nothing imports the simulator: without the CLI's demo source the demo
    # fallback says what to set instead of starting one.
    with pytest.raises(SourceError, match="SORSYNC_KRS_URL"), krs_source(Settings(demo=True)):
        pass
