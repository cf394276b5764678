"""The run record: one sync run from start to finish in `krs.sync_run`, whatever its mode.

Owns the `sync` advisory lock that serialises runs, the run's row (started `running`, a dead
predecessor marked abandoned, finished `ok` or `failed` with its report), and the failure
bookkeeping every mode shares: a datatype's error described for people, logged, reported as
progress and recorded in `krs.sync_state`; success recorded with the fields the records had.
The modes (sorsync.sync.delta, .full, .initial) only decide what is stored and when.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import psycopg.sql
from psycopg import pq
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sorsync.datatypes import Datatype
from sorsync.db.engine import psycopg_connection as _pg
from sorsync.db.locks import advisory_lock
from sorsync.krs import wire
from sorsync.krs.errors import KrsError, ReplicationFault
from sorsync.logs import get_logger
from sorsync.mapping import Expected
from sorsync.sync import sql
from sorsync.sync.cancel import Cancellation, Cancelled
from sorsync.sync.pages import FeedError, PageSource, SnapshotSource, SourceDataError
from sorsync.sync.results import (
    DEFAULT_MAX_SHRINK,
    DatatypeResult,
    Kind,
    Phase,
    Progress,
    ProgressCallback,
    RunResult,
    SwapRefused,
)
from sorsync.sync.retry import is_transient

LOCK_NAME = "sync"
ABANDONED = (
    "abandoned: the process running it ended without finishing (killed or crashed); nothing"
    " after its last committed page was stored"
)

# What a mode does with the run, its connection, its datatypes and their results.
Body = Callable[["Run", psycopg.Connection[Any], list[Datatype], dict[str, DatatypeResult]], None]


def log() -> Any:
    # A fresh proxy each time: a module-level logger would cache the configuration of its first
    # use (cache_logger_on_first_use), and a run logs only a handful of lines.
    return get_logger("sorsync.sync")


def exclusive(engine: Engine) -> AbstractContextManager[Connection]:
    """Hold the `sync` advisory lock (raises LockHeld when another run holds it)."""
    return advisory_lock(engine, LOCK_NAME)


def _ignore(_: Progress) -> None:
    return None


@dataclass(slots=True)
class Run:
    """One run: what it was asked to do, and its id once started."""

    engine: Engine
    source: PageSource
    kind: Kind
    page_size: int = wire.MAX_RECORDS
    on_progress: ProgressCallback = _ignore
    prefetch: bool = True
    examples: int = 10
    expected: dict[str, Expected] = field(default_factory=dict)
    source_identity: str | None = None
    max_shrink: float = DEFAULT_MAX_SHRINK
    cancel: Cancellation | None = None
    # table → CREATE INDEX statements a first full runs after loading the table
    indexes: dict[str, list[str]] = field(default_factory=dict)
    run_id: int = 0

    def check_cancel(self) -> None:
        """Between pages: end the run here when it was cancelled (raises Cancelled)."""
        if self.cancel is not None:
            self.cancel.check()

    def progress(self, key: str, phase: Phase, res: DatatypeResult) -> None:
        self.on_progress(Progress(key, phase, res.pages, res.records))

    def natural_key(self, dt: Datatype) -> psycopg.sql.Composable | None:
        """A snapshot source's natural key of `dt` (SQL over a row `r`), for the report."""
        return self.source.natural_key(dt) if isinstance(self.source, SnapshotSource) else None

    def fail(self, dt: Datatype, res: DatatypeResult, exc: BaseException) -> None:
        """`dt` failed with `exc`: say so in its result, the log, the progress and sync_state."""
        message, transient = describe_error(dt, exc)
        res.status = "failed"
        res.error = message
        res.transient = transient
        if isinstance(
            exc, (KrsError, FeedError, SourceDataError, SwapRefused, psycopg.Error, DBAPIError)
        ):
            log().error("sync failed", datatype=dt.key, error=message, transient=transient)
        else:
            log().exception("sync failed unexpectedly", datatype=dt.key, error=message)
        self.progress(dt.key, "failed", res)
        self._mark_error(dt, message)

    def fail_and_go_on(
        self,
        dt: Datatype,
        exc: BaseException,
        later: Sequence[Datatype],
        results: dict[str, DatatypeResult],
    ) -> bool:
        """`fail` for the datatype at hand; True when the `later` datatypes may still work,
        else they are marked skipped (the failure would only repeat for them)."""
        self.fail(dt, results[dt.key], exc)
        if _other_datatypes_may_work(exc):
            return True
        for other in later:
            results[other.key].status = "skipped"
            results[other.key].error = "not attempted: the run stopped after an earlier failure"
        return False

    def mark_success(
        self, pg: psycopg.Connection[Any], dt: Datatype, res: DatatypeResult, token: str
    ) -> None:
        """Record `dt`'s success (in the caller's transaction), with its records' fields."""
        pg.execute(sql.MARK_SUCCESS, (*sql.state_key(dt), token))
        if res.profile is None or res.profile.records == 0:
            return
        drift = Jsonb(res.drift.to_dict()) if res.drift is not None else None
        pg.execute(sql.SET_PROFILE, (res.profile.namespace, drift, *sql.state_key(dt)))

    def _mark_error(self, dt: Datatype, message: str) -> None:
        # On a connection of its own: the run's may be in a failed transaction, or gone.
        try:
            with _pg(self.engine) as pg:
                pg.execute(sql.MARK_ERROR, (*sql.state_key(dt), wire.START_TOKEN, message))
        except (psycopg.Error, DBAPIError) as exc:
            log().error("could not record the sync error", datatype=dt.key, error=str(exc))


def execute(run: Run, dts: list[Datatype], body: Body) -> RunResult:
    """Start the run's record, let `body` (a mode) do the work on one connection, finish it.

    A cancelled run (sorsync.sync.cancel) is recorded as interrupted and returned with
    `interrupted` set. Any other BaseException from `body` (Ctrl-C, or the connection failing at
    a bad moment) is recorded the same way and propagates. Either way everything uncommitted is
    rolled back."""
    started = time.perf_counter()
    run.run_id, started_at = _start(run, [dt.key for dt in dts])
    results = {dt.key: DatatypeResult(dt.key) for dt in dts}
    log().info("sync started", run_id=run.run_id, kind=run.kind, datatypes=list(results))
    try:
        with _pg(run.engine) as pg:
            _prefer_lz4(pg)
            body(run, pg, dts, results)
    except Cancelled as stop:
        result = _result(run, started_at, started, results, f"interrupted: {stop}"[:500])
        result.interrupted = True
        _finish_quietly(run, result)
        log().info(
            "sync interrupted",
            run_id=run.run_id,
            kind=run.kind,
            pages=result.pages,
            records=result.records,
            reason=str(stop),
        )
        return result
    except BaseException as exc:
        _finish_quietly(
            run, _result(run, started_at, started, results, f"interrupted: {exc!r}"[:500])
        )
        raise
    failures = [r for r in results.values() if r.status == "failed"]
    error = None
    if failures:
        error = failures[0].error
        if len(failures) > 1:
            error = f"{error} (and {len(failures) - 1} more failed datatype(s))"
    result = _result(run, started_at, started, results, error)
    _finish_quietly(run, result)
    log().info(
        "sync finished",
        run_id=run.run_id,
        kind=run.kind,
        status=result.status,
        pages=result.pages,
        records=result.records,
        seconds=round(result.seconds, 3),
        error=result.error,
    )
    return result


def _start(run: Run, keys: list[str]) -> tuple[int, datetime]:
    with _pg(run.engine) as pg, pg.transaction():
        # We hold the sync lock, so a run still marked running is dead.
        pg.execute(
            "UPDATE krs.sync_run SET status = 'failed', finished_at = now(), error = %s "
            "WHERE status = 'running'",
            (ABANDONED,),
        )
        row = pg.execute(
            "INSERT INTO krs.sync_run (kind, status, datatypes, source)"
            " VALUES (%s, 'running', %s, %s) RETURNING id, started_at",
            (run.kind, keys, run.source_identity),
        ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def _finish_quietly(run: Run, result: RunResult) -> None:
    report = {
        "datatypes": {d.key: d.to_dict() for d in result.datatypes},
        "seconds": round(result.seconds, 3),
    }
    try:
        with _pg(run.engine) as pg:
            pg.execute(
                "UPDATE krs.sync_run SET status = %s, finished_at = now(), pages = %s, "
                "records = %s, error = %s, report = %s WHERE id = %s",
                (
                    result.status,
                    result.pages,
                    result.records,
                    result.error,
                    Jsonb(report),
                    result.run_id,
                ),
            )
    except (psycopg.Error, DBAPIError) as exc:
        # The database is gone; the next run marks this one abandoned.
        log().error("could not record the end of the sync run", run_id=run.run_id, error=str(exc))


def _result(
    run: Run,
    started_at: datetime,
    started: float,
    results: dict[str, DatatypeResult],
    error: str | None,
) -> RunResult:
    ok = error is None and all(r.status == "ok" for r in results.values())
    return RunResult(
        run_id=run.run_id,
        kind=run.kind,
        status="ok" if ok else "failed",
        started_at=started_at,
        seconds=time.perf_counter() - started,
        datatypes=list(results.values()),
        error=None if ok else (error or "the run did not finish"),
    )


def _prefer_lz4(pg: psycopg.Connection[Any]) -> None:
    """Compress what this run writes with lz4 instead of PostgreSQL's default pglz.

    A SOR2 record (~2 KB of jsonb) is compressed on every insert and decompressed by each of the
    lookup indexes' expressions; lz4 took a quarter off the server's CPU of loading them
    (docs/performance.md). Session-wide, so the staging and shadow tables and the rows merged
    from them into the live tables (which keep a datum's compression) all get it; it stays set
    on the pooled connection, which is harmless. A server built without lz4 refuses the
    setting: the run then goes on with pglz, as before."""
    try:
        pg.execute("SET default_toast_compression = 'lz4'")
    except psycopg.Error as exc:
        if pg.info.transaction_status != pq.TransactionStatus.IDLE:
            pg.rollback()
        log().debug("lz4 compression unavailable; keeping pglz", error=_first_line(exc))


def _other_datatypes_may_work(exc: BaseException) -> bool:
    # A ReplicationFault concerns one datatype (permission, view); trouble with the network,
    # the ID card or the database would only repeat for every other datatype.
    return isinstance(exc, ReplicationFault)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_error(dt: Datatype, exc: BaseException) -> tuple[str, bool]:
    """(one line for people naming the datatype and what to do, transient? — sync.retry)"""
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, psycopg.Error):
        exc = exc.orig  # SQLAlchemy's wrapper adds nothing a person needs
    if isinstance(exc, KrsError):
        message = exc.message
    elif isinstance(exc, (FeedError, SourceDataError, SwapRefused)):
        message = str(exc)
    elif isinstance(exc, psycopg.OperationalError):
        message = (
            f"lost PostgreSQL while storing {dt.key} ({_first_line(exc)}) — check the database"
        )
    elif isinstance(exc, psycopg.Error):
        message = (
            f"PostgreSQL refused a page of {dt.key} ({_first_line(exc)}); nothing of that page"
            " was stored and the token did not move — check that the schema is at head"
            " (sorsync db upgrade) and report the error if it persists"
        )
    else:
        message = (
            f"unexpected error while syncing {dt.key}: {type(exc).__name__}: {_first_line(exc)}"
            " — nothing past the last committed page was stored; report it (the log has the"
            " details)"
        )
    if dt.key not in message:
        message = f"{dt.key}: {message}"
    return message, is_transient(exc)
