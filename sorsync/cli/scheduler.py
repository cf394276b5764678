"""`sorsync scheduler`: the scheduler only (delta every SORSYNC_DELTA_INTERVAL minutes, full per
SORSYNC_FULL_CRON); see `sorsync.scheduler`."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from sorsync.cli.app import app
from sorsync.cli.common import DEMO_HELP, migrated_engine, source_settings
from sorsync.logs import configure


@app.command("scheduler")
def scheduler_command(
    demo: Annotated[bool, typer.Option("--demo", help=DEMO_HELP)] = False,
) -> None:
    """Run delta and full syncs on schedule (the scheduler only).

    A delta every SORSYNC_DELTA_INTERVAL minutes (the first at once), a full per
    SORSYNC_FULL_CRON (Europe/Copenhagen), until SIGTERM or Ctrl-C. Any number of schedulers
    may run against one database: a PostgreSQL advisory lock makes each sync run once.
    Prometheus metrics on SORSYNC_METRICS_PORT (0 = off). A delta (or scheduled full) against
    a source other than the replica's is refused and logged; `sorsync sync --full` rebinds.
    """
    configure()
    settings = source_settings(demo)
    # They narrate routine steps at INFO (revision checks, "Added job"); warnings still show,
    # e.g. a run skipped because the previous one is still running.
    for name in ("alembic", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from sorsync.cli.demo import BUILTIN
    from sorsync.scheduler import run_scheduler

    with migrated_engine("sorsync-scheduler", writer=True) as engine:
        run_scheduler(engine, settings, krs_url=settings.krs_url, builtin=BUILTIN)
