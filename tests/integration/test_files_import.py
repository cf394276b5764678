"""Imports of the SOR2 file export over HTTP on 127.0.0.1: a changed export reconciles by
natural key, an unchanged one is skipped by the conditional GET, and every way a file can be
broken fails with a message naming the file (and line) while the replica stays as it was."""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sorsync.datatypes import SOR2_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.files.load import run_import
from sorsync.simulator.demo import load_generated
from sorsync.simulator.export import FILES, write_export
from sorsync.simulator.generator import evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.store import Row, Store
from sorsync.sync.results import RunResult
from sorsync.sync.service import run_sync
from tests.fixtures.api import empty_replica
from tests.fixtures.files import ExportServer, files_settings

DATATYPES = [datatype(key) for key in SOR2_DATATYPES]
SORENTITY, SHAKSORMAP, REPLACED = SOR2_DATATYPES


def _store_nights(nights: int, *, units: int = 200, seed: int = 5) -> list[Store]:
    """The simulator's store after each night: night 0 is the first snapshot."""
    model = generate(units, seed=seed)
    stores: list[Store] = []
    store = Store()
    for night in range(nights + 1):
        if night:
            evolve(model, 25, seed=seed + night)
        buffer = io.BytesIO()
        write_sortree(model, buffer)
        buffer.seek(0)
        load_snapshot(store, buffer, at=datetime(2025, 1, 6 + night, 2, 0).astimezone())
        stores.append(_copy(store))
    return stores


def _copy(store: Store) -> Store:
    copy = Store()
    for key, table in store.tables.items():
        target = copy.table(key)
        for row in table:
            target.rows[row.pid] = Row(row.pid, row.modified, dict(row.values))
    return copy


def _replica(engine: Engine) -> dict[str, Any]:
    """Everything an import may change: rows and sync state."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for dt in DATATYPES:
            out[dt.key] = conn.execute(
                text(
                    f"SELECT count(*), md5(coalesce(string_agg(pid::text || token || record::text,"
                    f" ',' ORDER BY pid), '')) FROM krs.\"{dt.table}\""
                )
            ).one()
        out["state"] = conn.execute(
            text("SELECT datatype, token, source FROM krs.sync_state ORDER BY 1")
        ).all()
    return out


def _last_run(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status, error, report FROM krs.sync_run ORDER BY id DESC LIMIT 1")
        ).one()


def _import(engine: Engine, url: str, **settings: Any) -> RunResult:
    return run_sync(engine, files_settings(url, **settings), kind="full")


def _key(key: str, values: dict[str, object]) -> tuple[str, ...]:
    def s(name: str) -> str:
        value = values.get(name)
        return value.isoformat() if isinstance(value, date) else str(value)

    names = {
        SORENTITY: ("SorId", "FromDate"),
        SHAKSORMAP: ("ShakId", "SorId", "FromDate"),
        REPLACED: ("SorId", "ReplacedBySorId"),
    }[key]
    valid_to = values.get("ValidTo")
    superseded = isinstance(valid_to, datetime) and valid_to.year < 2999
    return tuple(s(n) for n in names) + ((s("ValidFrom"),) if superseded else ())


def _expected(old: Store, new: Store, key: str) -> tuple[int, int, int]:
    """(added, removed, changed) between two stores' rows of `key`, by natural key."""
    before = {_key(key, r.values): r.values for r in old.table(key)}
    after = {_key(key, r.values): r.values for r in new.table(key)}
    added = len(after.keys() - before.keys())
    removed = len(before.keys() - after.keys())
    changed = sum(1 for k in after.keys() & before.keys() if after[k] != before[k])
    return added, removed, changed


def test_a_changed_export_reconciles_by_natural_key(
    engine: Engine, export_server: ExportServer
) -> None:
    empty_replica(engine)
    first, second = _store_nights(1)
    zipped = export_server.root / "Sor_complete.zip"
    url = export_server.url_of("Sor_complete.zip")
    write_export(first, zipped)
    assert _import(engine, url).ok
    write_export(second, zipped)
    result = _import(engine, url)
    assert result.ok, result.error
    assert export_server.statuses() == [200, 200]
    for d in result.datatypes:
        recon = d.reconciliation
        assert recon is not None
        added, removed, changed = _expected(first, second, d.key)
        assert (recon.only_new, recon.only_old, recon.changed) == (added, removed, changed), d.key
        assert recon.new_rows == len(second.table(d.key))
        assert (d.inserted, d.deleted, d.updated) == (added, removed, changed)
    sorentity = result.datatypes[0].reconciliation
    assert sorentity is not None
    assert sorentity.only_new > 0
    assert sorentity.changed > 0
    # The examples are named by natural key, as the report shows them.
    example = sorentity.example_keys["changed"][0]
    assert example.startswith("SorId=")
    assert " FromDate=" in example
    with engine.connect() as conn:
        count = conn.execute(text('SELECT count(*) FROM krs."sor_v2_sorentity_v1"')).scalar_one()
    assert count == len(second.table(SORENTITY))


def test_an_unchanged_export_is_not_downloaded_again(
    engine: Engine, export_server: ExportServer
) -> None:
    empty_replica(engine)
    store = Store()
    load_generated(store, 100, seed=3)
    write_export(store, export_server.root / "Sor_complete.zip")
    url = export_server.url_of("Sor_complete.zip")
    assert _import(engine, url).ok
    before = _replica(engine)
    skipped = _import(engine, url)
    assert skipped.ok
    assert skipped.export is not None
    assert skipped.export["not_modified"] is True
    assert export_server.statuses() == [200, 304]
    assert _replica(engine) == before
    status, error, report = _last_run(engine)
    assert (status, error, report["export"]["not_modified"]) == ("ok", None, True)
    # --full (rebind) always downloads.
    forced = run_sync(engine, files_settings(url), kind="full", rebind=True)
    assert forced.ok
    assert export_server.statuses()[-1] == 200
    assert forced.datatypes[0].reconciliation is not None
    assert forced.datatypes[0].reconciliation.differences == 0


def test_a_busy_server_is_retried_with_backoff(engine: Engine, export_server: ExportServer) -> None:
    empty_replica(engine)
    store = Store()
    load_generated(store, 50, seed=3)
    write_export(store, export_server.root / "Sor_complete.zip")
    export_server.busy = 2
    slept: list[float] = []
    settings = files_settings(export_server.url_of("Sor_complete.zip"))
    result = run_import(engine, settings, DATATYPES, sleep=slept.append)
    assert result.ok, result.error
    assert export_server.statuses() == [503, 503, 200]
    assert slept == [2.0, 4.0]
    assert result.export is not None
    assert result.export["attempts"] == 3


def test_the_daily_file_from_a_local_path(engine: Engine, tmp_path: Path) -> None:
    empty_replica(engine)
    store = Store()
    load_generated(store, 80, seed=4)
    write_export(store, tmp_path / "Sor_complete.zip", daily=date(2025, 1, 6))
    daily = tmp_path / "SorEntity_daily.csv"
    result = _import(engine, str(daily))
    assert result.ok, result.error
    assert [d.key for d in result.datatypes] == [SORENTITY]
    assert result.export is not None
    assert result.export["missing"] == [SHAKSORMAP, REPLACED]
    again = _import(engine, str(daily))
    assert again.export is not None
    assert again.export["not_modified"] is True  # the same bytes (SHA-256)


# --- broken exports -------------------------------------------------------------------------


def _files(store: Store, tmp_path: Path) -> dict[str, bytes]:
    folder = tmp_path / "csv"
    write_export(store, folder)
    return {name: (folder / name).read_bytes() for name in FILES.values()}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def _entity_lines(files: dict[str, bytes]) -> list[bytes]:
    return files["SOREntity.csv"].split(b"\r\n")


def _with_entity(files: dict[str, bytes], lines: list[bytes]) -> dict[str, bytes]:
    return {**files, "SOREntity.csv": b"\r\n".join(lines)}


def _bad_latin1(files: dict[str, bytes]) -> bytes:
    lines = _entity_lines(files)
    lines[120] = lines[120] + "Ærø".encode("cp1252")  # inside the last field of line 121
    return _zip(_with_entity(files, lines))


def _utf16(files: dict[str, bytes]) -> bytes:
    text = files["SOREntity.csv"].decode("utf-8-sig")
    return _zip({**files, "SOREntity.csv": codecs.BOM_UTF16_LE + text.encode("utf-16-le")})


def _no_column(files: dict[str, bytes]) -> bytes:
    lines = _entity_lines(files)
    lines[0] = lines[0].replace(b";FromDate;", b";StartDate;")
    return _zip(_with_entity(files, lines))


def _short_row(files: dict[str, bytes]) -> bytes:
    lines = _entity_lines(files)
    lines[150] = lines[150].rsplit(b";", 3)[0]
    return _zip(_with_entity(files, lines))


def _no_sorentity(files: dict[str, bytes]) -> bytes:
    return _zip({k: v for k, v in files.items() if k != "SOREntity.csv"})


def _truncated(files: dict[str, bytes]) -> bytes:
    return _zip(files)[:-200]  # the central directory is gone


def _damaged_member(files: dict[str, bytes]) -> bytes:
    body = bytearray(_zip(files))
    at = body.find(b"SOREntity.csv") + 2000  # inside the member's compressed data
    body[at : at + 8] = b"\x00" * 8
    return bytes(body)


BROKEN: dict[str, tuple[Callable[[dict[str, bytes]], bytes], str]] = {
    "not-utf8": (_bad_latin1, "SOREntity.csv line 121: not UTF-8"),
    "utf16": (_utf16, "SOREntity.csv: the file is UTF-16"),
    "missing-column": (_no_column, "SOREntity.csv line 1: no column FromDate"),
    "short-row": (_short_row, "SOREntity.csv line 151: "),
    "missing-file": (_no_sorentity, "has no file for sor/v2/sorentity/v1"),
    "truncated-zip": (_truncated, "Sor_complete.zip: not a readable zip"),
    "damaged-member": (_damaged_member, "Sor_complete.zip:SOREntity.csv"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_export_changes_nothing(
    engine: Engine, export_server: ExportServer, tmp_path: Path, case: str
) -> None:
    empty_replica(engine)
    old, new = _store_nights(1, units=200)
    zipped = export_server.root / "Sor_complete.zip"
    url = export_server.url_of("Sor_complete.zip")
    write_export(old, zipped)
    assert _import(engine, url).ok
    before = _replica(engine)
    make, message = BROKEN[case]
    zipped.write_bytes(make(_files(new, tmp_path)))
    result = _import(engine, url, krs_page_size=40)  # the error comes after pages were loaded
    assert not result.ok
    assert result.error is not None
    assert message in result.error, result.error
    assert "nothing was changed" in result.error.lower()
    assert _replica(engine) == before
    status, error, report = _last_run(engine)
    assert status == "failed"
    assert message in error
    assert report["export"]["sha256"]


@pytest.mark.parametrize("case", ["busy", "cut-short"])
def test_a_failed_download_changes_nothing(
    engine: Engine, export_server: ExportServer, case: str
) -> None:
    empty_replica(engine)
    store = Store()
    load_generated(store, 100, seed=3)
    zipped = export_server.root / "Sor_complete.zip"
    url = export_server.url_of("Sor_complete.zip")
    write_export(store, zipped)
    assert _import(engine, url).ok
    before = _replica(engine)
    zipped.write_bytes(zipped.read_bytes() + b"\x00")  # a new ETag: it is downloaded again
    if case == "busy":
        export_server.busy = 10
        expected = "answered HTTP 503"
    else:
        export_server.cut_after = 1000
        expected = "broke off before its end"
    result = _import(engine, url, files_retries=0)
    assert not result.ok
    assert result.error is not None
    assert expected in result.error, result.error
    assert result.transient
    assert _replica(engine) == before
    assert _last_run(engine).status == "failed"
