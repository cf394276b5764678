"""The scheduler process: delta syncs every few minutes, a full sync after NSP's nightly import.

APScheduler 3 with an in-memory job store and triggers defined here, in its own process (never
inside API workers). Each run takes the PostgreSQL advisory lock of the sync engine, so any
number of scheduler processes on any number of machines run each sync once; the others log a
skip. Transient failures (network, timeouts, HTTP 5xx, `internal-error`, a lost database
connection) are retried with exponential backoff; permanent ones (authorisation, security
faults, configuration) are reported at once and not retried.

Stopping (SIGTERM/SIGINT) sets a flag that the running sync checks after every committed page,
so it ends on a page boundary: the engine commits a page and its token together, and the next
run continues from there. A second signal exits at once; PostgreSQL then rolls back the page in
flight, which is just as consistent, only less polite.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine, text
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity import wait_exponential as _wait_exponential

from sorsync.config import Settings
from sorsync.db.locks import LockHeld
from sorsync.logs import get_logger
from sorsync.sync.engine import SHRINK_REFUSED, Kind, Progress, RunResult
from sorsync.sync.retry import is_transient
from sorsync.sync.service import BuiltinSource, SyncFailed, run_sync

TIMEZONE = ZoneInfo("Europe/Copenhagen")
Outcome = Literal["ok", "failed", "skipped", "stopped"]

# Our own registry: the scheduler exports only its own series (no process/GC collectors that
# would clash with the API's names if both were scraped into one job).
REGISTRY = CollectorRegistry()
RUNS = Counter(
    "sorsync_sync_runs_total",
    "Scheduled sync runs by kind and outcome (ok, failed, skipped: another process held the"
    " lock, stopped: the scheduler was stopping).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "sorsync_sync_failures_total",
    "Failed sync attempts by kind and whether the error was transient (retried).",
    ["kind", "transient"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "sorsync_sync_run_duration_seconds",
    "Wall time of sync runs that ran (including retries).",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
RECORDS = Counter(
    "sorsync_sync_records_total",
    "Records received from KRS, by datatype.",
    ["datatype"],
    registry=REGISTRY,
)
ROWS = Counter(
    "sorsync_sync_rows_total",
    "Rows applied to the replica, by datatype and operation (inserted, updated, deleted).",
    ["datatype", "op"],
    registry=REGISTRY,
)
DRIFT = Gauge(
    "sorsync_feed_field_drift",
    "Fields of a document datatype (SOR2) that differ from the mapping in the last sync that"
    " received records: 'missing' = mapped but not seen, 'unmapped' = seen but not mapped (alert"
    " on missing > 0: a view column is empty; compare with `sorsync krs describe`).",
    ["datatype", "kind"],
    registry=REGISTRY,
)
SHRINK_REFUSALS = Counter(
    "sorsync_sync_shrink_refused_total",
    "Full syncs refused by the shrink guard (the result would remove more than"
    " SORSYNC_FULL_MAX_SHRINK of a datatype's rows), by datatype: alert on any; a person decides"
    " (sorsync sync --full --allow-shrink). The scheduler never allows it by itself.",
    ["datatype"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "sorsync_sync_last_success_timestamp_seconds",
    "Unix time of the last successful sync of a datatype (alert when older than 2 × the delta"
    " interval).",
    ["datatype"],
    registry=REGISTRY,
)


def _log() -> Any:
    # A fresh proxy per call: a module-level logger would keep the configuration of its first
    # use (cache_logger_on_first_use), which tests and `configure()` may change later.
    return get_logger("sorsync.scheduler")


class SyncStopped(BaseException):
    """Raised after a committed page when the scheduler is stopping.

    A BaseException, so the engine treats it like Ctrl-C: nothing is retried or marked as a
    datatype error, the run is recorded as interrupted and the lock is released.
    """


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first included
    first_wait: float = 10.0  # seconds before the second attempt; doubles per attempt
    max_wait: float = 300.0
    # A full that finds the lock held by a delta waits for it (a delta is over in seconds or
    # minutes) instead of skipping the night; a full started by another process ends the wait.
    lock_wait: float = 30.0  # seconds between lock attempts of a waiting full
    lock_patience: float = 3600.0  # give up (skip) after this long


Runner = Callable[[Kind], RunResult]
FullStartedSince = Callable[[datetime], bool]
# A full started this long before a tick counts as that tick's full (clock skew between
# machines and the database; fulls are daily, so no real run is mistaken for another).
FULL_SLACK = timedelta(minutes=10)


@dataclass
class ServiceRunner:
    """One sync run from configuration (`sorsync.sync.service.run_sync`) that stops between
    pages once `stop` is set. A failed run raises `SyncFailed` (`.transient` says whether to
    retry); another process syncing raises `LockHeld`."""

    engine: Engine
    settings: Settings
    stop: threading.Event
    krs_url: str | None = None
    builtin: BuiltinSource | None = None  # the demo source (sorsync.sync.service.krs_source)

    def __call__(self, kind: Kind) -> RunResult:
        if self.stop.is_set():
            raise SyncStopped("the scheduler is stopping; not starting a run")

        def checkpoint(progress: Progress) -> None:
            # Called right after a page and its token were committed.
            if progress.phase == "load" and self.stop.is_set():
                raise SyncStopped(
                    "stopped between pages; the next run continues from the last committed page"
                )

        result = run_sync(
            self.engine,
            self.settings,
            kind=kind,
            krs_url=self.krs_url,
            on_progress=checkpoint,
            builtin=self.builtin,
        )
        if not result.ok:
            raise SyncFailed(result)
        return result

    def full_started_since(self, since: datetime) -> bool:
        """Has any process started a full sync since `since` (whatever became of it)?"""
        with self.engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM krs.sync_run"
                    " WHERE kind = 'full' AND started_at >= :since)"
                ),
                {"since": since},
            ).scalar_one()
        return bool(found)


def run_with_retries(
    kind: Kind, runner: Runner, policy: RetryPolicy, stop: threading.Event
) -> RunResult:
    """Run `runner(kind)`, retrying transient failures with exponential backoff.

    The wait between attempts ends early when `stop` is set, so SIGTERM never waits out a
    backoff; no further attempt is made then.
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        FAILURES.labels(kind, "true").inc()
        _record_partial(exc)
        _log().warning(
            "sync attempt failed; retrying",
            kind=kind,
            attempt=state.attempt_number,
            of=policy.attempts,
            run_id=_run_id(exc),
            error=str(exc),
            retry_in_s=round(state.upcoming_sleep, 2),
        )

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_wait_exponential(multiplier=policy.first_wait, max=policy.max_wait),
        retry=retry_if_exception(lambda e: is_transient(e) and not stop.is_set()),
        before_sleep=before_sleep,
        sleep=_interruptible(stop),
        reraise=True,
    )
    return retrying(runner, kind)


def _interruptible(stop: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        stop.wait(seconds)  # returns early when stopping

    return sleep


def _run_id(exc: BaseException | None) -> int | None:
    return exc.result.run_id if isinstance(exc, SyncFailed) else None


def _record(result: RunResult) -> None:
    """Metrics and one log line per datatype of a run that ran (ok or failed)."""
    now = time.time()
    for d in result.datatypes:
        RECORDS.labels(d.key).inc(d.records)
        for op, n in (("inserted", d.inserted), ("updated", d.updated), ("deleted", d.deleted)):
            ROWS.labels(d.key, op).inc(n)
        if d.status == "ok":
            LAST_SUCCESS.labels(d.key).set(now)
        if d.drift is not None:
            DRIFT.labels(d.key, "missing").set(len(d.drift.missing))
            DRIFT.labels(d.key, "unmapped").set(len(d.drift.unmapped))
        if d.status == "failed" and SHRINK_REFUSED in (d.error or ""):
            SHRINK_REFUSALS.labels(d.key).inc()
            _log().error(
                "ALERT: the nightly full was refused by the shrink guard; the replica is"
                " unchanged and stays so until a person decides",
                datatype=d.key,
                error=d.error,
            )
        if d.status == "ok" and d.records == 0 and result.kind == "delta":
            continue  # the usual quiet delta: the run's own line says enough
        _log().info(
            "datatype synced" if d.status == "ok" else "datatype not synced",
            run_id=result.run_id,
            kind=result.kind,
            datatype=d.key,
            status=d.status,
            pages=d.pages,
            records=d.records,
            inserted=d.inserted,
            updated=d.updated,
            deleted=d.deleted,
            duration_s=round(d.seconds + d.apply_seconds, 3),
            token=d.token,
            error=d.error,
        )


def _record_partial(exc: BaseException | None) -> None:
    # A failed run may still have synced some datatypes (a fault concerning one datatype).
    if isinstance(exc, SyncFailed):
        _record(exc.result)


def _run_or_wait_for_lock(
    kind: Kind,
    runner: Runner,
    policy: RetryPolicy,
    stop: threading.Event,
    full_started_since: FullStartedSince | None,
) -> RunResult:
    """A delta that finds the lock held is skipped (the next one comes soon). A full waits
    for the lock, unless some process has started a full since this tick: then that one was
    this tick's full, and LockHeld is raised to skip."""
    since = datetime.now(UTC) - FULL_SLACK
    patience = time.monotonic() + policy.lock_patience
    waited = False
    while True:
        if waited and full_started_since is not None and full_started_since(since):
            raise LockHeld("another process has run this full sync")
        try:
            return run_with_retries(kind, runner, policy, stop)
        except LockHeld:
            if kind != "full" or full_started_since is None or time.monotonic() > patience:
                raise
            if full_started_since(since):
                raise
            if not waited:
                _log().info("full sync waits for the running sync to finish", kind=kind)
            waited = True
            if stop.wait(policy.lock_wait):
                raise SyncStopped(
                    "the scheduler is stopping; the full sync did not start"
                ) from None


def sync_job(
    kind: Kind,
    runner: Runner,
    policy: RetryPolicy,
    stop: threading.Event,
    full_started_since: FullStartedSince | None = None,
) -> Outcome:
    """One scheduled tick. Never raises: the scheduler must keep running whatever happens.
    A failed run leaves the replica as it was after its last committed page (a failed full
    changes nothing), so the API keeps serving the previous data."""
    started = time.monotonic()
    try:
        result = _run_or_wait_for_lock(kind, runner, policy, stop, full_started_since)
    except LockHeld:
        RUNS.labels(kind, "skipped").inc()
        _log().info("sync skipped: another sorsync process is running one", kind=kind)
        return "skipped"
    except SyncStopped as exc:
        RUNS.labels(kind, "stopped").inc()
        _log().info("sync stopped", kind=kind, reason=str(exc))
        return "stopped"
    except Exception as exc:
        transient = is_transient(exc)
        RUNS.labels(kind, "failed").inc()
        FAILURES.labels(kind, str(transient).lower()).inc()
        DURATION.labels(kind).observe(time.monotonic() - started)
        _record_partial(exc)
        advice = (
            "the next scheduled run will try again"
            if transient
            else "this will not go away by itself: fix the cause (see the error)"
        )
        _log().error(
            "sync failed; the previous replica keeps serving",
            kind=kind,
            run_id=_run_id(exc),
            error=str(exc),
            transient=transient,
            retried=transient and policy.attempts > 1,
            advice=advice,
        )
        return "failed"
    DURATION.labels(kind).observe(time.monotonic() - started)
    RUNS.labels(kind, "ok").inc()
    _record(result)
    _log().info(
        "scheduled sync ok",
        run_id=result.run_id,
        kind=kind,
        pages=result.pages,
        records=result.records,
        duration_s=round(result.seconds, 3),
    )
    return "ok"


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


def set_last_success(engine: Engine, settings: Settings) -> None:
    """Seed the last-success gauges from the database, so a restarted scheduler exports the
    real data age before its first run."""
    from sorsync.sync.status import status

    for d in status(engine, settings).datatypes:
        if d.last_success_at is not None:
            LAST_SUCCESS.labels(d.key).set(d.last_success_at.timestamp())


def start_metrics(settings: Settings) -> None:
    if settings.metrics_port == 0:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(settings.metrics_port, addr=settings.api_host, registry=REGISTRY)
    except OSError as exc:
        # Syncing matters more than metrics: keep going, but say how to fix it.
        _log().warning(
            "cannot serve scheduler metrics; set SORSYNC_METRICS_PORT to a free port (0 = off)",
            host=settings.api_host,
            port=settings.metrics_port,
            error=str(exc),
        )
        return
    _log().info(
        "scheduler metrics", url=f"http://{settings.api_host}:{settings.metrics_port}/metrics"
    )


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
