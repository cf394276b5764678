"""Which file of the SOR2 export holds which datatype, and how its columns are named.

The export's CSV files use the same PascalCase column names as the KRS records (docs/sor2.md
§4, confirmed for SorEntity), so a column becomes the record element of the same name. The few
exceptions go in `COLUMN_TO_ELEMENT`; a header that differs from a mapped element only in case
(`SORID`, `Sorid`) takes the mapping's spelling. Every other column is kept under its own name,
like an element KRS sends that the mapping does not know.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sorsync.mapping import Kind, SorMapping


@dataclass(frozen=True, slots=True)
class ExportFile:
    key: str  # the KRS datatype the file's rows belong to
    names: tuple[str, ...]  # file names as published (compared case-insensitively)
    natural_key: tuple[str, ...]  # elements that name a row across imports


# Both published spellings of each name (the documentation's and the listing's, docs/sor2.md §5).
EXPORT_FILES: tuple[ExportFile, ...] = (
    ExportFile(
        "sor/v2/sorentity/v1",
        ("SOREntity.csv", "SorEntity.csv", "SorEntity_daily.csv"),
        ("SorId", "FromDate"),
    ),
    ExportFile("sor/v2/shaksormap/v1", ("SHAKSORMap.csv",), ("ShakId", "SorId", "FromDate")),
    ExportFile(
        "sor/v2/sorreplacedentity/v1",
        ("SORReplacedEntities.csv", "SORReplacedEntity.csv"),
        ("SorId", "ReplacedBySorId"),
    ),
    ExportFile(
        "sor/v2/eanlocationcodeeditype/v1",
        ("LocationsCodeEDITypeMap.csv",),
        (),
    ),
    ExportFile("sor/v2/eanlocationcode/v1", ("LocationsCodes.csv", "LocationsCode.csv"), ()),
    ExportFile("sor/v2/editype/v1", ("EDITypes.csv",), ()),
    ExportFile("sor/v2/sorclassifications/v1", ("SORClassifications.csv",), ()),
    ExportFile("sor/v2/geolocation/v1", ("Geolocations.csv",), ()),
)
BY_KEY = {f.key: f for f in EXPORT_FILES}
DAILY = "sorentity_daily.csv"  # the one-file export: units active, starting or closing

# CSV column → KRS element, where the two differ. None are known today (the export's header is
# the KRS table's); a difference found in a real export goes here, once, for every reader.
COLUMN_TO_ELEMENT: dict[str, str] = {}

# Technical validity (NSP's table): a row whose ValidTo has passed is no longer current there.
VALID_FROM, VALID_TO = "ValidFrom", "ValidTo"


def export_file(key: str) -> ExportFile:
    """The file of datatype `key`; a datatype the export has no file for is an error."""
    found = BY_KEY.get(key)
    if found is None:
        known = ", ".join(f"{f.key} ({f.names[0]})" for f in EXPORT_FILES)
        raise KeyError(f"the SOR2 file export has no file for {key}; it has {known}")
    return found


def datatype_of(name: str) -> str | None:
    """The datatype whose file `name` (a base name, any case) is, or None."""
    lower = name.rsplit("/", 1)[-1].lower()
    for f in EXPORT_FILES:
        if lower in (n.lower() for n in f.names):
            return f.key
    return None


@dataclass(frozen=True, slots=True)
class Columns:
    """How one file's header is read: the element of each column and which need care."""

    elements: tuple[str, ...]
    ids: frozenset[int]  # positions whose `….0` is dropped (ids and codes)
    dates: frozenset[int]  # positions holding a date (or a date-time)
    times: frozenset[int]  # positions holding a date-time


def columns(header: Iterable[str], key: str, mapping: SorMapping) -> Columns:
    """The elements of a CSV header for datatype `key`, by `COLUMN_TO_ELEMENT` and the
    mapping's spelling; which columns are ids, dates and date-times (by the mapping, else by
    name: `…Id`, `…Code`; `…Date`; ValidFrom/ValidTo)."""
    mapped = mapping.for_key(key)
    kinds: dict[str, Kind] = {f.element: f.kind for f in mapped.fields} if mapped else {}
    spelled = {e.lower(): e for e in kinds}
    elements: list[str] = []
    ids: set[int] = set()
    dates: set[int] = set()
    times: set[int] = set()
    for i, raw in enumerate(header):
        name = raw.strip()
        element = COLUMN_TO_ELEMENT.get(name) or spelled.get(name.lower(), name)
        elements.append(element)
        kind = kinds.get(element)
        if kind is Kind.BIGINT or (
            kind in (None, Kind.TEXT) and element.endswith(("Id", "Code", "Number"))
        ):
            ids.add(i)
        if kind is Kind.TIMESTAMP or (kind is None and element in (VALID_FROM, VALID_TO)):
            times.add(i)
        elif kind is Kind.DATE or (kind is None and element.endswith("Date")):
            dates.add(i)
    return Columns(tuple(elements), frozenset(ids), frozenset(dates), frozenset(times))
