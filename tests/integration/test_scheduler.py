"""The scheduler's job in-process against PostgreSQL and the simulator over HTTP: the advisory
lock makes concurrent runs happen once, transient faults are retried, permanent ones are not,
and stopping ends a run between pages or cuts a backoff short."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from sqlalchemy import Engine, text
from structlog.testing import capture_logs

from sorsync.config import Settings, load_settings
from sorsync.datatypes import SYGEHUS
from sorsync.db.engine import make_engine
from sorsync.db.locks import advisory_lock
from sorsync.krs import wire
from sorsync.scheduler import (
    RetryPolicy,
    ServiceRunner,
    build_scheduler,
    run_with_retries,
    sync_job,
)
from sorsync.simulator.server import SimulatorHandle
from sorsync.sync import LOCK_NAME, Kind
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import (
    assert_replica_matches_store,
    replica_rows,
    source_values,
    sync_token,
)

FAST = RetryPolicy(attempts=3, first_wait=0.01, max_wait=0.05, lock_wait=0.05, lock_patience=20)


def settings_for(database_url: str, krs_url: str, **extra: Any) -> Settings:
    return load_settings(
        database_url=database_url,
        krs_url=krs_url,
        krs_datatypes=SYGEHUS.key,
        krs_page_size=2,
        krs_timeout=5,
        **extra,
    )


@pytest.fixture
def runner_engine(database_url: str) -> Iterator[Engine]:
    # Like `sorsync scheduler`: NullPool, every lock and run on a connection of its own.
    eng = make_engine(database_url, pool=False)
    yield eng
    eng.dispose()


def runs(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        return [
            (r.kind, r.status, r.error)
            for r in conn.execute(text("SELECT kind, status, error FROM krs.sync_run ORDER BY id"))
        ]


def token_after(handle: SimulatorHandle, n: int) -> str:
    rows = handle.store.table(SYGEHUS.key).page((0, 0), n)
    return wire.make_token(rows[-1].modified, rows[-1].pid)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


@pytest.mark.parametrize("kind", ["delta", "full"])
def test_two_schedulers_at_once_run_the_sync_once(
    kind: Kind,
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(8)])
    for _ in range(5):  # keeps the winner busy ~1 s, long after the loser asked for the lock
        simulator.faults.next("delay", seconds=0.2)
    settings = settings_for(database_url, simulator.url)
    stop = threading.Event()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    engines = [make_engine(database_url, pool=False) for _ in range(2)]

    def scheduler_tick(engine: Engine) -> None:
        runner = ServiceRunner(engine, settings, stop)
        barrier.wait()
        outcomes.append(sync_job(kind, runner, FAST, stop, runner.full_started_since))

    try:
        with capture_logs() as logs:
            threads = [threading.Thread(target=scheduler_tick, args=(e,)) for e in engines]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
    finally:
        for e in engines:
            e.dispose()

    assert sorted(outcomes) == ["ok", "skipped"]
    assert runs(clean_db) == [(kind, "ok", None)]  # exactly one run recorded
    (skip,) = events(logs, "sync skipped: another sorsync process is running one")
    assert skip["kind"] == kind
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])


def test_full_waits_for_a_running_delta_instead_of_skipping_the_night(
    clean_db: Engine,
    database_url: str,
    runner_engine: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(3)])
    stop = threading.Event()
    runner = ServiceRunner(runner_engine, settings_for(database_url, simulator.url), stop)
    outcome: list[str] = []
    with capture_logs() as logs:
        with advisory_lock(clean_db, LOCK_NAME):  # as if a delta were running elsewhere
            job = threading.Thread(
                target=lambda: outcome.append(
                    sync_job("full", runner, FAST, stop, runner.full_started_since)
                )
            )
            job.start()
            time.sleep(0.4)
            assert job.is_alive()  # waiting, not skipped
        job.join(timeout=20)
    assert outcome == ["ok"]
    assert events(logs, "full sync waits for the running sync to finish")
    assert runs(clean_db) == [("full", "ok", None)]
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])


def test_transient_fault_is_retried_then_succeeds(
    clean_db: Engine,
    database_url: str,
    runner_engine: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(5)])
    simulator.faults.next("http_status", status=503, body="Service Unavailable")
    stop = threading.Event()
    runner = ServiceRunner(runner_engine, settings_for(database_url, simulator.url), stop)

    with capture_logs() as logs:
        outcome = sync_job("delta", runner, FAST, stop)

    assert outcome == "ok"
    assert simulator.faults.injected["http_status"] == 1
    (retry,) = events(logs, "sync attempt failed; retrying")
    assert retry["attempt"] == 1
    assert "503" in retry["error"]
    assert retry["run_id"] is not None
    # the first attempt is on record as failed, the retry continued and finished
    assert [(k, s) for k, s, _ in runs(clean_db)] == [("delta", "failed"), ("delta", "ok")]
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])
    assert events(logs, "scheduled sync ok")[0]["records"] == 5


def test_authorisation_fault_is_not_retried_and_is_reported(
    clean_db: Engine,
    database_url: str,
    runner_engine: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(3)])
    stop = threading.Event()
    settings = settings_for(database_url, simulator.url)
    runner = ServiceRunner(runner_engine, settings, stop)
    assert sync_job("delta", runner, FAST, stop) == "ok"
    before = replica_rows(clean_db, SYGEHUS)
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(3, 6)])
    simulator.faults.next("replication_fault", code="urn:stamdata:unauthorized-access")

    with capture_logs() as logs:
        outcome = sync_job("delta", runner, FAST, stop)

    assert outcome == "failed"
    assert simulator.faults.injected["replication_fault"] == 1
    assert not events(logs, "sync attempt failed; retrying")
    (failed,) = events(logs, "sync failed; the previous replica keeps serving")
    assert failed["transient"] is False
    assert failed["retried"] is False
    assert "unauthorized-access" in failed["error"]
    assert "whitelist the CVR" in failed["error"]
    assert "fix the cause" in failed["advice"]
    (kind, status, error) = runs(clean_db)[-1]
    assert (kind, status, len(runs(clean_db))) == ("delta", "failed", 2)  # one attempt only
    assert error is not None
    assert "whitelist" in error
    # the previous replica keeps serving, untouched
    assert replica_rows(clean_db, SYGEHUS) == before

    # `sorsync status` / `/v1/status` show the error per datatype; the data is still fresh
    from sorsync.sync.status import status as replica_status

    report = replica_status(clean_db, settings)
    (st,) = report.datatypes
    assert st.last_error is not None
    assert "whitelist" in st.last_error
    assert st.rows == 3
    assert st.last_success_at is not None
    assert not report.stale
    assert report.last_run is not None
    assert report.last_run.status == "failed"


def test_stop_between_pages_then_resume(
    clean_db: Engine,
    database_url: str,
    runner_engine: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(20)])
    for _ in range(11):
        simulator.faults.next("delay", seconds=0.1)
    stop = threading.Event()
    settings = settings_for(database_url, simulator.url)
    outcome: list[str] = []
    job = threading.Thread(
        target=lambda: outcome.append(
            sync_job("delta", ServiceRunner(runner_engine, settings, stop), FAST, stop)
        )
    )
    job.start()
    deadline = time.monotonic() + 20
    while (sync_token(clean_db, SYGEHUS) or "") < token_after(simulator, 4):
        assert time.monotonic() < deadline, "no page was committed"
        time.sleep(0.02)
    stop.set()
    job.join(timeout=10)
    assert outcome == ["stopped"]

    rows = replica_rows(clean_db, SYGEHUS)
    token = sync_token(clean_db, SYGEHUS)
    assert 2 <= len(rows) < 20
    assert len(rows) % 2 == 0  # whole pages only
    assert max(r["token"] for r in rows.values()) == token
    ((_, status, error),) = runs(clean_db)
    assert status == "failed"
    assert error is not None
    assert "next run continues from the last committed page" in error

    simulator.faults.clear()
    stop.clear()
    with capture_logs() as logs:
        assert sync_job("delta", ServiceRunner(runner_engine, settings, stop), FAST, stop) == "ok"
    assert events(logs, "scheduled sync ok")[0]["records"] == 20 - len(rows)
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])


def test_stop_cuts_a_backoff_short(
    clean_db: Engine,
    database_url: str,
    runner_engine: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, 0)])
    simulator.faults.next("http_status", status=503)
    stop = threading.Event()
    runner = ServiceRunner(runner_engine, settings_for(database_url, simulator.url), stop)
    slow = RetryPolicy(attempts=5, first_wait=60, max_wait=60)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert sync_job("delta", runner, slow, stop) == "stopped"
    assert time.monotonic() - started < 10
    assert [s for _, s, _ in runs(clean_db)] == ["failed"]  # no second attempt was started


class Flaky:
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.calls = 0

    def __call__(self, kind: str) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_retry_gives_up_after_the_attempts() -> None:
    from sorsync.krs.errors import TransportError

    stop = threading.Event()
    flaky = Flaky([TransportError("down") for _ in range(5)])
    with pytest.raises(TransportError):
        run_with_retries("delta", flaky, FAST, stop)
    assert flaky.calls == FAST.attempts


def test_schedule_delta_now_and_full_in_copenhagen() -> None:
    from datetime import datetime

    from sorsync.scheduler import TIMEZONE

    stop = threading.Event()
    scheduler = build_scheduler(
        Flaky([]), delta_minutes=15, full_cron="30 3 * * *", stop=stop, policy=FAST
    )
    scheduler.start(paused=True)  # job defaults are applied at start; paused: nothing runs
    try:
        jobs = {j.id: j for j in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert set(jobs) == {"delta", "full"}
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 900)
    now = datetime(2026, 3, 28, 12, 0, tzinfo=TIMEZONE)  # the day before summer time
    full = jobs["full"].trigger.get_next_fire_time(None, now)
    assert (full.hour, full.minute, full.day, full.utcoffset().total_seconds()) == (
        3,
        30,
        29,
        7200,
    )
    delta = jobs["delta"].trigger.get_next_fire_time(now, now)
    assert delta is not None
    assert (delta - now).total_seconds() == 15 * 60
    # the first delta runs at once (catching up after downtime), not 15 minutes after start
    first = jobs["delta"].next_run_time
    assert (first - datetime.now(TIMEZONE)).total_seconds() < 5
