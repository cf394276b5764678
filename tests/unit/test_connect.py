"""Database URLs for several servers (libpq's multi-host form) and the one-line errors about
them (sorsync/db/connect.py). The servers themselves: tests/replication/."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import make_url

from sorsync.config import Settings
from sorsync.db.connect import connect_problem, target_session_attrs, writer_url_problem

MULTI = (
    "postgresql://sorsync:s3cret@/sorsync?host=db1.internal,db2.internal&port=5432,5433"
    "&target_session_attrs=read-write"
)


def test_a_multi_host_url_survives_settings_and_sqlalchemy() -> None:
    url = Settings(_env_file=None, database_url=MULTI).database_url
    assert url is not None
    assert url.startswith("postgresql+psycopg://")
    parsed = make_url(url)
    assert parsed.query["host"] == "db1.internal,db2.internal"
    assert parsed.query["port"] == "5432,5433"
    assert target_session_attrs(url) == "read-write"
    # What psycopg is handed: the lists as libpq reads them.
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    _, params = PGDialect_psycopg().create_connect_args(parsed)  # type: ignore[no-untyped-call]
    assert params["host"] == "db1.internal,db2.internal"
    assert params["port"] == "5432,5433"


@pytest.mark.parametrize("attrs", ["read-only", "standby", "prefer-standby"])
def test_a_writer_refuses_a_url_asking_for_a_standby(attrs: str) -> None:
    problem = writer_url_problem(MULTI.replace("read-write", attrs))
    assert problem is not None
    assert f"target_session_attrs={attrs}" in problem
    assert "\n" not in problem


@pytest.mark.parametrize("attrs", ["read-write", "primary", "any", None])
def test_a_writer_takes_a_url_that_may_reach_the_primary(attrs: str | None) -> None:
    url = MULTI.replace("&target_session_attrs=read-write", "")
    if attrs is not None:
        url += f"&target_session_attrs={attrs}"
    assert writer_url_problem(url) is None


# libpq's words (PostgreSQL 15-18) for a multi-host attempt that found no server.
REFUSED = (
    'connection failed: connection to server at "10.0.0.2", port 5433 failed: Connection refused\n'
    "\tIs the server running on that host and accepting TCP/IP connections?\n"
    "Multiple connection attempts failed. All failures were:\n"
    "- host: 'db1.internal', port: '5432', hostaddr: '10.0.0.1': connection failed: connection"
    ' to server at "10.0.0.1", port 5432 failed: timeout expired\n'
    "- host: 'db2.internal', port: '5433', hostaddr: '10.0.0.2': connection failed: connection"
    ' to server at "10.0.0.2", port 5433 failed: Connection refused\n'
    "\tIs the server running on that host and accepting TCP/IP connections?"
)
WRONG_ROLE = (
    'connection failed: connection to server at "10.0.0.2", port 5433 failed: session is'
    " read-only\nMultiple connection attempts failed. All failures were:\n"
    "- host: 'db1.internal', port: '5432', hostaddr: '10.0.0.1': connection failed: connection"
    ' to server at "10.0.0.1", port 5432 failed: session is read-only\n'
    "- host: 'db2.internal', port: '5433', hostaddr: '10.0.0.2': connection failed: connection"
    ' to server at "10.0.0.2", port 5433 failed: session is read-only'
)


def test_no_server_reachable_names_each_one_on_one_line() -> None:
    line = connect_problem(MULTI, psycopg.OperationalError(REFUSED))
    assert "\n" not in line
    assert line.startswith("cannot reach PostgreSQL at postgresql://sorsync:***@/sorsync?")
    assert "10.0.0.1:5432: timeout expired" in line
    assert "10.0.0.2:5433: Connection refused" in line
    assert "s3cret" not in line


def test_servers_up_but_none_with_the_role_says_so() -> None:
    line = connect_problem(MULTI, psycopg.OperationalError(WRONG_ROLE))
    assert "\n" not in line
    assert line.startswith("no server in SORSYNC_DATABASE_URL fits target_session_attrs=read-write")
    assert "10.0.0.1:5432: session is read-only; 10.0.0.2:5433: session is read-only" in line


def test_a_single_server_error_keeps_its_first_line() -> None:
    url = "postgresql+psycopg://sorsync:s3cret@db.internal/sorsync"
    line = connect_problem(
        url, psycopg.OperationalError('FATAL:  database "sorsync" does not exist')
    )
    assert line == (
        "cannot reach PostgreSQL at postgresql+psycopg://sorsync:***@db.internal/sorsync"
        ' (FATAL:  database "sorsync" does not exist); check SORSYNC_DATABASE_URL and that the'
        " server is running"
    )
