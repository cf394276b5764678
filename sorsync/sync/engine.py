"""The sync engine: KRS pages → COPY into a staging table → merge by PID, one transaction a page.

Guarantees (docs/reference/design.md §1):
* *Exactly once by PID.* Every delivery is upserted by PID and the latest delivery wins, so
  replaying a page (after a crash) changes nothing, and a row touched at the source (same PID,
  newer token) is overwritten in place. Rows whose content did not change are not rewritten.
* *Token with the page.* A page's rows and the datatype's new token are committed in one
  transaction; the token never moves past data that is not stored.
* *Full sync is atomic.* A full replays the feed from token 0 into temporary shadow tables; only
  when every datatype has loaded does one transaction compare them with the live tables (the
  reconciliation), apply the differences (delete, insert, update by PID) and set the tokens.
  Readers see the old replica or the new one, never a mix. The live tables are changed in place
  rather than swapped by rename, so the `sor` views (bound to the tables) stay valid, and
  unchanged rows are not rewritten.

Runs are serialised by the `sync` advisory lock and recorded in `krs.sync_run`. Errors are not
retried here: the run ends `failed` and the scheduler decides when to try again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sorsync.datatypes import Datatype
from sorsync.db.engine import psycopg_connection as _pg
from sorsync.db.locks import advisory_lock
from sorsync.krs import wire
from sorsync.krs.errors import KrsError, ReplicationFault
from sorsync.krs.feed import CopyRows, Page
from sorsync.krs.profile import Drift, Profile, compare
from sorsync.logs import get_logger
from sorsync.mapping import Expected
from sorsync.sync import binding, reconcile, sql
from sorsync.sync.pages import FeedError, PageSource, PageStream, SnapshotSource, SourceDataError
from sorsync.sync.reconcile import Reconciliation
from sorsync.sync.retry import is_transient

Kind = Literal["delta", "full"]
LOCK_NAME = "sync"
ABANDONED = (
    "abandoned: the process running it ended without finishing (killed or crashed); nothing"
    " after its last committed page was stored"
)


def _log() -> Any:
    # A fresh proxy each time: a module-level logger would cache the configuration of its first
    # use (cache_logger_on_first_use), and a run logs only a handful of lines.
    return get_logger("sorsync.sync")


class SwapRefused(Exception):
    """A full sync's result looks wrong enough that it is not applied."""


# Said by every shrink refusal, so the scheduler can tell it from other failures and alert.
SHRINK_REFUSED = "shrink guard"
DEFAULT_MAX_SHRINK = 0.2  # SORSYNC_FULL_MAX_SHRINK


@dataclass(frozen=True, slots=True)
class Progress:
    """Reported after each stored page and at each phase change.

    A delta's page is committed (rows and token) before it is reported. A full's pages go to
    shadow tables (or, for the first full, into the one transaction that fills the empty
    replica) and become visible only at the end. A callback may stop the run by raising a
    BaseException (like KeyboardInterrupt): the run is recorded as interrupted, everything
    uncommitted is rolled back, and the exception propagates.
    """

    key: str  # register/datatype/vN
    phase: Literal["load", "swap", "done", "failed"]
    pages: int
    records: int


@dataclass(slots=True)
class DatatypeResult:
    key: str
    status: Literal["pending", "ok", "failed", "skipped"] = "pending"
    pages: int = 0
    records: int = 0  # records received
    inserted: int = 0  # rows added to the replica
    updated: int = 0  # rows whose content changed
    deleted: int = 0  # full only: rows the source no longer has
    seconds: float = 0.0  # loading: fetching and storing pages
    store_seconds: float = 0.0  # of which storing (COPY + merge + commit); the rest is KRS
    apply_seconds: float = 0.0  # full only: the swap transaction (for all datatypes at once)
    token: str | None = None  # the committed token after the run
    error: str | None = None
    transient: bool | None = None  # of the error: would retrying the run likely help?
    unknown_elements: list[str] = field(default_factory=list)
    reconciliation: Reconciliation | None = None
    profile: Profile | None = None  # document datatypes: the fields the records had
    drift: Drift | None = None  # ... compared with the mapping (None: nothing to compare)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datatype": self.key,
            "status": self.status,
            "pages": self.pages,
            "records": self.records,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "seconds": round(self.seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
            "apply_seconds": round(self.apply_seconds, 3),
            "token": self.token,
            "error": self.error,
            "unknown_elements": self.unknown_elements,
            "record_namespace": self.profile.namespace if self.profile else None,
            "drift": self.drift.to_dict() if self.drift else None,
            "reconciliation": self.reconciliation.to_dict() if self.reconciliation else None,
        }


@dataclass(slots=True)
class RunResult:
    run_id: int
    kind: Kind
    status: Literal["ok", "failed"]
    started_at: datetime
    seconds: float
    datatypes: list[DatatypeResult]
    error: str | None = None  # one line: the first failure (with its datatype)
    export: dict[str, Any] | None = None  # a file import (sorsync.files): what was fetched

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def pages(self) -> int:
        return sum(d.pages for d in self.datatypes)

    @property
    def records(self) -> int:
        return sum(d.records for d in self.datatypes)

    @property
    def transient(self) -> bool:
        """True when every failure was of a kind that a later retry may well cure."""
        failures = [d for d in self.datatypes if d.status == "failed"]
        return bool(failures) and all(d.transient for d in failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "pages": self.pages,
            "records": self.records,
            "error": self.error,
            "transient": self.transient if self.status == "failed" else None,
            "datatypes": [d.to_dict() for d in self.datatypes],
            **({"export": self.export} if self.export is not None else {}),
        }


ProgressCallback = Callable[[Progress], None]


def sync(
    engine: Engine,
    source: PageSource,
    datatypes: Sequence[Datatype],
    *,
    kind: Kind = "delta",
    page_size: int = wire.MAX_RECORDS,
    on_progress: ProgressCallback | None = None,
    prefetch: bool = True,
    examples: int = 10,
    expected_fields: Mapping[str, Expected] | None = None,
    source_identity: str | None = None,
    rebind: bool = False,
    max_shrink: float = DEFAULT_MAX_SHRINK,
    allow_shrink: bool = False,
) -> RunResult:
    """Run one delta or full sync of `datatypes` from `source` into the replica.

    `expected_fields` (datatype key → what the mapping expects) lets the run compare each
    document datatype's fields with the mapping, warn once about a difference and record it.
    A full that would remove more than `max_shrink` of a datatype's rows is refused before the
    swap unless `allow_shrink`.

    `source_identity` names the source (sorsync.sync.binding): a run against a datatype bound
    to another source raises `binding.ForeignSource` before anything is written, except a full
    with `rebind`, which binds the datatypes to it when it applies.

    Raises `LockHeld` (sorsync.db.locks) when another run is in progress. Every other failure
    ends the run with status `failed` (see `RunResult.error`); nothing is retried here.
    """
    if kind not in ("delta", "full"):
        raise ValueError(f"kind must be 'delta' or 'full', not {kind!r}")
    if not 1 <= page_size <= wire.MAX_RECORDS:
        raise ValueError(f"page_size must be 1..{wire.MAX_RECORDS}, not {page_size}")
    dts = list(dict.fromkeys(datatypes))
    if not dts:
        raise ValueError("no datatypes to sync")
    if kind != "full" and isinstance(source, SnapshotSource):
        raise ValueError("a complete dataset (a file export) is only ever applied as a full")
    run = _Run(engine, source, kind, page_size, on_progress or _ignore, prefetch, examples)
    run.expected = dict(expected_fields or {})
    run.source_identity = source_identity
    run.max_shrink = 1.0 if allow_shrink else max_shrink
    with advisory_lock(engine, LOCK_NAME):
        if source_identity is not None and not (kind == "full" and rebind):
            with _pg(engine) as pg:
                binding.check_and_claim(pg, source_identity, dts)
        return run.execute(dts)


def _ignore(_: Progress) -> None:
    return None


def _copy_rows(
    cur: psycopg.Cursor[Any],
    copy_sql: psycopg.sql.Composed,
    types: list[str],
    rows: list[tuple[object, ...]] | CopyRows,
) -> None:
    with cur.copy(copy_sql) as copy:
        if isinstance(rows, CopyRows):
            copy.write(rows.data)  # already the whole COPY BINARY stream
            return
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _dumps(value: object) -> bytes:
    return orjson.dumps(value)


def _rows(dt: Datatype, page: Page, width: int) -> list[tuple[object, ...]]:
    """The page's entries as COPY rows (`sql.columns` order)."""
    rows: list[tuple[object, ...]] = []
    if dt.is_document:
        for e in page.entries:
            namespace, record = e.values
            rows.append((e.pid, e.modified_at, e.token, namespace, Jsonb(record, _dumps)))
        return rows
    for e in page.entries:
        if len(e.values) != width:
            raise ValueError(
                f"entry {e.token} of {dt.key} has {len(e.values)} values for {width} fields"
            )
        rows.append((e.pid, e.modified_at, e.token, *e.values, e.extra))
    return rows


class _Run:
    def __init__(
        self,
        engine: Engine,
        source: PageSource,
        kind: Kind,
        page_size: int,
        on_progress: ProgressCallback,
        prefetch: bool,
        examples: int,
    ) -> None:
        self.engine = engine
        self.source = source
        self.kind: Kind = kind
        self.page_size = page_size
        self.on_progress = on_progress
        self.prefetch = prefetch
        self.examples = examples
        self.run_id = 0
        self.one_transaction = False  # the first full loads everything in one transaction
        self.expected: dict[str, Expected] = {}
        self.source_identity: str | None = None
        self.max_shrink = DEFAULT_MAX_SHRINK

    # --- run bookkeeping -----------------------------------------------------------------

    def execute(self, dts: list[Datatype]) -> RunResult:
        started = time.perf_counter()
        self.run_id, started_at = self._start([dt.key for dt in dts])
        results = {dt.key: DatatypeResult(dt.key) for dt in dts}
        _log().info("sync started", run_id=self.run_id, kind=self.kind, datatypes=list(results))
        try:
            with _pg(self.engine) as pg:
                _prefer_lz4(pg)
                if self.kind == "delta":
                    self._delta(pg, dts, results)
                else:
                    self._full(pg, dts, results)
        except BaseException as exc:
            # Interrupted (Ctrl-C, SIGTERM) or the connection itself failed at a bad moment:
            # record what is known, then let it propagate.
            self._finish_quietly(
                _result(self, started_at, started, results, f"interrupted: {exc!r}"[:500])
            )
            raise
        failures = [r for r in results.values() if r.status == "failed"]
        error = None
        if failures:
            error = failures[0].error
            if len(failures) > 1:
                error = f"{error} (and {len(failures) - 1} more failed datatype(s))"
        result = _result(self, started_at, started, results, error)
        self._finish_quietly(result)
        _log().info(
            "sync finished",
            run_id=self.run_id,
            kind=self.kind,
            status=result.status,
            pages=result.pages,
            records=result.records,
            seconds=round(result.seconds, 3),
            error=result.error,
        )
        return result

    def _start(self, keys: list[str]) -> tuple[int, datetime]:
        with _pg(self.engine) as pg, pg.transaction():
            # We hold the sync lock, so a run still marked running is dead.
            pg.execute(
                "UPDATE krs.sync_run SET status = 'failed', finished_at = now(), error = %s "
                "WHERE status = 'running'",
                (ABANDONED,),
            )
            row = pg.execute(
                "INSERT INTO krs.sync_run (kind, status, datatypes, source)"
                " VALUES (%s, 'running', %s, %s) RETURNING id, started_at",
                (self.kind, keys, self.source_identity),
            ).fetchone()
        assert row is not None
        return int(row[0]), row[1]

    def _finish_quietly(self, result: RunResult) -> None:
        report = {
            "datatypes": {d.key: d.to_dict() for d in result.datatypes},
            "seconds": round(result.seconds, 3),
        }
        try:
            with _pg(self.engine) as pg:
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
            _log().error(
                "could not record the end of the sync run", run_id=self.run_id, error=str(exc)
            )

    def _mark_error(self, dt: Datatype, message: str) -> None:
        try:
            with _pg(self.engine) as pg:
                pg.execute(
                    sql.MARK_ERROR,
                    (*sql.state_key(dt), wire.START_TOKEN, message),
                )
        except (psycopg.Error, DBAPIError) as exc:
            _log().error("could not record the sync error", datatype=dt.key, error=str(exc))

    def _fail(self, dt: Datatype, res: DatatypeResult, exc: BaseException) -> None:
        message, transient = describe_error(dt, exc)
        res.status = "failed"
        res.error = message
        res.transient = transient
        if isinstance(
            exc, (KrsError, FeedError, SourceDataError, SwapRefused, psycopg.Error, DBAPIError)
        ):
            _log().error("sync failed", datatype=dt.key, error=message, transient=transient)
        else:
            _log().exception("sync failed unexpectedly", datatype=dt.key, error=message)
        self.on_progress(Progress(dt.key, "failed", res.pages, res.records))
        self._mark_error(dt, message)

    def _natural_key(self, dt: Datatype) -> psycopg.sql.Composable | None:
        """A snapshot source's natural key of `dt` (SQL over a row `r`), for the report."""
        return self.source.natural_key(dt) if isinstance(self.source, SnapshotSource) else None

    # --- pages ---------------------------------------------------------------------------

    def _load(
        self,
        pg: psycopg.Connection[Any],
        dt: Datatype,
        res: DatatypeResult,
        offset: str,
        *,
        target: psycopg.sql.Identifier,
        with_token: bool,
    ) -> str:
        """Fetch and store every page after `offset`; return the last token seen."""
        merge = sql.merge(dt, source=sql.stage(dt), target=target, dedupe=True)
        copy = sql.copy_into(dt, sql.stage(dt))
        types = sql.copy_types(dt)
        width = len(dt.fields)
        token = offset
        unknown: set[str] = set()
        started = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                if isinstance(self.source, SnapshotSource):
                    # A complete dataset (sorsync.files): its pages, no offset, no paging rules.
                    stream: Iterable[Page] = self.source.snapshot_pages(dt, self.page_size)
                else:
                    stream = stack.enter_context(
                        PageStream(self.source, dt, offset, self.page_size, prefetch=self.prefetch)
                    )
                for page in stream:
                    stored = time.perf_counter()
                    inserted, updated = self._store_page(
                        pg, dt, page, copy, types, width, merge, with_token
                    )
                    res.store_seconds += time.perf_counter() - stored
                    token = page.last_token or token
                    res.pages += 1
                    res.records += len(page)
                    res.inserted += inserted
                    res.updated += updated
                    if with_token:
                        res.token = token
                    unknown |= page.unknown_elements
                    if page.profile is not None:
                        if res.profile is None:
                            res.profile = Profile()
                        res.profile.merge(page.profile)
                    self.on_progress(Progress(dt.key, "load", res.pages, res.records))
        finally:
            res.seconds += time.perf_counter() - started
            self._compare_fields(dt, res)
            if unknown:
                res.unknown_elements = sorted(unknown)
                _log().warning(
                    "KRS sent elements the datatype registry does not know; they are kept in"
                    " column extra — add them to sorsync.datatypes to give them columns",
                    datatype=dt.key,
                    elements=res.unknown_elements,
                )
        return token

    def _compare_fields(self, dt: Datatype, res: DatatypeResult) -> None:
        """Compare the fields of the records loaded with the mapping; one warning per run."""
        expected = self.expected.get(dt.key)
        if expected is None or res.profile is None or res.profile.records == 0:
            return
        res.drift = compare(res.profile, expected)
        if res.drift.differs:
            _log().warning(
                "the feed's fields differ from the mapping; every field is kept in column"
                " record, but the views miss what is not mapped — compare with"
                " `sorsync krs describe` and set SORSYNC_MAPPING_FILE",
                datatype=dt.key,
                fields=res.drift.summary(),
            )

    def _record_profile(
        self, pg: psycopg.Connection[Any], dt: Datatype, res: DatatypeResult
    ) -> None:
        if res.profile is None or res.profile.records == 0:
            return
        drift = Jsonb(res.drift.to_dict()) if res.drift is not None else None
        pg.execute(sql.SET_PROFILE, (res.profile.namespace, drift, *sql.state_key(dt)))

    def _store_page(
        self,
        pg: psycopg.Connection[Any],
        dt: Datatype,
        page: Page,
        copy_sql: psycopg.sql.Composed,
        types: list[str],
        width: int,
        merge: psycopg.sql.Composed,
        with_token: bool,
    ) -> tuple[int, int]:
        rows = page.copy_rows if page.copy_rows is not None else _rows(dt, page, width)
        if self.one_transaction:
            # The first full: COPY straight into the (empty) live table, its indexes kept up
            # by PostgreSQL while the next page is fetched and parsed. The savepoint takes the
            # page back when a PID comes a second time (a row changed while the feed was
            # read); that page is merged below instead, the later version winning.
            try:
                with pg.transaction(), pg.cursor() as cur:
                    _copy_rows(cur, sql.copy_into(dt, sql.live(dt)), types, rows)
                    self._page_done(cur, dt, page, with_token)
                return len(page), 0
            except psycopg.errors.UniqueViolation:
                pass
        with pg.transaction(), pg.cursor() as cur:
            _copy_rows(cur, copy_sql, types, rows)
            cur.execute(merge)
            counts = cur.fetchone()
            assert counts is not None
            if self.one_transaction:
                cur.execute(sql.truncate(sql.stage(dt)))  # ON COMMIT DELETE ROWS comes too late
            self._page_done(cur, dt, page, with_token)
        return int(counts[0]), int(counts[1])

    def _page_done(
        self, cur: psycopg.Cursor[Any], dt: Datatype, page: Page, with_token: bool
    ) -> None:
        if with_token:
            cur.execute(sql.SET_TOKEN, (*sql.state_key(dt), page.last_token))
        cur.execute(sql.RUN_PROGRESS, (len(page), self.run_id))

    # --- delta ---------------------------------------------------------------------------

    def _delta(
        self, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
    ) -> None:
        for i, dt in enumerate(dts):
            res = results[dt.key]
            try:
                for stmt in sql.create_stage(dt):
                    pg.execute(stmt)
                row = pg.execute(sql.READ_TOKEN, sql.state_key(dt)).fetchone()
                res.token = row[0] if row else wire.START_TOKEN
                self._load(pg, dt, res, res.token, target=sql.live(dt), with_token=True)
                pg.execute(sql.MARK_SUCCESS, (*sql.state_key(dt), res.token))
                self._record_profile(pg, dt, res)
                res.status = "ok"
                self.on_progress(Progress(dt.key, "done", res.pages, res.records))
            except Exception as exc:
                self._fail(dt, res, exc)
                if not _other_datatypes_may_work(exc):
                    _skip(dts[i + 1 :], results)
                    return
            finally:
                with contextlib.suppress(psycopg.Error):
                    pg.execute(sql.drop(sql.stage(dt)))

    # --- full ----------------------------------------------------------------------------

    def _full(
        self, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
    ) -> None:
        if all(_is_empty(pg, dt) for dt in dts):
            self._initial(pg, dts, results)
            return
        tokens: dict[str, str] = {}
        try:
            for i, dt in enumerate(dts):
                res = results[dt.key]
                try:
                    for stmt in [*sql.create_stage(dt), *sql.create_shadow(dt)]:
                        pg.execute(stmt)
                    tokens[dt.key] = self._load(
                        pg, dt, res, wire.START_TOKEN, target=sql.shadow(dt), with_token=False
                    )
                    pg.execute(sql.analyze(sql.shadow(dt)))
                except Exception as exc:
                    self._fail(dt, res, exc)
                    if not _other_datatypes_may_work(exc):
                        _skip(dts[i + 1 :], results)
                        break
                finally:
                    with contextlib.suppress(psycopg.Error):
                        pg.execute(sql.drop(sql.stage(dt)))
            if any(r.status == "failed" for r in results.values()):
                # Nothing is applied unless everything loaded: the replica stays as it was.
                for dt in dts:
                    res = results[dt.key]
                    if res.status == "pending":
                        res.status = "skipped"
                        res.error = "loaded but not applied: another datatype failed"
                return
            self._swap(pg, dts, results, tokens)
        finally:
            for dt in dts:
                with contextlib.suppress(psycopg.Error):
                    pg.execute(sql.drop(sql.shadow(dt)))

    def _initial(
        self, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
    ) -> None:
        """A full into an empty replica (first start), all in one transaction: every page is
        COPied straight into its live table (see `_store_page`). Readers see the empty replica
        until it commits, and a failure rolls all of it back. No shadow table and no
        reconciliation join are needed."""
        failed: tuple[Datatype, BaseException] | None = None
        current = dts[0]
        self.one_transaction = True
        try:
            with pg.transaction():
                for dt in dts:
                    current = dt
                    for stmt in sql.create_stage(dt):
                        pg.execute(stmt)
                    self._load(
                        pg,
                        dt,
                        results[dt.key],
                        wire.START_TOKEN,
                        target=sql.live(dt),
                        with_token=True,
                    )
                for dt in dts:
                    current = dt
                    res = results[dt.key]
                    token = res.token or wire.START_TOKEN
                    pg.execute(sql.MARK_SUCCESS, (*sql.state_key(dt), token))
                    self._record_profile(pg, dt, res)
                    if self.source_identity is not None:
                        binding.rebind(pg, self.source_identity, dt)
                    res.reconciliation = reconcile.initial(
                        pg, dt, examples=self.examples, natural_key=self._natural_key(dt)
                    )
        except Exception as exc:
            failed = (current, exc)
        finally:
            self.one_transaction = False
            for dt in dts:
                with contextlib.suppress(psycopg.Error):
                    pg.execute(sql.drop(sql.stage(dt)))
        if failed is not None:
            # Recorded only now: the rolled-back transaction held the sync_state rows.
            for dt in dts:
                res = results[dt.key]
                res.reconciliation = None
                res.inserted = res.updated = 0
                res.token = None
                if dt is failed[0]:
                    self._fail(dt, res, failed[1])
                else:
                    res.status = "skipped"
                    res.error = "not applied: another datatype failed"
            return
        for dt in dts:
            res = results[dt.key]
            res.status = "ok"
            self.on_progress(Progress(dt.key, "done", res.pages, res.records))

    def _swap(
        self,
        pg: psycopg.Connection[Any],
        dts: list[Datatype],
        results: dict[str, DatatypeResult],
        tokens: dict[str, str],
    ) -> None:
        for dt in dts:
            self.on_progress(
                Progress(dt.key, "swap", results[dt.key].pages, results[dt.key].records)
            )
        started = time.perf_counter()
        current: Datatype | None = None
        try:
            with pg.transaction():
                recons: dict[str, Reconciliation] = {}
                for dt in dts:
                    current = dt
                    recon = reconcile.compute(
                        pg, dt, examples=self.examples, natural_key=self._natural_key(dt)
                    )
                    if recon.new_rows == 0 and recon.old_rows > 0:
                        raise SwapRefused(
                            f"the full sync of {dt.key} received no rows, but the replica holds"
                            f" {recon.old_rows}; KRS never deletes rows, so this is refused and"
                            " nothing was changed — check SORSYNC_KRS_URL and the CVR's"
                            " permissions"
                        )
                    # A source that lost most of its rows (a broken import, a wrong view) must
                    # not empty the replica: KRS itself never deletes rows.
                    if recon.old_rows > 0 and recon.only_old > self.max_shrink * recon.old_rows:
                        raise SwapRefused(
                            f"{SHRINK_REFUSED}: the full sync of {dt.key} would remove"
                            f" {recon.only_old} of the replica's {recon.old_rows} rows"
                            f" ({recon.only_old / recon.old_rows:.0%}, more than the"
                            f" {self.max_shrink:.0%} SORSYNC_FULL_MAX_SHRINK allows; received"
                            f" {recon.new_rows}, {recon.only_new} new, {recon.changed} changed);"
                            " nothing was changed — if the source really shrank, run"
                            " `sorsync sync --full --allow-shrink` once"
                        )
                    recons[dt.key] = recon
                for dt in dts:
                    current = dt
                    res = results[dt.key]
                    deleted = pg.execute(sql.delete_missing(dt)).rowcount
                    counts = pg.execute(
                        sql.merge(dt, source=sql.shadow(dt), target=sql.live(dt), dedupe=False)
                    ).fetchone()
                    assert counts is not None
                    res.inserted, res.updated, res.deleted = int(counts[0]), int(counts[1]), deleted
                    res.reconciliation = recons[dt.key]
                    res.token = tokens[dt.key]
                    pg.execute(sql.SET_TOKEN, (*sql.state_key(dt), res.token))
                    pg.execute(sql.MARK_SUCCESS, (*sql.state_key(dt), res.token))
                    self._record_profile(pg, dt, res)
                    if self.source_identity is not None:
                        binding.rebind(pg, self.source_identity, dt)
                current = None
        except Exception as exc:
            for dt in dts:
                res = results[dt.key]
                res.reconciliation = None
                res.inserted = res.updated = res.deleted = 0
                if current is not None and dt.key == current.key:
                    self._fail(dt, res, exc)
                else:
                    res.status = "skipped"
                    res.error = "loaded but not applied: the swap failed"
            return
        seconds = time.perf_counter() - started
        for dt in dts:
            res = results[dt.key]
            res.status = "ok"
            res.apply_seconds = seconds
            assert res.reconciliation is not None
            _log().info(
                "full sync applied",
                datatype=dt.key,
                reconciliation=res.reconciliation.summary(),
                swap_seconds=round(seconds, 3),
            )
            self.on_progress(Progress(dt.key, "done", res.pages, res.records))


def _result(
    run: _Run,
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
        _log().debug("lz4 compression unavailable; keeping pglz", error=_first_line(exc))


def _is_empty(pg: psycopg.Connection[Any], dt: Datatype) -> bool:
    row = pg.execute(sql.exists_any(dt)).fetchone()
    return row is not None and not row[0]


def _skip(dts: Sequence[Datatype], results: dict[str, DatatypeResult]) -> None:
    for dt in dts:
        results[dt.key].status = "skipped"
        results[dt.key].error = "not attempted: the run stopped after an earlier failure"


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
