"""Reading one CSV file of the SOR2 export, streamed, into records as the KRS path stores them.

The published conventions (docs/sor2.md §5, docs/files.md): `;` between fields, UTF-8 with or
without a byte-order mark, ids written `="…"` (the Excel text trick) and sometimes with a
trailing `.0`, an empty field for no value. A record is a dict of element → text with the
empty fields left out — what KRS sends for a NULL is no element at all — so the `sor` views
read a record from the files exactly as one from KRS. Dates are written as ISO dates
(`2024-01-01`, or a date-time where the file has a time of day or an offset); a value that is
no date in any format seen is kept as it is (the views then read it as NULL, as for KRS).

Anything that cannot be read raises `ExportError` naming the file and the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sorsync.krs.records import MAX_TEXT_CHARS, bad_text, bounded
from sorsync.mapping import SorMapping
from sorsync.sync.pages import SourceDataError

from . import layout

DELIMITER = ";"
_BOMS_NOT_UTF8 = {
    codecs.BOM_UTF16_LE: "UTF-16 (little-endian)",
    codecs.BOM_UTF16_BE: "UTF-16 (big-endian)",
    codecs.BOM_UTF32_LE: "UTF-32",
}
csv.field_size_limit(max(csv.field_size_limit(), MAX_TEXT_CHARS + 1))


class ExportError(SourceDataError):
    """The export cannot be used; the message names the file (and line) and what to do.
    `transient`: a retry may help (a download cut short), not a broken file."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_DANISH = re.compile(  # 31-12-2024, 31.12.2024, 31/12/2024, optionally with a time
    r"^(\d{1,2})[-./](\d{1,2})[-./](\d{4})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?$"
)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_ZERO_TIME = ("00", "00", "00")
_ID_DOT_ZERO = re.compile(r"^-?\d+\.0+$")


def normalise_date(text: str, *, timed: bool) -> str:
    """A date in any format seen in SOR exports as ISO: `YYYY-MM-DD` for a day (a date-time at
    midnight without an offset is a day); `YYYY-MM-DDTHH:MM:SS[.f][offset]` otherwise. `timed`
    (a technical timestamp like ValidFrom) keeps a midnight time. Unknown formats unchanged."""
    value = text.strip()
    m = _ISO.match(value)
    if m:
        y, mo, d, h, mi, s, frac, offset = m.groups()
    else:
        m = _DANISH.match(value)
        if m:
            d, mo, y, h, mi, s, frac = m.groups()
            d, mo, offset = d.zfill(2), mo.zfill(2), None
            h = h.zfill(2) if h else h
        else:
            m = _COMPACT.match(value)
            if not m:
                return text
            y, mo, d = m.groups()
            h = mi = s = frac = offset = None
    day = f"{y}-{mo}-{d}"
    if h is None:
        return day
    s = s or "00"
    if offset is None and not timed and (h, mi, s) == _ZERO_TIME and not (frac or "").strip(".0"):
        return day
    if offset is not None and len(offset) == 5 and offset[3] != ":":  # +0100 → +01:00
        offset = f"{offset[:3]}:{offset[3:]}"
    return f"{day}T{h}:{mi}:{s}{frac or ''}{offset or ''}"


def unwrap(value: str) -> str:
    """`="0123"` (Excel's way of keeping a text a text) → `0123`."""
    if value.startswith('="') and value.endswith('"') and len(value) >= 3:
        return value[2:-1]
    return value


@dataclass(slots=True)
class Row:
    line: int  # the line the row starts on (1 = the header)
    record: dict[str, str]


Opener = Callable[[], IO[bytes]]


def _check_start(head: bytes, name: str) -> int:
    """The length of a UTF-8 BOM at the start (0 or 3); ExportError for another encoding's."""
    for bom, what in _BOMS_NOT_UTF8.items():
        if head.startswith(bom) and not head.startswith(codecs.BOM_UTF8):
            raise ExportError(
                f"{name}: the file is {what}, not UTF-8 (its first bytes are a {what}"
                " byte-order mark); the SOR2 export is UTF-8 — download it again, or save it"
                " as UTF-8 if it was edited; nothing was changed"
            )
    return 3 if head.startswith(codecs.BOM_UTF8) else 0


def _decode_error_line(opener: Opener, name: str) -> ExportError:
    """Find where a file stops being UTF-8 (reading it again, by line) and say so."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    with opener() as raw:
        for number, line in enumerate(raw, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                byte = line[exc.start : exc.start + 1].hex()
                return ExportError(
                    f"{name} line {number}: not UTF-8 (byte 0x{byte} at byte {exc.start + 1}"
                    " of the line); the SOR2 export is UTF-8 — was the file saved again in"
                    " another encoding (Windows-1252, Latin-1)? Download it again; nothing"
                    " was changed"
                )
    return ExportError(f"{name}: not UTF-8 at its very end (cut short?); nothing was changed")


def read_rows(opener: Opener, name: str, key: str, mapping: SorMapping) -> Iterator[Row]:
    """Stream the rows of one export file (`opener` opens it as bytes; `name` names it in
    messages) for datatype `key`. Checks the header (the natural key's columns must be there)
    and every row (as many fields as the header, no control characters)."""
    with opener() as raw:
        head = raw.read(4)
        skip = _check_start(head, name)
    stream = opener()
    try:
        if skip:
            stream.read(skip)
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
        reader = csv.reader(text, delimiter=DELIMITER, quotechar='"', strict=True)
        try:
            try:
                header = next(reader)
            except StopIteration:
                raise ExportError(
                    f"{name}: the file is empty (no header line); the download was probably"
                    " cut short — nothing was changed",
                    transient=True,
                ) from None
            yield from _rows(reader, header, name, key, mapping)
        except UnicodeDecodeError:
            raise _decode_error_line(opener, name) from None
        except csv.Error as exc:
            raise ExportError(
                f"{name} line {reader.line_num}: not a valid CSV line ({exc}); nothing was changed"
            ) from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ExportError(
                f"{name}: the zip is damaged ({exc}) after line {reader.line_num}; the"
                " download was probably cut short or corrupted — nothing was changed",
                transient=True,
            ) from None
    finally:
        stream.close()


def _rows(
    reader: Any, header: list[str], name: str, key: str, mapping: SorMapping
) -> Iterator[Row]:
    if len(header) == 1 and "," in header[0]:
        raise ExportError(
            f"{name} line 1: the header has no ';' but has ',': the SOR2 export separates"
            " fields with ';' — was the file saved again as comma-separated? Nothing was"
            " changed"
        )
    cols = layout.columns([unwrap(h) for h in header], key, mapping)
    elements = cols.elements
    empty = [e for e in elements if not e]
    if empty:
        raise ExportError(
            f"{name} line 1: the header has an empty column name; nothing was changed"
        )
    twice = sorted({e for e in elements if elements.count(e) > 1})
    if twice:
        raise ExportError(
            f"{name} line 1: the header names {', '.join(twice)} twice; nothing was changed"
        )
    wanted = layout.BY_KEY[key].natural_key if key in layout.BY_KEY else ()
    missing = [e for e in wanted if e not in elements]
    if missing:
        raise ExportError(
            f"{name} line 1: no column {', '.join(missing)} (the header has"
            f" {bounded(', '.join(elements), 200)}); without it rows cannot be told apart —"
            " is this the right file? Nothing was changed"
        )
    # One action per column: 0 plain, 1 id (drop `.0`), 2 date, 3 date-time.
    actions = [
        1 if i in cols.ids else 3 if i in cols.times else 2 if i in cols.dates else 0
        for i in range(len(elements))
    ]
    plan = list(zip(elements, actions, strict=True))
    width = len(elements)
    previous_line = 1
    for fields in reader:
        line = previous_line + 1
        previous_line = reader.line_num
        if len(fields) != width:
            if not fields or fields == [""]:
                continue  # a blank line (often the last one)
            cut = " (the file may be cut short)" if len(fields) < width else ""
            raise ExportError(
                f"{name} line {line}: {len(fields)} fields where the header has {width}{cut};"
                " nothing was changed",
                transient=bool(cut),
            )
        record: dict[str, str] = {}
        for (element, action), value in zip(plan, fields, strict=True):
            if not value:
                continue
            if value[0] == "=":
                value = unwrap(value)
            if action:
                value = value.strip()
                if action == 1:
                    if value.endswith("0") and _ID_DOT_ZERO.match(value):
                        value = value.split(".", 1)[0]
                else:
                    value = normalise_date(value, timed=action == 3)
            if value:
                record[element] = value
        if bad_text.search("".join(record.values())):
            bad = next(e for e, v in record.items() if bad_text.search(v))
            raise ExportError(
                f"{name} line {line} column {bad}: the value {bounded(record[bad])!r} holds a"
                " control character; sorsync cannot store it — nothing was changed; report"
                " the file to Sundhedsdatastyrelsen"
            )
        yield Row(line, record)
