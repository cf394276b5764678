"""The scheduler process: the APScheduler jobs, the signals that stop it, its main loop.

APScheduler 3 with an in-memory job store and triggers defined here, in its own process (never
inside API workers): a delta every SORSYNC_DELTA_INTERVAL minutes (none for the file export)
and a full per SORSYNC_FULL_CRON (or SORSYNC_FILES_CRON), each tick a `sync_job`
(sorsync.scheduler.jobs).

Stopping (SIGTERM/SIGINT) sets an event, the running sync's cancellation (sorsync.sync.cancel),
which the engine checks after every committed page, so it ends on a page boundary: the engine
commits a page and its token together, and the next run continues from there. A second signal
exits at once; PostgreSQL then rolls back the page in flight, which is just as consistent, only
less polite.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from sorsync.config import Settings
from sorsync.logs import get_logger
from sorsync.scheduler.jobs import FullStartedSince, RetryPolicy, Runner, ServiceRunner, sync_job
from sorsync.scheduler.metrics import set_last_success, start_metrics
from sorsync.sync.results import Kind
from sorsync.sync.service import BuiltinSource

TIMEZONE = ZoneInfo("Europe/Copenhagen")


def _log() -> Any:
    return get_logger("sorsync.scheduler")  # fresh per call, as in sorsync.scheduler.metrics


class Activity:
    """Counts running jobs, so that a stopping process can wait for them to end."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._running == 0, timeout)


def _tracked_job(
    kind: Kind,
    runner: Runner,
    policy: RetryPolicy,
    stop: threading.Event,
    activity: Activity,
    full_started_since: FullStartedSince | None,
) -> None:
    with activity.running():
        sync_job(kind, runner, policy, stop, full_started_since)


def build_scheduler(
    runner: Runner,
    *,
    delta_minutes: int | None,
    full_cron: str,
    stop: threading.Event,
    policy: RetryPolicy | None = None,
    activity: Activity | None = None,
    delta_now: bool = True,
    full_started_since: FullStartedSince | None = None,
) -> BackgroundScheduler:
    """Two jobs: `delta` every `delta_minutes` (first one at once when `delta_now`: catch up
    after downtime) and `full` per `full_cron`, both in Europe/Copenhagen. Without
    `delta_minutes`, only the full (the file export: one import a night)."""
    scheduler = BackgroundScheduler(
        timezone=TIMEZONE,
        job_defaults={
            "coalesce": True,  # after a stall run once, not once per missed tick
            "max_instances": 1,  # a tick during its job's previous run is skipped (and logged)
            "misfire_grace_time": 15 * 60,
        },
    )
    args: dict[str, Any] = {
        "runner": runner,
        "policy": policy or RetryPolicy(),
        "stop": stop,
        "activity": activity or Activity(),
        "full_started_since": full_started_since,
    }
    delta_first: dict[str, Any] = {"next_run_time": datetime.now(TIMEZONE)} if delta_now else {}
    if delta_minutes is not None:  # None: a source with no deltas (the file export)
        scheduler.add_job(
            _tracked_job,
            IntervalTrigger(minutes=delta_minutes, timezone=TIMEZONE),
            kwargs={"kind": "delta", **args},
            id="delta",
            name="delta sync",
            **delta_first,
        )
    scheduler.add_job(
        _tracked_job,
        CronTrigger.from_crontab(full_cron, timezone=TIMEZONE),
        kwargs={"kind": "full", **args},
        id="full",
        name="full sync",
    )
    return scheduler


def install_signal_handlers(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT: stop scheduling and let a running sync end at its next page
    boundary. A second one: exit at once (PostgreSQL rolls back the page in flight)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            _log().warning("second stop signal: exiting now", signal=name)
            os._exit(1)
        _log().info(
            "stopping the scheduler; a running sync ends after its current page", signal=name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_scheduler(
    engine: Engine,
    settings: Settings,
    *,
    krs_url: str | None = None,
    policy: RetryPolicy | None = None,
    builtin: BuiltinSource | None = None,
) -> None:
    """Schedule syncs until SIGTERM/SIGINT, then wait for a running sync to reach a page
    boundary. Call from the main thread (signal handlers). `builtin`: the demo source."""
    stop = threading.Event()
    activity = Activity()
    runner = ServiceRunner(engine, settings, stop, krs_url, builtin)
    # The file export changes once a night: one import after its refresh window, no deltas.
    files = settings.uses_files and krs_url is None
    full_cron = settings.files_cron if files else settings.full_cron
    scheduler = build_scheduler(
        runner,
        delta_minutes=None if files else settings.delta_interval,
        full_cron=full_cron,
        stop=stop,
        policy=policy,
        activity=activity,
        full_started_since=runner.full_started_since,
    )
    install_signal_handlers(stop)
    set_last_success(engine, settings)
    start_metrics(settings)
    full_job = scheduler.get_job("full")
    _log().info(
        "scheduler started",
        delta_every_min=None if files else settings.delta_interval,
        full_cron=full_cron,
        source="files" if files else "krs",
        timezone=str(TIMEZONE),
        next_full=str(full_job.trigger.get_next_fire_time(None, datetime.now(TIMEZONE)))
        if full_job
        else None,
        datatypes=list(settings.datatype_keys),
    )
    scheduler.start()
    try:
        while not stop.wait(0.5):  # the signal handler sets it
            pass
    finally:
        stop.set()
        scheduler.shutdown(wait=False)  # no new runs; a running one ends at a page boundary
        activity.wait_idle()
    _log().info("scheduler stopped")
