"""Running a sync from configuration: the KRS source, the engine call, and failure as an exception.

Used by `sorsync sync`, `sorsync run` (`sync_if_empty`) and the scheduler. The demo fallback
(the built-in simulator with fictive data) is a `BuiltinSource` the CLI passes in
(`sorsync.cli.demo`): nothing here imports the simulator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from sorsync.config import Settings
from sorsync.datatypes import Datatype
from sorsync.db import maintenance, views
from sorsync.db.engine import make_engine
from sorsync.db.locks import LockHeld
from sorsync.logs import get_logger
from sorsync.mapping import SorMapping
from sorsync.sync import binding
from sorsync.sync.cancel import Cancellation
from sorsync.sync.engine import sync
from sorsync.sync.pages import PageSource
from sorsync.sync.results import Kind, ProgressCallback, RunResult

BUILT_IN = "the built-in KRS simulator with fictive demo data"


class SourceError(Exception):
    """The KRS source cannot be set up (bad URL, ID card configuration, simulator data)."""


@dataclass(frozen=True, slots=True)
class BuiltinSource:
    """The demo source, provided by the CLI (sorsync.cli.demo): the identity a replica synced
    from it is bound to, and `serve()`, the simulator running for the duration (yields its URL;
    raises SourceError when it cannot start)."""

    identity: Callable[[], str]
    serve: Callable[[], AbstractContextManager[str]]


@dataclass(frozen=True, slots=True)
class Source:
    client: PageSource
    description: str  # for people: the URL without credentials, or "the built-in simulator…"
    identity: str  # what the replica is bound to (sorsync.sync.binding)

    @property
    def fictive(self) -> bool:
        return binding.is_fictive(self.identity)


@contextlib.contextmanager
def krs_source(
    settings: Settings, url: str | None = None, *, builtin: BuiltinSource | None = None
) -> Iterator[Source]:
    """A KRS client for `url` (default SORSYNC_KRS_URL). In demo mode (Settings.demo_mode) the
    built-in simulator serving the bundled fictive demo data: the one `sorsync run` started
    (SORSYNC_DEMO_KRS_URL), or `builtin.serve()` for the duration. A configuration that names
    no source raises SourceError saying what to set."""
    from sorsync.krs.client import client_from_settings, safe_url
    from sorsync.krs.errors import KrsError

    with contextlib.ExitStack() as stack:
        if url is not None:
            description, identity = safe_url(url), binding.endpoint_identity(url)
        else:
            problem = settings.source_problem()
            if problem is not None:
                raise SourceError(problem)
            if settings.demo_mode:
                if builtin is None:
                    raise SourceError(
                        "demo mode needs the built-in simulator, which only the sorsync command"
                        " provides; set SORSYNC_KRS_URL"
                    )
                url = settings.demo_krs_url or stack.enter_context(builtin.serve())
                description, identity = BUILT_IN, builtin.identity()
            else:
                assert settings.krs_url is not None  # source_problem() says so
                url = settings.krs_url
                description, identity = safe_url(url), binding.endpoint_identity(url)
        try:
            client = client_from_settings(settings, url)
        except (ValueError, KrsError) as exc:
            raise SourceError(f"cannot set up the KRS client for {description}: {exc}") from None
        try:
            yield Source(client, description, identity)
        finally:
            client.close()


class SyncFailed(Exception):
    """A run that ended `failed`; `.transient` says whether retrying later may help."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.error or "the sync run failed")
        self.result = result
        self.transient = result.transient


def run_sync(
    engine: Engine,
    settings: Settings,
    *,
    kind: Kind = "delta",
    datatypes: Sequence[Datatype] | None = None,
    krs_url: str | None = None,
    on_progress: ProgressCallback | None = None,
    source: Source | None = None,
    rebind: bool = False,
    allow_shrink: bool = False,
    on_download: Callable[[int, int | None], None] | None = None,
    builtin: BuiltinSource | None = None,
    cancel: Cancellation | None = None,
) -> RunResult:
    """One run with the configured datatypes, page size and KRS (or `source`, already open).
    `allow_shrink` lets a full remove more than SORSYNC_FULL_MAX_SHRINK of a datatype's rows.
    With the file export configured (Settings.uses_files) and no KRS named, one import of it
    (always a full; sorsync.files.load), `on_download` told how the download goes.
    `builtin` is the demo source (krs_source). `cancel` stops the run between pages (and the
    export's download between chunks): the result then has `interrupted` set. Raises LockHeld,
    SourceError,
    binding.ForeignSource (the replica is bound to another source; a full with `rebind` is the
    way to move it)."""
    dts = list(datatypes or settings.datatypes)
    mapping = settings.mapping
    # Tables for datatypes nothing knows yet, and views for a changed mapping (a no-op when the
    # database already has them).
    _ensure_views(engine, mapping, dts)
    expected = {m.key: m.expected for m in mapping.datatypes.values()}
    if source is None and krs_url is None and settings.uses_files:
        from sorsync.files.load import run_import

        result = run_import(
            engine,
            settings,
            dts,
            strict=bool(settings.krs_datatypes),
            rebind=rebind,
            allow_shrink=allow_shrink,
            on_progress=on_progress,
            on_download=on_download,
            cancel=cancel,
        )
    else:
        with contextlib.ExitStack() as stack:
            if source is None:
                source = stack.enter_context(krs_source(settings, krs_url, builtin=builtin))
            result = sync(
                engine,
                source.client,
                dts,
                kind=kind,
                page_size=settings.krs_page_size,
                on_progress=on_progress,
                expected_fields=expected,
                source_identity=source.identity,
                rebind=rebind,
                max_shrink=settings.full_max_shrink,
                allow_shrink=allow_shrink,  # a person's choice (the CLI); the scheduler never asks
                cancel=cancel,
                indexes=views.indexes_by_table(mapping),
            )
    # The views answer from SOR2 once it holds rows (and from v1 while it does not).
    _ensure_views(engine, mapping, dts)
    # Rows a sync wrote wait in the name-search indexes' GIN pending lists, which every search
    # reads in full; merge them now rather than whenever autovacuum gets there.
    maintenance.clean_gin_pending_lists(engine, changed_tables(result, dts))
    return result


def changed_tables(result: RunResult, dts: Sequence[Datatype]) -> list[str]:
    """The replica tables of the datatypes whose rows the run changed (committed ones: a failed
    datatype's partial pages count too, as they stay)."""
    tables = {dt.key: dt.table for dt in dts}
    return [
        tables[d.key]
        for d in result.datatypes
        if d.key in tables and d.inserted + d.updated + d.deleted > 0
    ]


def _ensure_views(engine: Engine, mapping: SorMapping, dts: Sequence[Datatype]) -> None:
    """Bring the views up to date; a database that is gone is the sync's to report (it fails
    with a message that says so), and the next run tries again."""
    try:
        views.ensure(engine, mapping, dts)
    except (psycopg.Error, DBAPIError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        get_logger("sorsync.sync").warning(
            "could not bring the sor views up to date; the next sync tries again", error=first
        )


def replica_is_empty(engine: Engine, datatypes: Sequence[Datatype]) -> bool:
    with engine.connect() as conn:
        for dt in datatypes:
            found = conn.execute(text(f'SELECT EXISTS (SELECT 1 FROM krs."{dt.table}")'))
            if found.scalar_one():
                return False
    return True


def sync_if_empty(
    database_url: str,
    krs_url: str | None,
    settings: Settings,
    *,
    builtin: BuiltinSource | None = None,
    cancel: Cancellation | None = None,
) -> RunResult | None:
    """A full sync when the replica holds no rows yet (first start); None when not needed or
    another process is already syncing. A failed run is logged and returned, not raised: the
    scheduler will try again. `cancel` stops it (nothing of a first full is kept)."""
    log = get_logger("sorsync.sync")
    engine = make_engine(database_url, pool=False)
    try:
        if not replica_is_empty(engine, settings.datatypes):
            return None
        log.info("the replica is empty: running a full sync")
        try:
            # An empty replica has nothing to protect: the first full binds it.
            result = run_sync(
                engine,
                settings,
                kind="full",
                krs_url=krs_url,
                rebind=True,
                builtin=builtin,
                cancel=cancel,
            )
        except LockHeld:
            log.info("another process is syncing; not starting a full sync")
            return None
        if result.interrupted:
            log.info("the first full sync was stopped; nothing of it was kept")
        elif not result.ok:
            log.error("the first full sync failed", error=result.error)
        return result
    finally:
        engine.dispose()
