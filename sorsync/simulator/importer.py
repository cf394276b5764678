"""Load a SOR snapshot into the simulator's `Store` the way NSP's SOR importer does.

Two halves, both modelled on NSP's public code (trifork/sdm4-sorimporter and sdm4-core; facts only,
see docs/reference/krs-protocol.md §6.2 and §7.1):

* **Mapping** (`map_units`): SorTree units → the five SOR v1 datatypes, including the quirks a
  KRS client really sees (docs/simulator.md, "How the simulator imports SOR like NSP").
* **History** (`decide`, `apply_actions`): NSP's `AuditingPersister` compares each record with the
  stored versions of the same sorNummer and updates rows in place, shifts them or inserts new
  ones; units missing from the snapshot get ValidTo := snapshot date. Every touched row gets the
  run's one ModifiedDate, so KRS re-delivers it.

`load_snapshot` parses and maps outside the store lock and applies everything inside one
`store.import_run()`, so readers see either the old or the new state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

from sorsync.datatypes import APOTEK, PRAKSIS, SYGEHUS, SYGEHUSAFDELING, YDER, Datatype
from sorsync.simulator.sor2 import SOR2, Sor2Collector, Sor2Records, apply_sor2
from sorsync.simulator.sortree import (
    GENERAL_PRACTICE,
    HOSPITAL,
    PHARMACY,
    SPECIALIST_PRACTICE,
    SnapshotHeader,
    SorTreeError,
    SorTreeReader,
    SorUnit,
)
from sorsync.simulator.store import Row, Store, Table

TZ = ZoneInfo("Europe/Copenhagen")
END_OF_TIME = datetime(2999, 12, 31, tzinfo=TZ)  # NSP's Dates.THE_END_OF_TIME, a real value
VALID_FROM = "validFrom"
VALID_TO = "validTo"

# NSP's own code → text tables (UnitTypeMapper / SpecialityMapper), exactly as it writes them,
# including its wrong key for ergoterapiklinik (a SNOMED description id,
# docs/reference/sor-model.md §5.3).
UNIT_TYPE_TEXTS: dict[int, str] = {
    550811000005108: "administrativ enhed",
    550871000005101: "akut modtage enhed",
    309964003: "billeddiagnostisk enhed",
    2104671000005110: "ergoterapiklinik",
    550841000005107: "forskningsenhed",
    550861000005106: "fysioterapi- og ergoterapiklinik",
    547011000005103: "fysioterapiklinik",
    309904001: "intensiv enhed",
    550631000005103: "jordemoderklinik",
    550851000005109: "klinisk enhed",
    726: "KONVAFD",
    551611000005102: "operationsgang",
    550821000005102: "service enhed",
    225728007: "skadestue",
    554071000005100: "sygehusapotek",
    550831000005104: "uddannelsesenhed",
}
SPECIALITY_TEXTS: dict[int, str] = {
    408443003: "almen medicin",
    394577000: "anæstesiologi",
    394821009: "arbejdsmedicin",
    394588006: "børne- og ungdomspsykiatri",
    394582007: "dermato-venerologi",
    394914008: "diagnostisk radiologi",
    394583002: "endokrinologi",
    394811001: "geriatri",
    394585009: "gynækologi og obstetrik",
    408472002: "hepatologi",
    394803006: "hæmatologi",
    394807007: "infektionsmedicin",
    419192003: "intern medicin",
    394579002: "kardiologi",
    408463005: "karkirurgi",
    394609007: "kirurgi",
    551411000005104: "kirurgisk gastroenterologi",
    394596001: "klinisk biokemi",
    394600006: "klinisk farmakologi",
    394601005: "klinisk fysiologi og nuklearmedicin",
    394580004: "klinisk genetik",
    421661004: "klinisk immunologi",
    408454008: "klinisk mikrobiologi",
    394809005: "klinisk neurofysiologi",
    394592004: "klinisk onkologi",
    418112009: "lungesygdomme",
    394805004: "medicinsk allergologi",
    394584008: "medicinsk gastroenterologi",
    394589003: "nefrologi",
    394610002: "neurokirurgi",
    394591006: "neurologi",
    394812008: "odontologi",
    394594003: "oftalmologi",
    394801008: "ortopædisk kirurgi",
    394604002: "oto-rhino-laryngologi",
    394915009: "patologisk anatomi og cytologi",
    394611003: "plastik kirurgi",
    394587001: "psykiatri",
    394537008: "pædiatri",
    394810000: "reumatologi",
    554011000005107: "Retsmedicin",
    394581000: "samfundsmedicin",
    394603008: "thoraxkirurgi",
    408448007: "tropemedicin",
    394612005: "urologi",
}

PRACTICE_TYPES = (GENERAL_PRACTICE, SPECIALIST_PRACTICE)
DATATYPES_IN_ORDER: tuple[Datatype, ...] = (SYGEHUS, SYGEHUSAFDELING, PRAKSIS, YDER, APOTEK)


class SnapshotImportError(ValueError):
    """The snapshot cannot be imported; the message names the unit and what to fix."""


# --- mapping ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """What NSP's SAX handler holds for a unit after pushing values down from its parent:
    field by field, the unit's own value, else the parent's (at every depth here)."""

    street: str | None
    building: str | None
    postcode: str | None
    district: str | None
    email: str | None
    website: str | None
    phone: str | None
    ean: int | None
    afdeling: bool  # mapped to sygehusafdeling (NSP descends only below those)


_DATES: dict[date, datetime] = {}
_STRINGS: dict[str, str] = {}


def local_midnight(day: date) -> datetime:
    """A SOR date as NSP stores it: midnight, Danish local time (shared objects save memory)."""
    value = _DATES.get(day)
    if value is None:
        value = _DATES[day] = datetime(day.year, day.month, day.day, tzinfo=TZ)
    return value


def _shared(value: str) -> str:
    if len(_STRINGS) > 200_000:
        _STRINGS.clear()
    return _STRINGS.setdefault(value, value)


def _java(value: str | None) -> str:
    # NSP builds vejnavn with Java string concatenation, which renders null as "null".
    return "null" if value is None else value


def strip_leading_zeros(value: str) -> str:
    """NSP's yder nummer: leading zeros removed, but a lone zero kept ("000" → "0")."""
    return value.lstrip("0") or "0"


def _held(unit: SorUnit, parent: _Held | None) -> _Held:
    street = building = postcode = district = None
    # NSP's SAX handler sets a property for every element of that name inside the unit, so a
    # visiting or activity address's fields overwrite the postal one's, field by field.
    for block in (unit.postal, unit.visiting, unit.activity):
        if block is None:
            continue
        street = block.street if block.street is not None else street
        building = block.building if block.building is not None else building
        postcode = block.postcode if block.postcode is not None else postcode
        district = block.district if block.district is not None else district
    virtual = unit.virtual
    email = virtual.email if virtual else None
    website = virtual.website if virtual else None
    phone = virtual.phone if virtual else None
    ean = unit.ean
    if parent is not None:
        street = street if street is not None else parent.street
        building = building if building is not None else parent.building
        postcode = postcode if postcode is not None else parent.postcode
        district = district if district is not None else parent.district
        email = email if email is not None else parent.email
        website = website if website is not None else parent.website
        phone = phone if phone is not None else parent.phone
        if unit.ean_inherited:
            ean = parent.ean
    return _Held(street, building, postcode, district, email, website, phone, ean, False)


def _put(values: dict[str, object], key: str, value: object) -> None:
    if value is not None:  # missing = NULL; saves memory on a million rows
        values[key] = value


def _common(unit: SorUnit, held: _Held) -> dict[str, object]:
    if unit.from_date is None:
        raise SnapshotImportError(
            f"SOR unit {unit.sor_id} has no SorStatus/FromDate; NSP's importer cannot store a "
            "row without a valid-from date - fix the snapshot"
        )
    to_day = unit.to_date or unit.ean_to_date  # NSP: an EAN block's ToDate leaks into the unit
    values: dict[str, object] = {"sorNummer": unit.sor_id}
    _put(values, "eanLokationsnummer", held.ean)
    _put(values, "navn", unit.name)
    values[VALID_FROM] = local_midnight(unit.from_date)
    # NSP stores SOR's ToDate (the last valid day) at midnight, without adding a day.
    values[VALID_TO] = local_midnight(to_day) if to_day is not None else END_OF_TIME
    return values


def _address(values: dict[str, object], held: _Held) -> None:
    values["vejnavn"] = _shared(f"{_java(held.street)} {_java(held.building)}")
    _put(values, "telefon", held.phone)
    _put(values, "postnummer", held.postcode and _shared(held.postcode))
    _put(values, "bynavn", held.district and _shared(held.district))
    _put(values, "email", held.email)
    _put(values, "www", held.website)


def _speciality(values: dict[str, object], unit: SorUnit) -> None:
    if unit.specialities:
        # NSP's handler keeps the LAST SpecialityCode it meets (each one overwrites the field).
        code = unit.specialities[-1]
        values["hovedSpecialeKode"] = _shared(str(code))
        _put(values, "hovedSpecialeTekst", SPECIALITY_TEXTS.get(code))


def _pharmacy_numbers(unit: SorUnit, values: dict[str, object]) -> None:
    if unit.pharmacy_id is None:
        return
    parts = unit.pharmacy_id.split(",")
    try:
        values["apotekNummer"] = int(parts[0])
        if len(parts) > 1:
            values["filialNummer"] = int(parts[1])
    except ValueError:
        raise SnapshotImportError(
            f"SOR unit {unit.sor_id}: PharmacyIdentifier {unit.pharmacy_id!r} is not "
            "'apoteksnummer,filialnummer' in digits; NSP's importer fails on it - fix the snapshot"
        ) from None


@dataclass(slots=True)
class MappingStats:
    units: int = 0
    hospital_units_skipped: int = 0  # hospital OEs without SHAK, or below one (NSP drops them)
    nested_units_ignored: int = 0  # OEs below a practice's or pharmacy's top-level units


def map_units(
    units: Iterable[SorUnit], stats: MappingStats | None = None
) -> Iterator[tuple[Datatype, dict[str, object]]]:
    """SorTree units (document order) → (datatype, record values by element name)."""
    stats = stats if stats is not None else MappingStats()
    stack: list[_Held] = []  # by depth: the chain of ancestors of the current unit
    for unit in units:
        stats.units += 1
        del stack[unit.depth :]
        parent = stack[-1] if stack else None
        held = _held(unit, parent)
        stack.append(held)
        kind = unit.institution_type
        if unit.level == "SI":
            if kind == HOSPITAL:
                values = _common(unit, held)
                _put(values, "nummer", unit.shak)
                _address(values, held)
                yield SYGEHUS, values
            elif kind in PRACTICE_TYPES:
                values = _common(unit, held)
                _put(values, "regionCode", unit.owner_region_code)
                yield PRAKSIS, values
        elif unit.level == "OE":
            assert parent is not None
            if kind == HOSPITAL:
                # NSP descends only into units with a SHAK code: a unit without one is skipped
                # together with its whole subtree, even SHAK-bearing units below it.
                if unit.shak is None or (unit.depth > 2 and not parent.afdeling):
                    stats.hospital_units_skipped += 1
                    continue
                held.afdeling = True
                values = _common(unit, held)
                if unit.depth == 2:
                    _put(values, "sygehusSorNummer", unit.institution_id)
                else:
                    _put(values, "overafdelingSorNummer", unit.parent_id)
                _put(values, "underlagtSygehusSorNummer", unit.institution_id)
                _put(values, "afdelingTypeKode", unit.unit_type)
                if unit.unit_type is not None:
                    _put(values, "afdelingTypeTekst", UNIT_TYPE_TEXTS.get(unit.unit_type))
                _speciality(values, unit)
                _put(values, "nummer", unit.shak)
                _address(values, held)
                yield SYGEHUSAFDELING, values
            elif kind in PRACTICE_TYPES or kind == PHARMACY:
                if unit.depth > 2:
                    stats.nested_units_ignored += 1  # NSP reads only the SI's direct units
                    continue
                values = _common(unit, held)
                if kind == PHARMACY:
                    _pharmacy_numbers(unit, values)
                    _address(values, held)
                    yield APOTEK, values
                else:
                    _put(values, "praksisSorNummer", unit.institution_id)
                    if unit.provider_id is not None:
                        values["nummer"] = strip_leading_zeros(unit.provider_id)
                    _address(values, held)
                    _speciality(values, unit)
                    yield YDER, values


# --- history: NSP's AuditingPersister as a pure decision ---------------------------------------


@dataclass(frozen=True, slots=True)
class Insert:
    values: Mapping[str, object]  # a new row (new PID)


@dataclass(frozen=True, slots=True)
class SetValidTo:
    """UPDATE … SET ValidTo WHERE sorNummer = key AND ValidFrom = match (may hit several rows)."""

    match_valid_from: datetime
    valid_to: datetime


@dataclass(frozen=True, slots=True)
class SetValidFrom:
    match_valid_from: datetime
    valid_from: datetime


@dataclass(frozen=True, slots=True)
class Replace:
    """UPDATE all columns WHERE sorNummer = key AND ValidFrom = … AND ValidTo = … (same PID)."""

    match_valid_from: datetime
    match_valid_to: datetime
    values: Mapping[str, object]


Action = Insert | SetValidTo | SetValidFrom | Replace


def _compared(datatype: Datatype) -> tuple[str, ...]:
    return tuple(f.element for f in datatype.fields if f.element not in (VALID_FROM, VALID_TO))


_COMPARED = {dt.key: _compared(dt) for dt in DATATYPES_IN_ORDER}


def data_equal(new: Mapping[str, object], old: Mapping[str, object], fields: Iterable[str]) -> bool:
    """NSP's `currentRowEquals`: every mapped column except validFrom/validTo. A blank new
    string equals a NULL column, and a new number 0 equals NULL (JDBC getLong reads NULL as 0)."""
    for name in fields:
        a = new.get(name)
        b = old.get(name)
        if a is None:
            if b is not None:
                return False
        elif b is None:
            if isinstance(a, str) and not a.strip():
                continue
            if isinstance(a, int) and a == 0:
                continue
            return False
        elif a != b:
            return False
    return True


def _interval(values: Mapping[str, object]) -> tuple[datetime, datetime]:
    start = values[VALID_FROM]
    end = values[VALID_TO]
    assert isinstance(start, datetime)
    assert isinstance(end, datetime)
    return start, end


def overlapping(versions: Iterable[Row], record: Mapping[str, object]) -> list[Row]:
    """Rows whose [ValidFrom, ValidTo] touches the record's (both ends inclusive), by ValidTo."""
    start, end = _interval(record)
    found = []
    for row in versions:
        row_start, row_end = _interval(row.values)
        if not (row_end < start or row_start > end):
            found.append(row)
    found.sort(key=lambda r: (_interval(r.values)[1], r.pid))
    return found


def decide(
    existing: Sequence[Row], record: Mapping[str, object], fields: Sequence[str]
) -> list[Action]:
    """What NSP's importer writes for one record, given the overlapping rows of its sorNummer
    (as `overlapping` returns them). Each branch is NSP's, including the odd ones."""
    if not existing:
        return [Insert(record)]
    start, end = _interval(record)
    actions: list[Action] = []
    insert = True
    for row in existing:
        row_start, row_end = _interval(row.values)
        equal = data_equal(record, row.values, fields)
        if row_start < start:  # the new version starts later
            if row_end == start:
                continue  # the old row ends where the new one begins: not in range
            if row_end > end:  # the new version lies inside the old one
                if not equal:  # split the old one around it
                    actions.append(Insert({**row.values, VALID_FROM: end}))
                    actions.append(SetValidTo(row_start, start))
            elif row_end < end:
                if equal:
                    actions.append(SetValidTo(row_start, end))
                    insert = False
                else:
                    actions.append(SetValidTo(row_start, start))
            else:  # same ValidTo
                if equal:
                    insert = False  # a later FromDate alone is ignored
                else:
                    actions.append(SetValidTo(row_start, start))
        elif row_start > start:  # the new version starts earlier
            if end > row_end:
                if equal:
                    # The second update matches on the old ValidFrom, which the first one just
                    # changed, so it normally hits nothing: NSP's behaviour, kept.
                    actions.append(SetValidFrom(row_start, start))
                    actions.append(SetValidTo(row_start, end))
                else:
                    actions.append(Replace(row_start, row_end, record))
                insert = False
            elif end < row_end:
                if equal:
                    actions.append(SetValidFrom(row_start, start))
                    insert = False
                else:
                    actions.append(SetValidFrom(row_start, end))
            else:
                actions.append(Replace(row_start, row_end, record))
                insert = False
        else:  # same ValidFrom
            if end > row_end:  # later ValidTo (reopened): only ValidTo is written
                actions.append(SetValidTo(row_start, end))
                insert = False
            elif end < row_end:  # earlier ValidTo (closed)
                if equal:
                    actions.append(SetValidTo(row_start, end))
                    insert = False
                else:  # the old row is shifted to start at the new ValidTo; a new row follows
                    actions.append(SetValidFrom(row_start, end))
            else:
                if not equal:
                    actions.append(Replace(row_start, row_end, record))
                insert = False
    if insert:
        actions.append(Insert(record))
    return actions


def close_missing(versions: Iterable[Row], snapshot_start: datetime) -> list[SetValidTo]:
    """A sorNummer missing from the snapshot: each of its rows still valid on the snapshot date
    (ValidTo ≥ snapshot date) gets ValidTo := snapshot date, in place."""
    return [
        SetValidTo(_interval(row.values)[0], snapshot_start)
        for row in versions
        if _interval(row.values)[1] >= snapshot_start
    ]


@dataclass(slots=True)
class Counts:
    records: int = 0  # records of this datatype in the snapshot
    inserted: int = 0
    updated: int = 0  # rows changed in place (data, ValidFrom or ValidTo)
    closed: int = 0  # rows closed because their unit left the snapshot
    unchanged: int = 0  # records that wrote nothing

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.closed


def apply_actions(
    table: Table, key: int, actions: Sequence[Action], modified: int
) -> tuple[int, int]:
    """Carry out `decide`'s actions in order against the table's current rows of `key`, each
    update matching rows as they are by then. Returns (rows inserted, rows updated)."""
    inserted = updated = 0
    for action in actions:
        if isinstance(action, Insert):
            table.insert(action.values, modified)
            inserted += 1
            continue
        for row in table.versions(key):
            row_start, row_end = _interval(row.values)
            if row_start != action.match_valid_from:
                continue
            if isinstance(action, SetValidTo):
                new = {**row.values, VALID_TO: action.valid_to}
            elif isinstance(action, SetValidFrom):
                new = {**row.values, VALID_FROM: action.valid_from}
            else:
                if row_end != action.match_valid_to:
                    continue
                new = dict(action.values)
            table.update(row.pid, new, modified)
            updated += 1
    return inserted, updated


@dataclass(slots=True)
class ImportReport:
    snapshot_date: date
    created_at: datetime | None
    modified: int  # the run's ModifiedDate, epoch seconds
    units: int
    hospital_units_skipped: int
    nested_units_ignored: int
    counts: dict[str, Counts] = field(default_factory=dict)  # by datatype key

    @property
    def written(self) -> int:
        return sum(c.written for c in self.counts.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "snapshot_date": self.snapshot_date.isoformat(),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "modified": self.modified,
            "units": self.units,
            "hospital_units_skipped": self.hospital_units_skipped,
            "nested_units_ignored": self.nested_units_ignored,
            "datatypes": {
                key: {
                    "records": c.records,
                    "inserted": c.inserted,
                    "updated": c.updated,
                    "closed": c.closed,
                    "unchanged": c.unchanged,
                }
                for key, c in self.counts.items()
            },
        }


def import_records(
    store: Store,
    header: SnapshotHeader,
    records: dict[str, list[dict[str, object] | None]],
    stats: MappingStats,
    *,
    at: datetime | None = None,
    sor2: Sor2Records | None = None,
) -> ImportReport:
    """Apply one snapshot's mapped records as one NSP import run (one ModifiedDate); with
    `sor2`, the SOR2 records of the same snapshot in the same run."""
    snapshot_start = local_midnight(header.snapshot_date)
    with store.import_run(at) as modified:
        report = ImportReport(
            header.snapshot_date,
            header.created_at,
            modified,
            stats.units,
            stats.hospital_units_skipped,
            stats.nested_units_ignored,
        )
        for datatype in DATATYPES_IN_ORDER:
            if datatype.key not in store.tables:
                continue
            table = store.table(datatype.key)
            fields = _COMPARED[datatype.key]
            counts = report.counts[datatype.key] = Counts()
            batch = records.get(datatype.key, [])
            present: set[int] = set()
            for i, values in enumerate(batch):
                assert values is not None
                batch[i] = None  # let the record go once stored: peak memory ≈ one copy
                key = values["sorNummer"]
                assert isinstance(key, int)
                present.add(key)
                counts.records += 1
                actions = decide(overlapping(table.versions(key), values), values, fields)
                if actions:
                    inserted, updated = apply_actions(table, key, actions, modified)
                    counts.inserted += inserted
                    counts.updated += updated
                else:
                    counts.unchanged += 1
            for key in [k for k in table.by_key if k not in present]:
                closing = close_missing(table.versions(key), snapshot_start)
                if closing:
                    counts.closed += apply_actions(table, key, closing, modified)[1]
        if sor2 is not None:
            written = apply_sor2(
                store, sor2, header.snapshot_date, modified, end_of_time=END_OF_TIME, zone=TZ
            )
            for key, c in written.items():
                report.counts[key] = Counts(c.records, c.inserted, c.updated, c.closed, c.unchanged)
        return report


def snapshot_time(header: SnapshotHeader) -> datetime:
    """A snapshot's own time: its CreatedAtTime (Danish local time when it has no offset), else
    its SnapshotDate at local midnight."""
    created = header.created_at
    if created is None:
        return local_midnight(header.snapshot_date)
    return created if created.tzinfo is not None else created.replace(tzinfo=TZ)


def load_snapshot(
    store: Store,
    source: Path | str | BinaryIO,
    *,
    at: datetime | None = None,
    reproducible: bool = False,
) -> ImportReport:
    """Import one SorTree snapshot (XML, optionally gzip-compressed) into `store` as NSP would.

    Loading the next day's snapshot afterwards produces exactly the row changes a real KRS would
    deliver the next night. `at` sets the run's ModifiedDate (default: now; always later than the
    previous run's). With `reproducible` and no `at`, the run is stamped with the snapshot's own
    time (`snapshot_time`) instead of now: a fresh store loaded with the same snapshots in the
    same order then serves the same rows with the same PIDs and tokens, so a replica's delta
    after a simulator restart fetches nothing. Raises `SorTreeError` / `SnapshotImportError`
    with a message for people.
    """
    stats = MappingStats()
    records: dict[str, list[dict[str, object] | None]] = {}
    # One pass over the tree feeds both: the v1 mapping and, when the store serves SOR2, the
    # SOR2 records (sor2.py).
    collector = Sor2Collector() if any(key in store.tables for key in SOR2) else None
    with SorTreeReader(source) as tree:
        header = tree.header
        units: Iterable[SorUnit] = tree.units()
        if collector is not None:
            units = collector.watch(units)
        for datatype, values in map_units(units, stats):
            records.setdefault(datatype.key, []).append(values)
    if at is None and reproducible:
        at = snapshot_time(header)
    sor2 = collector.records if collector is not None else None
    return import_records(store, header, records, stats, at=at, sor2=sor2)


__all__ = [
    "END_OF_TIME",
    "Action",
    "Counts",
    "ImportReport",
    "Insert",
    "Replace",
    "SetValidFrom",
    "SetValidTo",
    "SnapshotImportError",
    "SorTreeError",
    "apply_actions",
    "close_missing",
    "data_equal",
    "decide",
    "load_snapshot",
    "local_midnight",
    "map_units",
    "overlapping",
    "snapshot_time",
]
