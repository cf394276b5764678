"""One import of the file export: fetch, open, and apply it as a full sync with the engine.

Every import is a complete dataset, so it is always a full: the engine loads it into shadow
tables, reconciles them with the replica (added, removed, changed by natural key) and applies
the difference in one transaction, or nothing. What was fetched (ETag, Last-Modified, SHA-256,
the files read) goes into the run's report in `krs.sync_run`, which is where the next import
finds the validators of its conditional GET. A fetch that fails, and an export that has not
changed, are recorded as runs too (failed; ok with `not_modified`), so the run history shows
every night.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from sorsync.config import Settings
from sorsync.datatypes import Datatype
from sorsync.db import views
from sorsync.db.engine import psycopg_connection
from sorsync.logs import get_logger
from sorsync.sync import binding, sql
from sorsync.sync.cancel import Cancellation, Cancelled
from sorsync.sync.engine import sync
from sorsync.sync.results import DatatypeResult, ProgressCallback, RunResult

from .fetch import DownloadProgress, Fetched, fetch, is_url
from .read import ExportError
from .source import export_source

PREFIX = "files:"
SORENTITY = "sor/v2/sorentity/v1"


def identity(location: str) -> str:
    """The source name a replica from the export is bound to (sorsync.sync.binding)."""
    if is_url(location):
        return PREFIX + binding.endpoint_identity(location)
    return PREFIX + str(Path(location).expanduser().resolve())


def is_files_source(source: str | None) -> bool:
    return source is not None and source.startswith(PREFIX)


def _log() -> Any:
    return get_logger("sorsync.files")


_BOUND = (
    "SELECT source FROM krs.sync_state WHERE register = %s AND register_version = %s"
    " AND datatype = %s AND version = %s"
)
_PREVIOUS = (
    "SELECT report -> 'export' FROM krs.sync_run WHERE source = %s AND status = 'ok'"
    " AND report ? 'export' ORDER BY id DESC LIMIT 1"
)


def previous_export(engine: Engine, source: str, dts: Sequence[Datatype]) -> dict[str, Any] | None:
    """What the last successful import from `source` fetched, if the replica still holds it
    (every datatype bound to `source`, holding rows, and loaded by that import); else None,
    and the next import downloads the export whatever its validators say."""
    with psycopg_connection(engine) as pg:
        row = pg.execute(_PREVIOUS, (source,)).fetchone()
        if row is None or not isinstance(row[0], dict):
            return None
        export: dict[str, Any] = row[0]
        loaded = set(export.get("datatypes") or ())
        # A datatype the export had no file for was left alone; it still has none.
        missing = set(export.get("missing") or ())
        for dt in dts:
            if dt.key in missing:
                continue
            if dt.key not in loaded:
                return None
            bound = pg.execute(_BOUND, sql.state_key(dt)).fetchone()
            if bound is None or bound[0] != binding.datatype_source(source, dt):
                return None
            found = pg.execute(sql.exists_any(dt)).fetchone()
            if not (found and found[0]):
                return None
    return export


def _record_run(
    engine: Engine,
    source: str,
    dts: Sequence[Datatype],
    status: str,
    error: str | None,
    export: dict[str, Any],
    started_at: float,
) -> tuple[int, datetime]:
    report = {"export": export, "seconds": round(time.perf_counter() - started_at, 3)}
    with psycopg_connection(engine) as pg, pg.transaction():
        row = pg.execute(
            "INSERT INTO krs.sync_run (kind, status, datatypes, source, finished_at, error,"
            " report) VALUES ('full', %s, %s, %s, now(), %s, %s) RETURNING id, started_at",
            (status, [dt.key for dt in dts], source, error, Jsonb(report)),
        ).fetchone()
        if status == "ok":
            for dt in dts:  # the replica is as new as the export: it was checked just now
                pg.execute(sql.MARK_SUCCESS, (*sql.state_key(dt), "0"))
    assert row is not None
    return int(row[0]), row[1]


def _result_without_engine(
    run: tuple[int, datetime],
    dts: Sequence[Datatype],
    started: float,
    error: str | None,
    export: dict[str, Any],
    transient: bool = False,
) -> RunResult:
    status: Literal["ok", "failed"] = "failed" if error else "ok"
    results = [
        DatatypeResult(dt.key, status=status, error=error, transient=transient) for dt in dts
    ]
    return RunResult(
        run_id=run[0],
        kind="full",
        status=status,
        started_at=run[1],
        seconds=time.perf_counter() - started,
        datatypes=results,
        error=error,
        export=export,
    )


def run_import(
    engine: Engine,
    settings: Settings,
    datatypes: Sequence[Datatype],
    *,
    strict: bool = False,
    rebind: bool = False,
    allow_shrink: bool = False,
    on_progress: ProgressCallback | None = None,
    on_download: DownloadProgress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    cancel: Cancellation | None = None,
) -> RunResult:
    """Import the export at SORSYNC_FILES_URL into the replica of `datatypes` (a full). A
    datatype the export has no file for is an error for sorentity or when `strict` (named by
    the person: SORSYNC_KRS_DATATYPES, --datatype), and left as it is otherwise.

    `cancel` stops the download between chunks or the run between pages (nothing is applied);
    the result then has `interrupted` set. Raises LockHeld and binding.ForeignSource like
    `sorsync.sync.engine.sync`."""
    started = time.perf_counter()
    location = settings.files_location
    source = identity(location)
    dts = list(dict.fromkeys(datatypes))
    previous = None if rebind else previous_export(engine, source, dts)
    try:
        fetched = fetch(
            location,
            previous,
            timeout=settings.krs_timeout,
            retries=settings.files_retries,
            on_progress=on_download,
            sleep=sleep,
            cancel=cancel,
        )
    except Cancelled as stop:
        error = f"interrupted: {stop}"
        export = {"location": fetched_location(location) if is_url(location) else location}
        run = _record_run(engine, source, dts, "failed", error, export, started)
        _log().info("the download of the export was stopped; nothing was changed")
        result = _result_without_engine(run, dts, started, error, export)
        result.interrupted = True
        return result
    except ExportError as exc:
        shown = location if not is_url(location) else fetched_location(location)
        export = {"location": shown, "error": str(exc)}
        run = _record_run(engine, source, dts, "failed", str(exc), export, started)
        _log().error("the export could not be fetched", error=str(exc))
        return _result_without_engine(run, dts, started, str(exc), export, exc.transient)
    try:
        return _apply(engine, settings, dts, fetched, source, strict, rebind, allow_shrink,
                      on_progress, started, cancel)  # fmt: skip
    finally:
        fetched.cleanup()


def fetched_location(url: str) -> str:
    from sorsync.krs.client import safe_url

    return safe_url(url)


def _apply(
    engine: Engine,
    settings: Settings,
    dts: list[Datatype],
    fetched: Fetched,
    source: str,
    strict: bool,
    rebind: bool,
    allow_shrink: bool,
    on_progress: ProgressCallback | None,
    started: float,
    cancel: Cancellation | None,
) -> RunResult:
    if fetched.not_modified or fetched.path is None:
        export = {**fetched.to_dict(), "datatypes": [dt.key for dt in dts]}
        run = _record_run(engine, source, dts, "ok", None, export, started)
        _log().info(
            "the export has not changed since the last import; nothing to do",
            location=fetched.location,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )
        return _result_without_engine(run, dts, started, None, export)
    mapping = settings.mapping
    try:
        with export_source(fetched.path, fetched.name, mapping) as files:
            found = files.export.files
            missing = [dt for dt in dts if dt.key not in found]
            needed = [dt for dt in missing if strict or dt.key == SORENTITY]
            if needed:
                names = ", ".join(dt.key for dt in needed)
                have = ", ".join(ref.name for ref in found.values()) or "no file sorsync knows"
                raise ExportError(
                    f"{fetched.name} has no file for {names} (it has {have}); is"
                    " SORSYNC_FILES_URL the SOR2 export (Sor_complete.zip or"
                    " SorEntity_daily.csv)? Nothing was changed"
                )
            run_dts = [dt for dt in dts if dt.key in found]
            fetched.files = {dt.key: found[dt.key].name for dt in run_dts}
            export = {
                **fetched.to_dict(),
                "datatypes": [dt.key for dt in run_dts],
                "missing": [dt.key for dt in missing],
                "not_loaded": sorted(
                    [ref.name for key, ref in found.items() if key not in fetched.files]
                    + files.export.other
                ),
            }
            if missing:
                _log().warning(
                    "the export has no file for these datatypes; their replica is left as it is",
                    datatypes=[dt.key for dt in missing],
                )
            expected = {m.key: m.expected for m in mapping.datatypes.values()}
            result = sync(
                engine,
                files,
                run_dts,
                kind="full",
                page_size=settings.krs_page_size,
                on_progress=on_progress,
                expected_fields=expected,
                source_identity=source,
                rebind=rebind,
                max_shrink=settings.full_max_shrink,
                allow_shrink=allow_shrink,
                cancel=cancel,
                indexes=views.indexes_by_table(mapping),
            )
    except ExportError as exc:
        export = {**fetched.to_dict(), "error": str(exc)}
        run = _record_run(engine, source, dts, "failed", str(exc), export, started)
        _log().error("the export cannot be imported", error=str(exc))
        return _result_without_engine(run, dts, started, str(exc), export, exc.transient)
    result.export = export
    with psycopg_connection(engine) as pg:
        pg.execute(
            "UPDATE krs.sync_run SET report = coalesce(report, '{}'::jsonb)"
            " || jsonb_build_object('export', %s::jsonb) WHERE id = %s",
            (Jsonb(export), result.run_id),
        )
    return result
