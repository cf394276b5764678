"""`sorsync --version` through the real CLI: without a database, with a migrated one, with an
unreachable one (no password in the answer)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url

from sorsync import __version__
from sorsync.db import migrate
from sorsync.krs.feed import NATIVE_WALK
from tests.e2e.test_sync_cli import cli_env, sorsync


def test_version_without_a_database(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url, "http://127.0.0.1:9/unused")
    del env["SORSYNC_DATABASE_URL"]
    done = sorsync(["--version"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"sorsync {__version__}"
    assert lines[1].startswith("page walk: " + ("compiled" if NATIVE_WALK else "Python"))
    assert "not configured" in lines[2]


def test_version_with_a_database(database_url: str, tmp_path: Path) -> None:
    done = sorsync(["--version"], cli_env(database_url, "http://127.0.0.1:9/unused"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\nPostgreSQL 1" in done.stdout
    assert f"schema revision: {migrate.head_revision()} (at head)" in done.stdout


def test_version_with_an_unreachable_database(database_url: str, tmp_path: Path) -> None:
    url = make_url(database_url).set(password="s3cret", port=1)
    env = cli_env(url.render_as_string(hide_password=False), "http://127.0.0.1:9/unused")
    done = sorsync(["--version"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not reachable" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr
