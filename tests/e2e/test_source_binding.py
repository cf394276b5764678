"""Demo only when asked for, and a replica bound to its source: `sorsync sync|scheduler|run` and
`sorsync status` as subprocesses against real simulators and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sorsync.cli.demo import simulator_identity
from sorsync.config import Settings
from sorsync.datatypes import SYGEHUS
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.store import Store
from sorsync.sync.binding import ForeignSource, endpoint_identity
from sorsync.sync.service import run_sync
from tests.e2e.test_sync_cli import cli_env, sorsync
from tests.fixtures.simulator import AddRows, add_rows
from tests.fixtures.sync import replica_rows, source_values, sync_token


def unconfigured_source_env(database_url: str) -> dict[str, str]:
    env = cli_env(database_url, "")
    del env["SORSYNC_KRS_URL"]
    return env


def run_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM krs.sync_run")).scalar_one())


@pytest.mark.parametrize("command", [["sync"], ["sync", "--full"], ["scheduler"], ["run"]])
def test_a_configured_database_without_krs_url_is_refused(
    clean_db: Engine, database_url: str, tmp_path: Path, command: list[str]
) -> None:
    done = sorsync(command, unconfigured_source_env(database_url), tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert "SORSYNC_KRS_URL" in line
    assert "SORSYNC_DEMO=1" in line
    assert run_count(clean_db) == 0
    assert replica_rows(clean_db, SYGEHUS) == {}


def test_demo_and_krs_url_together_are_refused(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url, "http://127.0.0.1:9/unused", SORSYNC_DEMO="1")
    done = sorsync(["sync"], env, tmp_path)
    assert done.returncode == 2
    assert "unset one of them" in done.stderr


def test_demo_when_asked_for_is_marked_fictive(
    clean_db: Engine, database_url: str, tmp_path: Path
) -> None:
    env = unconfigured_source_env(database_url)
    first = sorsync(["sync", "--demo", "--json"], env, tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["fictive"] is True
    assert out["source"] == simulator_identity()
    assert out["records"] > 0

    # Another start of the built-in simulator (another port) is the same source.
    again = sorsync(["sync", "--json"], {**env, "SORSYNC_DEMO": "1"}, tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["records"] == 0

    report = json.loads(sorsync(["status", "--json"], env, tmp_path).stdout)
    assert report["fictive"] is True
    (st,) = report["datatypes"]
    assert st["source"] == f"{simulator_identity()} {SYGEHUS.key}"
    assert report["last_run"]["source"] == simulator_identity()
    human = sorsync(["status"], env, tmp_path).stdout
    assert "FICTIVE demo data" in human.splitlines()[0]
    assert f"source: {simulator_identity()}" in human
    # Analysts see it too: the views' comments say so.
    with clean_db.connect() as conn:
        comment = conn.execute(text("SELECT obj_description('sor.unit'::regclass)")).scalar_one()
    assert comment.startswith("FICTIVE DEMO DATA")


@pytest.fixture
def other_simulator() -> Iterator[SimulatorHandle]:
    handle = serve_in_thread(Store())
    try:
        yield handle
    finally:
        handle.stop()


def test_a_delta_from_another_source_is_refused_until_a_full_rebinds(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    other_simulator: SimulatorHandle,
    tmp_path: Path,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(6)])
    # The other source numbers its PIDs alike: a delta would overwrite these rows by PID. One
    # row fewer stays within the full sync's shrink guard (SORSYNC_FULL_MAX_SHRINK).
    add_rows(
        other_simulator.store,
        SYGEHUS.key,
        [source_values(SYGEHUS, i, tag=" (B)") for i in range(5)],
    )
    env_a = cli_env(database_url, simulator.url)
    env_b = cli_env(database_url, other_simulator.url.replace("://", "://user:hunter2@"))
    assert sorsync(["sync", "--full"], env_a, tmp_path).returncode == 0
    before_rows, before_token = replica_rows(clean_db, SYGEHUS), sync_token(clean_db, SYGEHUS)
    runs = run_count(clean_db)

    refused = sorsync(["sync"], env_b, tmp_path)
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    (line,) = refused.stderr.strip().splitlines()
    assert endpoint_identity(simulator.url) in line
    assert endpoint_identity(other_simulator.url) in line
    assert "sorsync sync --full" in line
    assert "hunter2" not in refused.stderr + refused.stdout
    assert replica_rows(clean_db, SYGEHUS) == before_rows
    assert sync_token(clean_db, SYGEHUS) == before_token
    assert run_count(clean_db) == runs  # not even a run row

    full = sorsync(["sync", "--full", "--json"], env_b, tmp_path)
    assert full.returncode == 0, full.stderr
    (dt,) = json.loads(full.stdout)["datatypes"]
    assert dt["reconciliation"]["only_old"] == 1
    assert dt["reconciliation"]["changed"] == 5
    assert len(replica_rows(clean_db, SYGEHUS)) == 5

    report = json.loads(sorsync(["status", "--json"], env_b, tmp_path).stdout)
    (st,) = report["datatypes"]
    assert st["source"] == f"{endpoint_identity(other_simulator.url)} {SYGEHUS.key}"
    assert st["fictive"] is False
    assert "hunter2" not in json.dumps(report)
    assert sorsync(["sync"], env_b, tmp_path).returncode == 0
    assert sorsync(["sync"], env_a, tmp_path).returncode == 3


def test_a_scheduled_full_does_not_rebind(
    clean_db: Engine,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    other_simulator: SimulatorHandle,
) -> None:
    # Two schedulers configured differently on one database: the second one's runs, fulls
    # included, are refused instead of flipping the replica between sources.
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(3)])
    add_rows(other_simulator.store, SYGEHUS.key, [source_values(SYGEHUS, 9)])
    settings_a = Settings(krs_datatypes=(SYGEHUS.key,), krs_url=simulator.url)
    settings_b = Settings(krs_datatypes=(SYGEHUS.key,), krs_url=other_simulator.url)
    assert run_sync(clean_db, settings_a, kind="full", krs_url=simulator.url).ok
    runs = run_count(clean_db)
    for kind in ("delta", "full"):
        with pytest.raises(ForeignSource, match="sorsync sync --full"):
            run_sync(clean_db, settings_b, kind=kind, krs_url=other_simulator.url)
    assert run_count(clean_db) == runs
    assert len(replica_rows(clean_db, SYGEHUS)) == 3


def test_endpoint_identity_keeps_no_secrets() -> None:
    assert (
        endpoint_identity("HTTPS://u:p@Host.example:8443/ws/Replication?apikey=s3&view=a#x")
        == "https://host.example:8443/ws/Replication?apikey=***&view=a"
    )
