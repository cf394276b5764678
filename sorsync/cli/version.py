"""`sorsync --version`: the version, the page walk in use, and with a database configured the
PostgreSQL server and the schema revision (for bug reports and deploy checks)."""

from __future__ import annotations

import logging

import typer
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError

from sorsync import __version__
from sorsync.config import ConfigError, get_settings

CONNECT_TIMEOUT = 5  # seconds: --version must not hang on an unreachable server


def version_lines() -> list[str]:
    from sorsync.krs.feed import walk_in_use

    lines = [f"sorsync {__version__}", f"page walk: {walk_in_use()}"]
    try:
        url = get_settings().database_url
    except ConfigError as exc:
        return [*lines, f"database: not read ({str(exc).splitlines()[0]})"]
    if url is None:
        # Not started only to report on it: the embedded server is for the demo.
        return [*lines, "database: not configured (SORSYNC_DATABASE_URL; embedded PostgreSQL)"]
    return [*lines, *_database_lines(url)]


def _database_lines(url: str) -> list[str]:
    from sorsync.db import migrate
    from sorsync.db.engine import make_engine

    logging.getLogger("alembic").setLevel(logging.WARNING)
    where = make_url(url).render_as_string(hide_password=True)
    quick = make_url(url).update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
    engine = make_engine(
        quick.render_as_string(hide_password=False),
        pool=False,
        application_name="sorsync-version",
    )
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            server = conn.execute(text("SHOW server_version")).scalar_one()
        current, head = migrate.current_revision(engine), migrate.head_revision()
    except DBAPIError as exc:
        first = (str(exc.orig or exc).strip().splitlines() or ["unreachable"])[0]
        return [f"database: {where} not reachable ({first})"]
    finally:
        engine.dispose()
    state = "at head" if current == head else f"head is {head}: run `sorsync db upgrade`"
    return [f"PostgreSQL {server} at {where}", f"schema revision: {current or 'none'} ({state})"]


def show_version(value: bool) -> None:
    if value:
        typer.echo("\n".join(version_lines()))
        raise typer.Exit(0)
