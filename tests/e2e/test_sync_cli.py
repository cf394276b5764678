"""`sorsync sync` / `sorsync status` as subprocesses against the simulator and PostgreSQL:
exit codes, messages, and what a failed or killed run leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sorsync.datatypes import SYGEHUS
from sorsync.db.locks import advisory_lock
from sorsync.krs import wire
from sorsync.simulator.server import SimulatorHandle
from sorsync.sync import LOCK_NAME
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import (
    assert_replica_matches_store,
    replica_rows,
    source_values,
    sync_token,
)


def cli_env(database_url: str, krs_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env.update(
        SORSYNC_DATABASE_URL=database_url,
        SORSYNC_KRS_URL=krs_url,
        SORSYNC_KRS_DATATYPES=SYGEHUS.key,
        SORSYNC_KRS_TIMEOUT="5",
    )
    env.update(extra)
    return env


def sorsync(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sorsync", *args],
        env=env,
        cwd=cwd,  # no stray .env file
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def token_after(handle: SimulatorHandle, n: int) -> str:
    rows = handle.store.table(SYGEHUS.key).page((0, 0), n)
    return wire.make_token(rows[-1].modified, rows[-1].pid)


@pytest.fixture
def six_rows(sim_add_rows: AddRows) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(6)])


@pytest.mark.usefixtures("six_rows")
def test_full_delta_and_status(
    clean_db: Engine, database_url: str, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    env = cli_env(database_url, simulator.url)
    done = sorsync(["sync", "--full", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["kind"], out["status"], out["records"]) == ("full", "ok", 6)
    (dt,) = out["datatypes"]
    assert dt["datatype"] == SYGEHUS.key
    assert dt["reconciliation"]["only_new"] == 6
    assert isinstance(out["run_id"], int)
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])

    delta = sorsync(["sync"], env, tmp_path)
    assert delta.returncode == 0, delta.stderr
    assert delta.stdout.startswith("delta sync ok:")
    assert "0 records" in delta.stdout

    status = sorsync(["status", "--json"], env, tmp_path)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["stale"] is False
    (st,) = report["datatypes"]
    assert (st["datatype"], st["rows"], st["token"]) == (
        SYGEHUS.key,
        6,
        token_after(simulator, 6),
    )
    assert report["last_run"]["kind"] == "delta"
    human = sorsync(["status"], env, tmp_path)
    assert human.returncode == 0
    assert "fresh" in human.stdout


FAULTS: list[tuple[str, dict[str, object], str]] = [
    ("replication_fault", {"code": "urn:stamdata:unauthorized-access"}, "whitelist"),
    ("replication_fault", {"code": "urn:stamdata:invalid-history-offset"}, "--full"),
    ("replication_fault", {"code": "urn:stamdata:internal-error"}, "internal error"),
    ("replication_fault", {"code": "urn:stamdata:unknown-view"}, "does not know"),
    ("replication_fault", {"code": "urn:stamdata:io-error"}, "urn:stamdata:io-error"),
    ("dgws_fault", {"code": "expired_idcard"}, "expired"),
    ("delay", {"seconds": 3.0}, "SORSYNC_KRS_TIMEOUT"),
    ("malformed_xml", {}, "XML"),
]


@pytest.mark.usefixtures("six_rows")
@pytest.mark.parametrize(
    ("kind", "params", "expected"), FAULTS, ids=[f"{k}-{p.get('code', '')}" for k, p, _ in FAULTS]
)
def test_fault_after_first_page_fails_cleanly(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    tmp_path: Path,
    kind: str,
    params: dict[str, object],
    expected: str,
) -> None:
    # The first call answers normally, the second one fails.
    simulator.faults.next("delay", seconds=0).next(kind, **params)
    env = cli_env(database_url, simulator.url, SORSYNC_KRS_PAGE_SIZE="2", SORSYNC_KRS_TIMEOUT="0.5")
    done = sorsync(["sync"], env, tmp_path)

    assert done.returncode == 1, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sync failed: ")
    assert SYGEHUS.key in last
    assert expected in last
    assert "last committed page" in last
    assert sorted(replica_rows(clean_db, SYGEHUS)) == [1, 2]
    assert sync_token(clean_db, SYGEHUS) == token_after(simulator, 2)


def test_lock_held_exits_75(database_url: str, clean_db: Engine, tmp_path: Path) -> None:
    env = cli_env(database_url, "http://127.0.0.1:9/unused")
    with advisory_lock(clean_db, LOCK_NAME):
        done = sorsync(["sync"], env, tmp_path)
    assert done.returncode == 75
    assert done.stdout == ""
    assert "another sorsync sync is running" in done.stderr


def test_configuration_problems_exit_2(
    database_url: str, empty_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(database_url, "http://127.0.0.1:9/unused")
    unknown = sorsync(["sync", "--datatype", "sor/Nope"], env, tmp_path)
    assert unknown.returncode == 2
    assert "'sor/Nope' is not a KRS datatype key" in unknown.stderr

    bad = sorsync(["sync"], {**env, "SORSYNC_KRS_PAGE_SIZE": "0"}, tmp_path)
    assert bad.returncode == 2
    assert "SORSYNC_KRS_PAGE_SIZE" in bad.stderr

    unmigrated = sorsync(["sync"], {**env, "SORSYNC_DATABASE_URL": empty_database_url}, tmp_path)
    assert unmigrated.returncode == 2
    assert "sorsync db upgrade" in unmigrated.stderr


def test_sigkill_mid_run_then_resume(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    tmp_path: Path,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(40)])
    for _ in range(25):
        simulator.faults.next("delay", seconds=0.15)
    env = cli_env(database_url, simulator.url, SORSYNC_KRS_PAGE_SIZE="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sorsync", "sync"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            token = sync_token(clean_db, SYGEHUS)
            if token is not None and token >= token_after(simulator, 6):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the sync did not commit three pages in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    # What survived is whole pages, and exactly the rows up to the committed token.
    token = sync_token(clean_db, SYGEHUS)
    assert token is not None
    rows = replica_rows(clean_db, SYGEHUS)
    assert 6 <= len(rows) < 40
    assert len(rows) % 2 == 0
    assert max(r["token"] for r in rows.values()) == token

    simulator.faults.clear()
    again = sorsync(["sync", "--json"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["records"] == 40 - len(rows)
    assert_replica_matches_store(clean_db, simulator.store, [SYGEHUS])
    with clean_db.connect() as conn:
        statuses = conn.execute(text("SELECT status, error FROM krs.sync_run ORDER BY id")).all()
    assert [s for s, _ in statuses] == ["failed", "ok"]
    assert "abandoned" in statuses[0][1]


def test_sigterm_records_an_interrupted_run(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    tmp_path: Path,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(20)])
    for _ in range(12):
        simulator.faults.next("delay", seconds=0.15)
    env = cli_env(database_url, simulator.url, SORSYNC_KRS_PAGE_SIZE="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sorsync", "sync"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # The run binds the datatype to its source at the start token first (sync.binding).
        while sync_token(clean_db, SYGEHUS) in (None, wire.START_TOKEN) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    with clean_db.connect() as conn:
        status, error = conn.execute(text("SELECT status, error FROM krs.sync_run")).one()
    assert status == "failed"
    assert error.startswith("interrupted"), stderr
    token = sync_token(clean_db, SYGEHUS)
    assert max(r["token"] for r in replica_rows(clean_db, SYGEHUS).values()) == token
