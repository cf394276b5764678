"""Helpers shared by commands: one-line exits, and an engine on a database at head."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine, make_url
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
