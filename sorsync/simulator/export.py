"""The simulator's SOR2 tables written as NSP's public file export (`Sor_complete.zip`).

The same fictive rows the simulator serves over KRS, in the export's published conventions
(docs/sor2.md §5, docs/files.md): one CSV per datatype named as in the zip's listing, `;`
between fields, UTF-8 with a byte-order mark, CRLF line ends, SOR ids written `="…"` (the Excel
text trick), an empty field for no value, dates `YYYY-MM-DD`, NSP's technical timestamps
(ValidFrom/ValidTo) `YYYY-MM-DD HH:MM:SS` in Danish time. `SorEntity_daily.csv` holds the unit
versions current on the day and those starting or ending after it.

So tests, the demo and the benchmarks can import the very tree they also sync over KRS and
compare the two (tests/e2e/test_files_vs_krs.py).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from sorsync.simulator.sor2 import EANLOCATION, ELEMENTS, REPLACED, SHAKSORMAP, SORENTITY
from sorsync.simulator.store import Row, Store

ZONE = ZoneInfo("Europe/Copenhagen")
FILES = {
    SORENTITY: "SOREntity.csv",
    SHAKSORMAP: "SHAKSORMap.csv",
    REPLACED: "SORReplacedEntities.csv",
    EANLOCATION: "LocationsCode.csv",
}
ZIP_NAME = "Sor_complete.zip"
DAILY_NAME = "SorEntity_daily.csv"
# Written `="…"`, as the export writes SOR ids so that Excel keeps them as text.
TEXT_TRICK = ("SorId", "EanLocationCode")


def _header(rows: Iterable[Row], key: str) -> list[str]:
    """Every element of the datatype (a fixed header, like NSP's table), then any other
    element a row has."""
    names = dict.fromkeys(ELEMENTS.get(key, ()))
    for row in rows:
        for name, value in row.values.items():
            if value is not None and name not in names:
                names[name] = None
    return list(names)


def _text(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        local = value.astimezone(ZONE) if value.tzinfo else value
        return f"{local:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if name.endswith(TEXT_TRICK) and text:
        return f'="{text}"'
    return text


def write_csv(out: IO[bytes], rows: Iterable[Row], key: str) -> int:
    """One export file of datatype `key` (all rows given, every version); the rows written."""
    listed = list(rows)
    header = _header(listed, key)
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    for row in listed:
        values = row.values
        writer.writerow([_text(name, values.get(name)) for name in header])
    text.flush()
    text.detach()
    return len(listed)


def daily_rows(store: Store, day: date) -> Iterator[Row]:
    """The unit versions `SorEntity_daily.csv` lists on `day`: current in NSP's table and not
    ended before the day."""
    for row in store.table(SORENTITY):
        valid_to = row.values.get("ValidTo")
        if isinstance(valid_to, datetime) and valid_to.year < 2999:
            continue
        to_date = row.values.get("ToDate")
        if isinstance(to_date, date) and to_date < day:
            continue
        yield row


def write_export(store: Store, out: Path, *, daily: date | None = None) -> dict[str, int]:
    """Write the store's SOR2 tables as the export: a zip when `out` ends in .zip, else the
    CSV files into the directory `out`. With `daily`, also `SorEntity_daily.csv` for that day
    (beside the zip). Returns rows written by file name."""
    written: dict[str, int] = {}
    keys = [key for key in FILES if key in store.tables]
    if out.suffix.lower() == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key in keys:
                info = zipfile.ZipInfo(FILES[key], date_time=(2025, 1, 6, 4, 30, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w") as member:
                    written[FILES[key]] = write_csv(member, store.table(key), key)
        folder = out.parent
    else:
        out.mkdir(parents=True, exist_ok=True)
        for key in keys:
            with (out / FILES[key]).open("wb") as f:
                written[FILES[key]] = write_csv(f, store.table(key), key)
        folder = out
    if daily is not None and SORENTITY in store.tables:
        with (folder / DAILY_NAME).open("wb") as f:
            written[DAILY_NAME] = write_csv(f, daily_rows(store, daily), SORENTITY)
    return written
