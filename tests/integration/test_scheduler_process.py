"""`sorsync scheduler` as real processes: two of them against one database run the sync once,
each exports its metrics, and SIGTERM during a sync leaves whole pages that the next run
continues from."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text

from sorsync.datatypes import SYGEHUS
from sorsync.krs import wire
from sorsync.simulator.server import SimulatorHandle
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import (
    assert_replica_matches_store,
    replica_rows,
    source_values,
    sync_token,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scheduler_env(database_url: str, krs_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env.update(
        SORSYNC_DATABASE_URL=database_url,
        SORSYNC_KRS_URL=krs_url,
        SORSYNC_KRS_DATATYPES=SYGEHUS.key,
        SORSYNC_KRS_PAGE_SIZE="2",
        SORSYNC_KRS_TIMEOUT="5",
        SORSYNC_METRICS_PORT="0",
    )
    env.update(extra)
    return env


class Scheduler:
    """A `sorsync scheduler` subprocess logging JSON lines to a file."""

    def __init__(self, env: dict[str, str], cwd: Path, name: str) -> None:
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sorsync", "scheduler"],
            env=env,
            cwd=cwd,  # no stray .env file
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    started: list[Scheduler] = []

    def start(env: dict[str, str], name: str = "scheduler") -> Scheduler:
        s = Scheduler(env, tmp_path, name)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def token_after(handle: SimulatorHandle, n: int) -> str:
    rows = handle.store.table(SYGEHUS.key).page((0, 0), n)
    return wire.make_token(rows[-1].modified, rows[-1].pid)


def metric(text_: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text_.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def test_two_scheduler_processes_run_each_sync_once(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    start_scheduler: Callable[..., Scheduler],
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(20)])
    for _ in range(11):  # ~2 s of sync: far longer than the two processes' start-up skew
        simulator.faults.next("delay", seconds=0.2)
    ports = [free_port(), free_port()]
    procs = [
        start_scheduler(
            scheduler_env(database_url, simulator.url, SORSYNC_METRICS_PORT=str(port)),
            f"scheduler{i}",
        )
        for i, port in enumerate(ports)
    ]
    try:

        def both_done() -> bool:
            return all(
                p.logged("scheduled sync ok")
                or p.logged("sync skipped: another sorsync process is running one")
                for p in procs
            )

        wait_for(both_done, 30, "both schedulers to run or skip their first delta")
        ran = [p for p in procs if p.logged("scheduled sync ok")]
        skipped = [
            p for p in procs if p.logged("sync skipped: another sorsync process is running one")
        ]
        assert (len(ran), len(skipped)) == (1, 1)
        with clean_db.connect() as conn:
            assert conn.execute(text("SELECT kind, status FROM krs.sync_run")).all() == [
                ("delta", "ok")
            ]
        assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])

        # each process exports what it did on its own metrics port
        scraped = {}
        for p, port in zip(procs, ports, strict=True):
            scraped[p] = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        runner_metrics, skipper_metrics = scraped[ran[0]], scraped[skipped[0]]
        assert metric(runner_metrics, "sorsync_sync_runs_total", kind="delta", outcome="ok") == 1
        assert (
            metric(skipper_metrics, "sorsync_sync_runs_total", kind="delta", outcome="skipped") == 1
        )
        assert metric(runner_metrics, "sorsync_sync_records_total", datatype=SYGEHUS.key) == 20
        assert (
            metric(runner_metrics, "sorsync_sync_rows_total", datatype=SYGEHUS.key, op="inserted")
            == 20
        )
        last = metric(
            runner_metrics, "sorsync_sync_last_success_timestamp_seconds", datatype=SYGEHUS.key
        )
        assert last is not None
        assert abs(time.time() - last) < 60
        assert metric(runner_metrics, "sorsync_sync_run_duration_seconds_count", kind="delta") == 1
    finally:
        codes = [p.stop() for p in procs]
    assert codes == [0, 0]  # idle schedulers stop cleanly on SIGTERM
    for p in procs:
        assert p.logged("scheduler stopped")


def test_sigterm_during_a_sync_leaves_whole_pages_and_the_next_run_resumes(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    start_scheduler: Callable[..., Scheduler],
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(40)])
    for _ in range(25):
        simulator.faults.next("delay", seconds=0.15)
    env = scheduler_env(database_url, simulator.url)
    sched = start_scheduler(env)
    wait_for(
        lambda: (sync_token(clean_db, SYGEHUS) or "") >= token_after(simulator, 6),
        30,
        "three committed pages",
    )
    signalled = time.monotonic()
    assert sched.stop() == 0
    stop_seconds = time.monotonic() - signalled
    print(f"\nsorsync scheduler: stopped {stop_seconds:.2f} s after SIGTERM mid-sync")  # noqa: T201
    assert stop_seconds < 5  # one page in flight, not the whole sync

    # Only whole pages, exactly up to the committed token.
    token = sync_token(clean_db, SYGEHUS)
    rows = replica_rows(clean_db, SYGEHUS)
    assert 6 <= len(rows) < 40
    assert len(rows) % 2 == 0
    assert max(r["token"] for r in rows.values()) == token
    (stopped,) = sched.logged("sync stopped")
    assert "next run continues from the last committed page" in stopped["reason"]
    assert sched.logged("scheduler stopped")
    with clean_db.connect() as conn:
        (status, error) = conn.execute(text("SELECT status, error FROM krs.sync_run")).one()
    assert status == "failed"
    assert "interrupted" in error

    # The next scheduler continues from the committed token and ends equal to the source.
    simulator.faults.clear()
    again = start_scheduler(env, "again")
    wait_for(lambda: bool(again.logged("scheduled sync ok")), 30, "the resumed delta")
    assert again.stop() == 0
    (done,) = again.logged("scheduled sync ok")
    assert done["records"] == 40 - len(rows)
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])
