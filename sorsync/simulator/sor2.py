"""SOR2 in the simulator: the `sor/v2/*` datatypes built from the same SorTree snapshots that
feed the v1 views, and the shape they are rendered in.

* **Records** (`Sor2Collector`): one `sorentity` row per unit version at every level (IE, SI,
  OE) with the hierarchy flattened into it, one `shaksormap` row per SHAK code carried by a
  unit, one `sorreplacedentity` row per replaced-by link, one `eanlocationcode` row per EAN
  block a unit has of its own (an inherited EAN is the parent's row). Element names are those of
  `sorsync.mapping.DEFAULTS`; a NULL is simply absent (NSP omits NULL columns).
* **History** (`apply_sor2`): a new FromDate is a new row (new PID) and closes the previous
  version's ToDate; a change with the same FromDate rewrites the row in place (same PID, new
  ModifiedDate, so KRS re-delivers it); a unit missing from a later snapshot gets ToDate = the
  day before the snapshot. ValidFrom is the ModifiedDate of the import that wrote the row;
  ValidTo is NSP's open end unless the row was superseded in NSP's table (a back-dated version,
  a link that disappeared).
* **Shape** (`RecordShape`): the record namespace, how FromDate/ToDate are written and, per
  datatype, renamed, dropped and added elements, so tests can show that the replica keeps
  whatever a source sends. The real SOR2 namespace is not published; the default follows the
  v1 pattern (`sorsync.datatypes.SOR_NAMESPACE`).

The fictive tree has no coordinates: `coordinates` derives stable ETRS89 / UTM 32 (EPSG:25832)
points inside Denmark from the postcode and street.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from sorsync.datatypes import (
    SOR2_DATATYPES,
    SOR2_OPTIONAL_DATATYPES,
    SOR_NAMESPACE,
    Datatype,
    lookup,
    parse_key,
)
from sorsync.mapping import DEFAULTS
from sorsync.simulator.render import escape_text
from sorsync.simulator.sortree import (
    GENERAL_PRACTICE,
    HOSPITAL,
    PHARMACY,
    SPECIALIST_PRACTICE,
    Address,
    SorUnit,
)
from sorsync.simulator.store import Row, Store, Table

SORENTITY, SHAKSORMAP, REPLACED = SOR2_DATATYPES
(EANLOCATION,) = SOR2_OPTIONAL_DATATYPES
SERVED_SOR2: tuple[str, ...] = (*SOR2_DATATYPES, *SOR2_OPTIONAL_DATATYPES)
SOR2: dict[str, Datatype] = {key: lookup(key) for key in SERVED_SOR2}

# Element order of each datatype: the mapping's, so the simulator renders what sorsync expects.
ELEMENTS: dict[str, tuple[str, ...]] = {
    m.key: tuple(dict.fromkeys(f.element for f in m.fields)) for m in DEFAULTS.values()
}

VALID_FROM, VALID_TO = "ValidFrom", "ValidTo"
TECHNICAL = frozenset({VALID_FROM, VALID_TO})

DateStyle = Literal["mixed", "date", "datetime"]
DATE_STYLES: tuple[str, ...] = get_args(DateStyle)

# Texts of the codes the generator uses (sorsync/simulator/generator.py); fictive but shaped
# like SOR's classification texts.
OWNER_TYPE_TEXTS: dict[int, str] = {
    550881000005103: "region",
    547211000005108: "kommune",
    550891000005100: "privat",
    550901000005104: "stat",
}
INSTITUTION_TYPE_TEXTS: dict[int, str] = {
    HOSPITAL: "sygehus",
    GENERAL_PRACTICE: "almen lægepraksis",
    SPECIALIST_PRACTICE: "speciallægepraksis",
    PHARMACY: "apotek",
    547011000005103: "fysioterapiklinik",
    550641000005106: "kiropraktorklinik",
    550681000005102: "tandlægepraksis",
    264361005: "sundhedscenter",
    550631000005103: "jordemoderklinik",
}
REGION_NAMES: dict[int, str] = {
    1081: "Region Nordjylland",
    1082: "Region Midtjylland",
    1083: "Region Syddanmark",
    1084: "Region Hovedstaden",
    1085: "Region Sjælland",
}


def organisational_level(unit: SorUnit) -> tuple[str, str]:
    """(code, name) of the unit's organisational level (SOR's 2025 classification, fictive
    codes): the depth in the tree, named by level."""
    if unit.level == "IE":
        return "1", "Institutionsejer"
    if unit.level == "SI":
        return "2", "Sundhedsinstitution"
    return str(unit.depth + 1), f"Organisatorisk enhed, niveau {unit.depth - 1}"


def fictive_cvr(seed: int) -> str:
    """A fictive CVR number that passes the modulus-11 check (weights 2,7,6,5,4,3,2,1)."""
    weights = (2, 7, 6, 5, 4, 3, 2)
    body = 10_000_000 + seed % 8_999_999
    while True:
        digits = str(body)[:7]
        check = (11 - sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11) % 11
        if check < 10:
            return digits + str(check)
        body += 10


# --- coordinates ---------------------------------------------------------------------------

# (first postcode, last postcode, easting, northing): a rough centre of each postcode area in
# ETRS89 / UTM 32, from Copenhagen to North Jutland.
_AREAS: tuple[tuple[int, int, int, int], ...] = (
    (1000, 2999, 723_000, 6_176_000),  # Copenhagen and suburbs
    (3000, 3699, 700_000, 6_200_000),  # North Zealand
    (3700, 3799, 870_000, 6_122_000),  # Bornholm
    (4000, 4999, 660_000, 6_150_000),  # Zealand, Lolland-Falster
    (5000, 5999, 590_000, 6_136_000),  # Funen
    (6000, 6999, 520_000, 6_100_000),  # South Jutland
    (7000, 7999, 520_000, 6_190_000),  # Vejle, Herning, Thy
    (8000, 8999, 570_000, 6_225_000),  # Aarhus and East Jutland
    (9000, 9999, 555_000, 6_320_000),  # North Jutland
)
E_RANGE = (450_000.0, 880_000.0)  # inside Denmark (EPSG:25832)
N_RANGE = (6_050_000.0, 6_400_000.0)
_SPREAD = 25_000  # metres around an area's centre


def coordinates(postcode: str | None, street: str | None, building: str | None) -> tuple[str, str]:
    """A stable (easting, northing) in metres with two decimals, inside Denmark, near the
    postcode's area: the same address always gets the same point."""
    code = int(postcode) if postcode and postcode.isdigit() else 0
    east, north = 690_000, 6_170_000  # central Zealand for an unknown postcode
    for first, last, e, n in _AREAS:
        if first <= code <= last:
            east, north = e, n
            break
    # crc32, not hash(): Python salts str hashes per process, and the point must be stable.
    mix = zlib.crc32(f"{code}|{street or ''}|{building or ''}".encode())
    de = (mix & 0xFFFF) / 0xFFFF * 2 - 1
    dn = (mix >> 16) / 0xFFFF * 2 - 1
    easting = min(max(east + de * _SPREAD + code % 97 * 13.37, E_RANGE[0]), E_RANGE[1])
    northing = min(max(north + dn * _SPREAD + code % 89 * 11.11, N_RANGE[0]), N_RANGE[1])
    return f"{easting:.2f}", f"{northing:.2f}"


# --- records -------------------------------------------------------------------------------

_ADDRESS_PREFIXES = ("PostalAddress", "VisitingAddress", "ActivityAddress")


_ADDRESS_PARTS = (
    "StreetName", "StreetBuildingId", "FloorId", "SuiteId", "PostCodeId", "DistrictName",
    "RegionCode", "CoordETRS89z32EMeasure", "CoordETRS89z32NMeasure",
)  # fmt: skip
_ADDRESS_NAMES = {
    prefix: tuple(prefix + part for part in _ADDRESS_PARTS) for prefix in _ADDRESS_PREFIXES
}
_POINTS: dict[tuple[str | None, str | None, str | None], tuple[str, str]] = {}


def _address_values(address: Address, region: int | None) -> tuple[object, ...]:
    """The parts of one address in `_ADDRESS_PARTS` order (None = omitted)."""
    point: tuple[str | None, str | None] = (None, None)
    if address.postcode or address.street:
        where = (address.postcode, address.street, address.building)
        known = _POINTS.get(where)
        if known is None:
            if len(_POINTS) > 200_000:
                _POINTS.clear()
            known = _POINTS[where] = coordinates(*where)
        point = known
    return (
        address.street, address.building, address.floor, address.suite, address.postcode,
        address.district, str(region) if region is not None else None, *point,
    )  # fmt: skip


def _ordered(values: Mapping[str, object], key: str) -> dict[str, object]:
    """The values in the datatype's element order, NULLs left out; the technical columns are
    kept as placeholders (filled when the row is written), so the row renders in that order."""
    order = ELEMENTS[key]
    out = {
        name: values.get(name)
        for name in order
        if values.get(name) is not None or name in TECHNICAL
    }
    for name, value in values.items():  # anything outside the mapping goes last
        if name not in out and value is not None:
            out[name] = value
    return out


def entity_values(
    unit: SorUnit, owner: SorUnit | None, institution: SorUnit | None
) -> dict[str, object]:
    """The sorentity record of one unit (its current version in the snapshot)."""
    from sorsync.simulator.importer import SPECIALITY_TEXTS, UNIT_TYPE_TEXTS  # import cycle

    if unit.from_date is None:
        raise ValueError(f"SOR unit {unit.sor_id} has no SorStatus/FromDate; fix the snapshot")
    values: dict[str, object] = {}

    def put(name: str, value: object) -> None:
        if value is not None:
            values[name] = value

    put("SorId", unit.sor_id)
    put("SorType", unit.level)
    put("EntityName", unit.name or None)
    if unit.level == "IE":
        type_name = OWNER_TYPE_TEXTS.get(unit.owner_type or 0)
    elif unit.level == "SI":
        type_name = INSTITUTION_TYPE_TEXTS.get(unit.institution_type or 0)
    else:
        type_name = UNIT_TYPE_TEXTS.get(unit.unit_type or 0)
    put("EntityTypeName", type_name)
    put("FromDate", unit.from_date)
    put("ToDate", unit.to_date)
    put("FirstFromDate", unit.first_from_date)
    put("ShakId", unit.shak)
    level_code, level_name = organisational_level(unit)
    put("OrganisationalLevelCode", level_code)
    put("OrganisationalLevelName", level_name)
    # placeholders in element order, filled when the row is written (apply_sor2)
    values[VALID_FROM] = values[VALID_TO] = None
    put("UniqueCurrentKey", f"{unit.sor_id}-{unit.from_date:%Y%m%d}")
    put("ParentSorId", unit.parent_id)
    if institution is not None:
        put("HealthInstitutionSorId", institution.sor_id)
        put("HealthInstitutionEntityName", institution.name or None)
        put(
            "HealthInstitutionEntityTypeName",
            INSTITUTION_TYPE_TEXTS.get(institution.institution_type or 0),
        )
    if owner is not None:
        put("InstitutionOwnerSorId", owner.sor_id)
        put("InstitutionOwnerEntityName", owner.name or None)
        put("InstitutionOwnerEntityTypeName", OWNER_TYPE_TEXTS.get(owner.owner_type or 0))
        put("InstitutionOwnerCvrNumberId", fictive_cvr(owner.sor_id))
    put("EanLocationCode", unit.effective_ean)
    region = unit.region_code or unit.owner_region_code
    if unit.effective_ean is not None:
        put("EanLocationCodeRegionName", REGION_NAMES.get(region or 0))
    put("ProviderId", unit.provider_id)
    put("PharmacyId", unit.pharmacy_id)
    put("LocalCode", unit.local_code)
    virtual = unit.effective_virtual
    if virtual is not None:
        put("VirtualAddressTelephoneNumber", virtual.phone)
        put("VirtualAddressWebsite", virtual.website)
        put("VirtualAddressEmailAddress", virtual.email)
    addresses = (unit.effective_postal, unit.effective_visiting, unit.effective_activity)
    done: dict[int, tuple[object, ...]] = {}  # visiting and activity are often the postal one
    for prefix, address in zip(_ADDRESS_PREFIXES, addresses, strict=True):
        if address is None:
            continue
        parts = done.get(id(address))
        if parts is None:
            parts = done[id(address)] = _address_values(address, unit.owner_region_code)
        for name, value in zip(_ADDRESS_NAMES[prefix], parts, strict=True):
            if value is not None:
                values[name] = value
    for n, code in enumerate(unit.specialities[:8], start=1):
        put(f"PrioritizedEntitySpeciality{n}Id", str(code))
        put(f"PrioritizedEntitySpeciality{n}Name", SPECIALITY_TEXTS.get(code))
    return values  # already in the mapping's element order


@dataclass(slots=True)
class Sor2Records:
    """One snapshot's SOR2 records, by datatype, keyed the way `apply_sor2` matches them."""

    # by SorId; by (ShakId, SorId); by (replaced SorId, replacing SorId); by (SorId, EAN)
    entities: dict[int, dict[str, object]] = field(default_factory=dict)
    shak: dict[tuple[str, int], dict[str, object]] = field(default_factory=dict)
    replaced: dict[tuple[int, int], dict[str, object]] = field(default_factory=dict)
    ean: dict[tuple[int, int], dict[str, object]] = field(default_factory=dict)


class Sor2Collector:
    """Collects SOR2 records from units as they stream past (`watch`), keeping only the chain
    of ancestors, like the v1 mapping does."""

    def __init__(self) -> None:
        self.records = Sor2Records()
        self._stack: list[SorUnit] = []

    def watch(self, units: Iterable[SorUnit]) -> Iterator[SorUnit]:
        for unit in units:
            self.add(unit)
            yield unit

    def add(self, unit: SorUnit) -> None:
        del self._stack[unit.depth :]
        owner = self._stack[0] if unit.level != "IE" and self._stack else None
        if unit.level == "IE":
            owner = unit
        institution = unit if unit.level == "SI" else None
        if unit.level == "OE" and len(self._stack) > 1:
            institution = self._stack[1]
        self._stack.append(unit)
        values = entity_values(unit, owner, institution)
        records = self.records
        records.entities[unit.sor_id] = values
        level_code, level_name = organisational_level(unit)
        if unit.shak is not None:
            records.shak[(unit.shak, unit.sor_id)] = _ordered(
                {
                    "ShakId": unit.shak,
                    "SorId": unit.sor_id,
                    "FromDate": unit.from_date,
                    "ToDate": unit.to_date,
                    "OrganisationalLevelCode": level_code,
                    "OrganisationalLevelName": level_name,
                },
                SHAKSORMAP,
            )
        if unit.ean is not None:
            records.ean[(unit.sor_id, unit.ean)] = _ordered(
                {
                    "EanLocationCode": unit.ean,
                    "SorId": unit.sor_id,
                    "RegionCode": None if unit.region_code is None else str(unit.region_code),
                    "FromDate": unit.ean_from_date,
                    "ToDate": unit.ean_to_date,
                },
                EANLOCATION,
            )
        # A link may be listed on either side. The replaced unit's side wins: the day after
        # its last valid day is the replacement date; the replacing side offers its FromDate.
        for new in unit.replaced_by:
            after = unit.to_date + timedelta(days=1) if unit.to_date is not None else None
            self._link(unit.sor_id, new, after, authoritative=True)
        for old in unit.replaces:
            self._link(old, unit.sor_id, unit.from_date, authoritative=False)

    def _link(self, old: int, new: int, day: date | None, *, authoritative: bool) -> None:
        known = self.records.replaced.get((old, new))
        if known is not None and (not authoritative or day is None):
            return
        self.records.replaced[(old, new)] = _ordered(
            {"SorId": old, "ReplacedBySorId": new, "ReplacementDate": day}, REPLACED
        )


# --- history -------------------------------------------------------------------------------


@dataclass(slots=True)
class Sor2Counts:
    records: int = 0
    inserted: int = 0
    updated: int = 0
    closed: int = 0
    unchanged: int = 0


def _content(values: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if k not in TECHNICAL and v is not None}


def _is_open(values: Mapping[str, object], end_of_time: datetime) -> bool:
    return values.get(VALID_TO) == end_of_time


def apply_sor2(
    store: Store,
    records: Sor2Records,
    snapshot_date: date,
    modified: int,
    *,
    end_of_time: datetime,
    zone: ZoneInfo,
) -> dict[str, Sor2Counts]:
    """Write one snapshot's SOR2 records into the store's v2 tables (inside the import run
    whose ModifiedDate is `modified`); tables the store does not have are skipped."""
    now = datetime.fromtimestamp(modified, zone)
    last_day = snapshot_date - timedelta(days=1)
    counts: dict[str, Sor2Counts] = {}

    def write(table: Table, values: dict[str, object], pid: int | None) -> None:
        row = {**values}
        row[VALID_FROM] = now
        row[VALID_TO] = end_of_time
        if pid is None:
            table.insert(row, modified)
        else:
            table.update(pid, row, modified)

    def set_field(table: Table, row: Row, name: str, value: object) -> None:
        new = dict(row.values)
        new[name] = value
        if name != VALID_TO:  # a superseded row keeps the ValidFrom it had while current
            new[VALID_FROM] = now
        table.update(row.pid, new, modified)

    if SORENTITY in store.tables:
        table = store.table(SORENTITY)
        c = counts[SORENTITY] = Sor2Counts()
        for sor_id, new in records.entities.items():
            c.records += 1
            start = new["FromDate"]
            assert isinstance(start, date)
            live = [r for r in table.versions(sor_id) if _is_open(r.values, end_of_time)]
            same = next((r for r in live if r.values.get("FromDate") == start), None)
            if same is not None:
                if _content(same.values) == _content(new):
                    c.unchanged += 1
                else:
                    write(table, new, same.pid)  # same version changed: in place, same PID
                    c.updated += 1
                continue
            for row in live:
                row_start = row.values.get("FromDate")
                assert isinstance(row_start, date)
                row_end = row.values.get("ToDate")
                if row_start > start:  # a back-dated version replaces this one in NSP's table
                    set_field(table, row, VALID_TO, now)
                    c.updated += 1
                elif row_end is None or (isinstance(row_end, date) and row_end >= start):
                    set_field(table, row, "ToDate", start - timedelta(days=1))
                    c.updated += 1
            write(table, new, None)
            c.inserted += 1
        for sor_id in [k for k in table.by_key if k not in records.entities]:
            for row in table.versions(sor_id):
                if not _is_open(row.values, end_of_time):
                    continue
                row_start, row_end = row.values.get("FromDate"), row.values.get("ToDate")
                assert isinstance(row_start, date)
                if row_end is not None and isinstance(row_end, date) and row_end <= last_day:
                    continue
                if row_start > last_day:  # never valid: gone from NSP's table
                    set_field(table, row, VALID_TO, now)
                else:
                    set_field(table, row, "ToDate", last_day)
                c.closed += 1

    if SHAKSORMAP in store.tables:
        table = store.table(SHAKSORMAP)
        c = counts[SHAKSORMAP] = Sor2Counts()
        present: set[tuple[str, int]] = set()
        for (shak, sor_id), new in records.shak.items():
            c.records += 1
            present.add((shak, sor_id))
            live = [
                r
                for r in table.versions(sor_id)
                if r.values.get("ShakId") == shak and _is_open(r.values, end_of_time)
            ]
            current = max(live, key=lambda r: (r.values["FromDate"], r.pid), default=None)
            if current is not None:
                end = current.values.get("ToDate")
                # the same mapping goes on unless it was ended before this snapshot (and the
                # unit's own ToDate is not what ended it)
                if (
                    end is None
                    or end == new.get("ToDate")
                    or (isinstance(end, date) and end >= last_day)
                ):
                    merged = {**new, "FromDate": current.values["FromDate"]}
                    if _content(current.values) == _content(merged):
                        c.unchanged += 1
                    else:
                        write(table, _ordered(merged, SHAKSORMAP), current.pid)
                        c.updated += 1
                    continue
            write(table, new, None)
            c.inserted += 1
        for row in list(table):
            pair = (row.values.get("ShakId"), row.values.get("SorId"))
            if pair in present or not _is_open(row.values, end_of_time):
                continue
            end = row.values.get("ToDate")
            if end is not None and isinstance(end, date) and end <= last_day:
                continue
            start = row.values.get("FromDate")
            assert isinstance(start, date)
            if start > last_day:
                set_field(table, row, VALID_TO, now)
            else:
                set_field(table, row, "ToDate", last_day)
            c.closed += 1

    def reconcile_pairs(
        name: str, wanted: Mapping[tuple[Any, Any], dict[str, object]], field: str
    ) -> None:
        """A table of (SorId, `field`) pairs, one row a pair, changed in place; a pair that is
        gone from the snapshot stops being current in NSP's table."""
        table = store.table(name)
        c = counts[name] = Sor2Counts()
        for (sor_id, other), new in wanted.items():
            c.records += 1
            live = [
                r
                for r in table.versions(sor_id)
                if r.values.get(field) == other and _is_open(r.values, end_of_time)
            ]
            if not live:
                write(table, new, None)
                c.inserted += 1
            elif _content(live[0].values) == _content(new):
                c.unchanged += 1
            else:
                write(table, new, live[0].pid)
                c.updated += 1
        for row in list(table):
            pair = (row.values.get("SorId"), row.values.get(field))
            if pair not in wanted and _is_open(row.values, end_of_time):
                set_field(table, row, VALID_TO, now)
                c.closed += 1

    if REPLACED in store.tables:
        reconcile_pairs(REPLACED, records.replaced, "ReplacedBySorId")
    if EANLOCATION in store.tables:
        reconcile_pairs(EANLOCATION, records.ean, "EanLocationCode")
    return counts


# --- the shape it is rendered in -------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class ShapeError(ValueError):
    """A shape option that cannot be used; the message names it."""


def _short(key: str) -> str:
    return parse_key(key)[2]


def datatype_key(name: str) -> str:
    """`sorentity` or `sor/v2/sorentity/v1` → the served SOR2 key; ShapeError otherwise."""
    for key in SERVED_SOR2:
        if name in (key, _short(key)):
            return key
    known = ", ".join(_short(k) for k in SERVED_SOR2)
    raise ShapeError(f"{name!r} is not a SOR2 datatype the simulator serves ({known})")


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name) or name.lower().startswith("xml"):
        raise ShapeError(f"{what}: {name!r} is not a usable XML element name")
    return name


@dataclass(frozen=True, slots=True)
class Layout:
    """What the renderer needs for one datatype: the record namespace, start/end tags by stored
    element name (None = dropped), the added elements (already rendered) and the date style."""

    namespace: str
    tags: Mapping[str, tuple[str, str] | None]
    extra: str
    dates: DateStyle


@dataclass(frozen=True)
class RecordShape:
    """How the simulator renders SOR2 records. All empty = the mapping's element names in
    `SOR_NAMESPACE`, dates mixed (most ISO dates, every `render.MIXED_SHARE`th row date-times)."""

    namespace: str = SOR_NAMESPACE
    dates: DateStyle = "mixed"
    rename: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # key → old → new
    drop: Mapping[str, frozenset[str]] = field(default_factory=dict)  # key → elements
    add: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # key → (n, v)
    _layouts: dict[str, Layout] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.namespace or any(c.isspace() for c in self.namespace):
            raise ShapeError(f"record namespace {self.namespace!r}: give a URI without spaces")
        if self.dates not in DATE_STYLES:
            raise ShapeError(f"date style {self.dates!r}; use one of {', '.join(DATE_STYLES)}")
        for key in (*self.rename, *self.drop, *self.add):
            if key not in SERVED_SOR2:
                raise ShapeError(f"{key!r} is not a SOR2 datatype the simulator serves")
        for key, renames in self.rename.items():
            for old, new in renames.items():
                self._check_known(key, old, "rename")
                _check_name(new, f"rename {_short(key)}:{old}")
        for key, names in self.drop.items():
            for name in names:
                self._check_known(key, name, "drop")
        for key, added in self.add.items():
            for name, _ in added:
                _check_name(name, f"add {_short(key)}")

    @staticmethod
    def _check_known(key: str, name: str, what: str) -> None:
        if name not in ELEMENTS[key]:
            raise ShapeError(
                f"{what} {_short(key)}:{name}: the simulator renders no element {name!r} in"
                f" {_short(key)} (see sorsync.mapping.DEFAULTS)"
            )

    def layout(self, key: str) -> Layout:
        """The rendering plan of datatype `key` (computed once per shape)."""
        known = self._layouts.get(key)
        if known is not None:
            return known
        renames = self.rename.get(key, {})
        dropped = self.drop.get(key, frozenset())
        tags: dict[str, tuple[str, str] | None] = {}
        for name in ELEMENTS.get(key, ()):
            wire = renames.get(name, name)
            tags[name] = None if name in dropped else (f"<{wire}>", f"</{wire}>")
        extra = "".join(
            f"<{name}>{escape_text(value)}</{name}>" for name, value in self.add.get(key, ())
        )
        layout = self._layouts[key] = Layout(self.namespace, tags, extra, self.dates)
        return layout

    def to_json(self) -> dict[str, Any]:
        datatypes: dict[str, Any] = {}
        for key in SERVED_SOR2:
            entry: dict[str, Any] = {}
            if self.rename.get(key):
                entry["rename"] = dict(self.rename[key])
            if self.drop.get(key):
                entry["drop"] = sorted(self.drop[key])
            if self.add.get(key):
                entry["add"] = dict(self.add[key])
            if entry:
                datatypes[_short(key)] = entry
        return {"namespace": self.namespace, "dates": self.dates, "datatypes": datatypes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordShape:
        """`{"namespace": URI, "dates": "mixed"|"date"|"datetime", "datatypes": {"sorentity":
        {"rename": {"EntityName": "Name"}, "drop": ["LocalCode"], "add": {"New": "v"}}}}`;
        everything optional."""
        if not isinstance(data, Mapping):
            raise ShapeError("the shape is a JSON object")
        unknown = set(data) - {"namespace", "dates", "datatypes"}
        if unknown:
            raise ShapeError(
                f"unknown shape keys {sorted(unknown)}; use namespace, dates, datatypes"
            )
        rename: dict[str, dict[str, str]] = {}
        drop: dict[str, frozenset[str]] = {}
        add: dict[str, tuple[tuple[str, str], ...]] = {}
        datatypes = data.get("datatypes") or {}
        if not isinstance(datatypes, Mapping):
            raise ShapeError('"datatypes" is an object by datatype name')
        for name, spec in datatypes.items():
            key = datatype_key(str(name))
            if not isinstance(spec, Mapping) or set(spec) - {"rename", "drop", "add"}:
                raise ShapeError(f"{name}: give an object with rename, drop and/or add")
            renames = spec.get("rename") or {}
            drops = spec.get("drop") or []
            adds = spec.get("add") or {}
            if not isinstance(renames, Mapping) or not isinstance(adds, Mapping):
                raise ShapeError(f"{name}: rename and add are objects (old: new, name: value)")
            if not isinstance(drops, list):
                raise ShapeError(f"{name}: drop is a list of element names")
            if renames:
                rename[key] = {str(k): str(v) for k, v in renames.items()}
            if drops:
                drop[key] = frozenset(str(d) for d in drops)
            if adds:
                add[key] = tuple((str(k), str(v)) for k, v in adds.items())
        return cls(
            namespace=str(data.get("namespace") or SOR_NAMESPACE),
            dates=data.get("dates") or "mixed",
            rename=rename,
            drop=drop,
            add=add,
        )

    @classmethod
    def from_options(
        cls,
        *,
        namespace: str | None = None,
        dates: str | None = None,
        rename: Iterable[str] = (),
        drop: Iterable[str] = (),
        add: Iterable[str] = (),
    ) -> RecordShape:
        """From command-line style options: `sorentity:EntityName=Name` (rename),
        `sorentity:LocalCode` (drop), `sorentity:NewField=value` (add)."""
        renames: dict[str, dict[str, str]] = {}
        drops: dict[str, set[str]] = {}
        adds: dict[str, list[tuple[str, str]]] = {}
        for spec in rename:
            key, name, value = _option(spec, "rename", "sorentity:EntityName=Name")
            if not value:
                raise ShapeError(f"--rename {spec!r}: give the new name after '='")
            renames.setdefault(key, {})[name] = value
        for spec in drop:
            key, name, value = _option(spec, "drop", "sorentity:LocalCode", value=False)
            drops.setdefault(key, set()).add(name)
        for spec in add:
            key, name, value = _option(spec, "add", "sorentity:NewField=value")
            adds.setdefault(key, []).append((name, value))
        if dates is not None and dates not in DATE_STYLES:
            raise ShapeError(f"date style {dates!r}; use one of {', '.join(DATE_STYLES)}")
        return cls(
            namespace=namespace or SOR_NAMESPACE,
            dates=dates or "mixed",  # type: ignore[arg-type]
            rename=renames,
            drop={k: frozenset(v) for k, v in drops.items()},
            add={k: tuple(v) for k, v in adds.items()},
        )


def _option(spec: str, what: str, example: str, *, value: bool = True) -> tuple[str, str, str]:
    datatype, colon, rest = spec.partition(":")
    name, equals, text = rest.partition("=")
    if not colon or not name or (value and not equals) or (not value and equals):
        raise ShapeError(f"--{what} {spec!r}: write it like {example}")
    return datatype_key(datatype), name, text


DEFAULT_SHAPE = RecordShape()
