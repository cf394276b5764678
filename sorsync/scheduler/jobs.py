"""What one scheduled tick does: run a sync, retry what is transient, wait for the lock or skip.

`ServiceRunner` runs one sync from configuration and stops it through its cancellation when the
scheduler stops (sorsync.sync.cancel); `run_with_retries` retries transient failures with
exponential backoff, cut short by a stop; `sync_job` is the tick itself, which never raises and
says how it ended (`Outcome`), counted in sorsync.scheduler.metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, text
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity import wait_exponential as _wait_exponential

from sorsync.config import Settings
from sorsync.db.locks import LockHeld
from sorsync.logs import get_logger
from sorsync.scheduler.metrics import DURATION, FAILURES, RUNS, record, record_partial
from sorsync.sync.cancel import Cancellation
from sorsync.sync.results import Kind, RunResult
from sorsync.sync.retry import is_transient
from sorsync.sync.service import BuiltinSource, SyncFailed, run_sync

Outcome = Literal["ok", "failed", "skipped", "stopped"]


def _log() -> Any:
    return get_logger("sorsync.scheduler")  # fresh per call, as in sorsync.scheduler.metrics


STOPPED_BETWEEN_PAGES = "stopped between pages; the next run continues from the last committed page"


class SyncStopped(Exception):
    """The scheduler is stopping: a run was not started, or ended at a page boundary (the
    engine recorded it as interrupted and released the lock). Never retried."""

    transient = False


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
        result = run_sync(
            self.engine,
            self.settings,
            kind=kind,
            krs_url=self.krs_url,
            builtin=self.builtin,
            cancel=Cancellation(self.stop, STOPPED_BETWEEN_PAGES),
        )
        if result.interrupted:
            raise SyncStopped(STOPPED_BETWEEN_PAGES)
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
        record_partial(exc)
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
        record_partial(exc)
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
    record(result)
    _log().info(
        "scheduled sync ok",
        run_id=result.run_id,
        kind=kind,
        pages=result.pages,
        records=result.records,
        duration_s=round(result.seconds, 3),
    )
    return "ok"
