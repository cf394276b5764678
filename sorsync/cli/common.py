"""Helpers shared by commands: one-line exits, and an engine on a database at head."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import DBAPIError

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED


def fail(message: str, code: int) -> typer.Exit:
    """Print one line for a person on stderr; raise the returned Exit."""
    typer.echo(message, err=True)
    return typer.Exit(code)


@contextmanager
def migrated_engine(application_name: str) -> Iterator[Engine]:
    """A NullPool engine on a reachable database at the migrations' head, or a one-line exit.

    NullPool: every run and every advisory lock gets a connection of its own
    (docs/reference/python-stack.md §1.5).
    """
    from sorsync.db import migrate
    from sorsync.db.connect import database_url
    from sorsync.db.engine import make_engine

    # Alembic's MigrationContext announces itself at INFO on every revision check.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = database_url()
    where = make_url(url).render_as_string(hide_password=True)
    engine = make_engine(url, pool=False, application_name=application_name)
    try:
        try:
            current, head = migrate.current_revision(engine), migrate.head_revision()
        except DBAPIError as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            raise fail(
                f"cannot reach PostgreSQL at {where} ({first}); check SORSYNC_DATABASE_URL and"
                " that the server is running",
                EXIT_FAILED,
            ) from None
        if current != head:
            raise fail(
                f"the database schema is at revision {current or 'none'}, sorsync needs {head}:"
                " run `sorsync db upgrade` first",
                EXIT_CONFIG,
            )
        yield engine
    finally:
        engine.dispose()
