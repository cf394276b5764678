"""Quiet, useful output through the real CLI: a failed sync's reason on stdout and in --json,
one warning for a mistyped SORSYNC_ variable, an invalid value traced to .env, and the embedded
PostgreSQL's INFO narration hidden off a terminal unless SORSYNC_LOG_LEVEL=debug."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine

from sorsync.datatypes import SYGEHUS
from sorsync.simulator.server import SimulatorHandle
from tests.e2e.test_sync_cli import cli_env, sorsync
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import source_values


def test_a_failed_sync_says_why_on_stdout(
    clean_db: Engine,
    database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    tmp_path: Path,
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(2)])
    env = cli_env(database_url, simulator.url)
    simulator.faults.next("replication_fault", code="urn:stamdata:unauthorized-access")
    human = sorsync(["sync"], env, tmp_path)
    assert human.returncode == 1
    reason = next(line for line in human.stdout.splitlines() if "reason:" in line)
    assert SYGEHUS.key in reason
    assert "whitelist" in reason

    simulator.faults.next("replication_fault", code="urn:stamdata:unauthorized-access")
    machine = sorsync(["sync", "--json"], env, tmp_path)
    assert machine.returncode == 1
    out = json.loads(machine.stdout)
    assert out["status"] == "failed"
    assert "whitelist" in out["error"]


def test_a_mistyped_variable_warns_once(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url, "http://127.0.0.1:9/unused", SORSYNC_DELTA_INTERVALL="5")
    done = sorsync(["status"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "SORSYNC_DELTA_INTERVALL" in line]
    assert warnings == [
        "warning: SORSYNC_DELTA_INTERVALL is not a sorsync setting and is ignored;"
        " did you mean SORSYNC_DELTA_INTERVAL?"
    ]
    quiet = sorsync(["status"], cli_env(database_url, "http://127.0.0.1:9/unused"), tmp_path)
    assert "warning:" not in quiet.stderr


def test_an_invalid_value_from_dotenv_says_so(database_url: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SORSYNC_KRS_PAGE_SIZE=0\nSORSYNC_API_PORTT=1\n")
    done = sorsync(["sync"], cli_env(database_url, "http://127.0.0.1:9/unused"), tmp_path)
    assert done.returncode == 2
    assert "SORSYNC_KRS_PAGE_SIZE=0 (read from .env):" in done.stderr
    from_environment = sorsync(
        ["sync"],
        cli_env(database_url, "http://127.0.0.1:9/unused", SORSYNC_KRS_PAGE_SIZE="0"),
        tmp_path,
    )
    assert "SORSYNC_KRS_PAGE_SIZE=0:" in from_environment.stderr


def test_embedded_postgres_is_quiet_unless_debug(database_url: str, tmp_path: Path) -> None:
    # Each run gets a data directory of its own: a fresh server always narrates its start
    # (joining a running one may not).
    def upgrade(where: str, **extra: str) -> str:
        env = cli_env(database_url, "http://127.0.0.1:9/unused", XDG_DATA_HOME=where, **extra)
        del env["SORSYNC_DATABASE_URL"]
        done = sorsync(["db", "upgrade"], env, tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "embedded_postgres" in upgrade(str(tmp_path / "loud"), SORSYNC_LOG_LEVEL="debug")
    assert "embedded_postgres" not in upgrade(str(tmp_path / "quiet"))
