"""The export as a source of the sync engine, and one import applied as a full sync.

`open_export` finds each datatype's file in what was fetched (a zip, a directory, or one CSV
such as `SorEntity_daily.csv`), by name in any case and either published spelling.
`ExportSource` hands the engine every record of a datatype in pages (`SnapshotSource`), so the
engine does what it does for a KRS full: shadow tables, reconciliation, one transaction that
applies it, the run in `krs.sync_run`. A broken file fails the run before anything is applied.

The export has no PIDs or tokens. A row's PID is a 63-bit hash of its natural key
(`layout.EXPORT_FILES`: SorId and FromDate for a unit version, …), so the same row has the
same PID in every import and the reconciliation compares like with like; a row NSP no longer
holds as current (ValidTo passed) adds its ValidFrom to the key. A key seen twice in one file
is told apart by its occurrence. `modified_at` is the row's ValidFrom (what the simulator's
KRS gives as its ModifiedDate for a current row), else the Danish midnight of FromDate.
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from psycopg import sql

from sorsync.datatypes import Datatype
from sorsync.krs.feed import Entry, Page
from sorsync.krs.profile import Profile
from sorsync.mapping import SorMapping

from . import layout
from .read import ExportError, Opener, read_rows

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PID_MASK = (1 << 63) - 1
_OPEN_YEAR = "2999"  # NSP writes 2999-12-31 (or 9999-12-31) for "no end"


@dataclass(frozen=True, slots=True)
class ExportFileRef:
    key: str
    name: str  # for messages: `Sor_complete.zip:SOREntity.csv`
    opener: Opener


@dataclass(slots=True)
class Export:
    """The files found, by datatype, and what else was in the export."""

    files: dict[str, ExportFileRef]
    other: list[str] = field(default_factory=list)  # files of no known datatype
    _zip: zipfile.ZipFile | None = None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _zip_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Opener:
    def open_member() -> IO[bytes]:
        return archive.open(info)

    return open_member


def _file_opener(path: Path) -> Opener:
    def open_file() -> IO[bytes]:
        return path.open("rb")

    return open_file


def _place(found: dict[str, ExportFileRef], other: list[str], ref_name: str, base: str,
           opener: Opener) -> None:  # fmt: skip
    key = layout.datatype_of(base)
    if key is None:
        other.append(ref_name)
        return
    known = found.get(key)
    # Sor_complete.zip has SOREntity.csv; the daily file is the same datatype, less history.
    if known is not None and base.lower() == layout.DAILY:
        other.append(ref_name)
        return
    if known is not None and known.name.lower().endswith(layout.DAILY):
        other.append(known.name)
    elif known is not None:
        raise ExportError(
            f"the export holds two files for {key}: {known.name} and {ref_name}; nothing was"
            " changed"
        )
    found[key] = ExportFileRef(key, ref_name, opener)


def open_export(path: Path, name: str) -> Export:
    """The datatype files in `path` (a zip, a directory, or one CSV file; `name` is what the
    file was called where it came from)."""
    found: dict[str, ExportFileRef] = {}
    other: list[str] = []
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file():
                _place(found, other, child.name, child.name, _file_opener(child))
        return Export(found, other)
    with path.open("rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK") or name.lower().endswith(".zip"):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ExportError(
                f"{name}: not a readable zip ({exc}); the download was probably cut short —"
                " nothing was changed",
                transient=True,
            ) from None
        for info in archive.infolist():
            if info.is_dir():
                continue
            base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            shown = f"{name}:{info.filename}"
            _place(found, other, shown, base, _zip_opener(archive, info))
        return Export(found, other, archive)
    key = layout.datatype_of(name)
    if key is None:
        raise ExportError(
            f"{name}: not a file of the SOR2 export (expected Sor_complete.zip, a directory of"
            f" its CSV files, or one of them such as SorEntity_daily.csv); nothing was changed"
        )
    return Export({key: ExportFileRef(key, name, _file_opener(path))})


def pid_of(parts: Sequence[str]) -> int:
    """A stable positive 63-bit PID for a natural key."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _PID_MASK or 1


def _modified_at(record: dict[str, str]) -> datetime:
    for element in (layout.VALID_FROM, "FromDate"):
        text = record.get(element)
        if not text:
            continue
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            continue
        if value.tzinfo is None:
            value = value.replace(tzinfo=COPENHAGEN)
        try:
            value.astimezone(UTC)
        except OverflowError:
            continue
        return value
    return _EPOCH


def _superseded(record: dict[str, str]) -> bool:
    valid_to = record.get(layout.VALID_TO) or ""
    return bool(valid_to) and valid_to[:4] < _OPEN_YEAR


class ExportSource:
    """The export's records for the sync engine (a `sorsync.sync.pages.SnapshotSource`)."""

    def __init__(self, export: Export, mapping: SorMapping) -> None:
        self.export = export
        self.mapping = mapping
        self.counts: dict[str, int] = {}

    def natural_key(self, dt: Datatype) -> sql.Composable | None:
        names = layout.BY_KEY[dt.key].natural_key if dt.key in layout.BY_KEY else ()
        if not names:
            return None
        return sql.SQL("concat_ws(' ', {})").format(
            sql.SQL(", ").join(
                sql.SQL("{} || '=' || ({})").format(
                    sql.Literal(n), sql.SQL("r.record ->> {}").format(sql.Literal(n))
                )
                for n in names
            )
        )

    def replicate(self, datatype: Datatype, offset: str, max_records: int) -> Page:
        raise ExportError(f"{datatype.key}: the file export is read whole, never by offset")

    def snapshot_pages(self, dt: Datatype, page_size: int) -> Iterator[Page]:
        ref = self.export.files.get(dt.key)
        if ref is None:
            raise ExportError(f"the export has no file for {dt.key}; nothing was changed")
        keys = layout.BY_KEY[dt.key].natural_key if dt.key in layout.BY_KEY else ()
        seen: set[int] = set()
        entries: list[Entry] = []
        profile = Profile()
        record_name = dt.datatype
        count = 0
        for row in read_rows(ref.opener, ref.name, dt.key, self.mapping):
            record = row.record
            if keys:
                parts = [record.get(k, "") for k in keys]
                if not parts[0]:
                    raise ExportError(
                        f"{ref.name} line {row.line}: no {keys[0]}; a row without it cannot"
                        " be stored — nothing was changed"
                    )
            else:
                parts = [f"{k}={v}" for k, v in sorted(record.items())]
            if _superseded(record):
                parts.append(record.get(layout.VALID_FROM, ""))
            pid = pid_of(parts)
            occurrence = 1
            while pid in seen:  # the same key again (or, once in 2^63, another's hash)
                occurrence += 1
                pid = pid_of([*parts, f"#{occurrence}"])
            seen.add(pid)
            modified = _modified_at(record)
            seconds = max(0, int(modified.timestamp()))
            token = f"{seconds:010d}{pid:019d}"
            entries.append(Entry(token, pid, modified, (None, record)))
            profile.add("", record_name, record)
            count += 1
            if len(entries) >= page_size:
                yield Page(entries, profile=profile)
                entries, profile = [], Profile()
        if entries:
            yield Page(entries, profile=profile)
        self.counts[dt.key] = count


@contextlib.contextmanager
def export_source(path: Path, name: str, mapping: SorMapping) -> Iterator[ExportSource]:
    export = open_export(path, name)
    try:
        yield ExportSource(export, mapping)
    finally:
        export.close()
