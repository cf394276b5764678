"""Helpers shared by commands: one-line exits, and an engine on a database at head."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED
from sorsync.config import ConfigError, Settings, get_settings

DEMO_HELP = (
    "Sync the built-in KRS simulator's fictive demo data (as SORSYNC_DEMO=1); without it the"
    " demo runs only when neither SORSYNC_DATABASE_URL nor SORSYNC_KRS_URL is set."
)


def source_settings(demo: bool) -> Settings:
    """The settings of a command that syncs, or a one-line exit (2) when they name no KRS
    source: a configured database never silently gets the fictive demo data."""
    if demo:
        # Through the environment, so that the children of `sorsync run` are in demo mode too.
        os.environ["SORSYNC_DEMO"] = "1"
        get_settings.cache_clear()
    try:
        settings = get_settings()
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    problem = settings.source_problem()
    if problem is not None:
        raise fail(problem, EXIT_CONFIG)
    return settings


def fail(message: str, code: int) -> typer.Exit:
    """Print one line for a person on stderr; raise the returned Exit."""
    typer.echo(message, err=True)
    return typer.Exit(code)


def writable_url() -> str:
    """The database URL of a command that changes the schema, or a one-line exit: the server
    must be reachable and take writes (not a hot standby)."""
    from sorsync.db.connect import (
        connect_problem,
        database_url,
        read_only_problem,
        writer_url_problem,
    )
    from sorsync.db.engine import make_engine

    url = database_url()
    if (problem := writer_url_problem(url)) is not None:
        raise fail(problem, EXIT_CONFIG)
    engine = make_engine(url, pool=False, application_name="sorsync-migrate")
    try:
        problem = read_only_problem(engine)
    except DBAPIError as exc:
        raise fail(connect_problem(url, exc), EXIT_FAILED) from None
    finally:
        engine.dispose()
    if problem is not None:
        raise fail(problem, EXIT_CONFIG)
    return url


@contextmanager
def migrated_engine(application_name: str, *, writer: bool = False) -> Iterator[Engine]:
    """A NullPool engine on a reachable database at the migrations' head, or a one-line exit.
    A `writer` (sync, scheduler) also needs a server that takes writes: not a hot standby.

    NullPool: every run and every advisory lock gets a connection of its own
    (docs/reference/python-stack.md §1.5).
    """
    from sorsync.db import migrate
    from sorsync.db.connect import (
        connect_problem,
        database_url,
        read_only_problem,
        writer_url_problem,
    )
    from sorsync.db.engine import make_engine

    # Alembic's MigrationContext announces itself at INFO on every revision check.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = database_url()
    if writer and (problem := writer_url_problem(url)) is not None:
        raise fail(problem, EXIT_CONFIG)
    engine = make_engine(url, pool=False, application_name=application_name)
    try:
        try:
            current, head = migrate.current_revision(engine), migrate.head_revision()
        except DBAPIError as exc:
            raise fail(connect_problem(url, exc), EXIT_FAILED) from None
        if current != head:
            raise fail(
                f"the database schema is at revision {current or 'none'}, sorsync needs {head}:"
                " run `sorsync db upgrade` first",
                EXIT_CONFIG,
            )
        if writer and (problem := read_only_problem(engine)) is not None:
            raise fail(problem, EXIT_CONFIG)
        yield engine
    finally:
        engine.dispose()
