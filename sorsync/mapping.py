"""The mapping from SOR2 records (stored whole, as jsonb) to typed columns.

NSP has not published the SOR2 field lists (docs/sor2.md), so the replica never depends on them:
every record is stored whole, and this mapping only decides which elements become typed columns
of the `sor` views, under which names. Each field carries how sure we are of its element name:
`C` confirmed by a source that depends on it, `I` inferred, `U` a guess. Changing the mapping —
here or in an operator's override file (`SORSYNC_MAPPING_FILE`) — rebuilds the views from what
is stored: no data is lost and nothing is synced again.

An override file is TOML:

    [datatypes]                       # which KRS datatype plays each role
    sorentity = "sor/v2/sorentity/v1"

    [fields.sorentity]                # column = element, or a table with a type
    parent_sor_id = "ParentSorId"
    closing_note = { element = "ClosingNote", type = "text" }
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from sorsync.datatypes import KeyFormatError, parse_key

Confidence = Literal["C", "I", "U"]


@dataclass(frozen=True, slots=True)
class Expected:
    """The element names a mapping knows, and those of them every source should deliver in some
    record (an optional one, such as a unit's eighth speciality, may be absent from a whole
    feed without anything being wrong)."""

    known: frozenset[str]
    required: frozenset[str]

    @classmethod
    def of(cls, names: Iterable[str], required: Iterable[str] | None = None) -> Expected:
        known = frozenset(names)
        return cls(known, known if required is None else frozenset(required))


class Kind(Enum):
    """How a column is read from the stored text (SQL functions of migration 0003)."""

    TEXT = "text"
    BIGINT = "bigint"
    NUMERIC = "numeric"
    DATE = "date"  # ISO date, or a date-time with an offset (its Danish calendar day)
    TIMESTAMP = "timestamptz"  # ISO date-time; without an offset: Danish local time


@dataclass(frozen=True, slots=True)
class MappedField:
    column: str  # column of the typed view (snake_case)
    element: str  # record element (local name; `{namespace}Name` for another namespace)
    kind: Kind
    confidence: Confidence
    doc: str = ""
    optional: bool = False  # may be absent from a whole feed (not a difference from the mapping)


@dataclass(frozen=True, slots=True)
class DatatypeMapping:
    role: str  # sorentity | shaksormap | sorreplacedentity
    key: str  # the KRS datatype that plays it
    fields: tuple[MappedField, ...]
    doc: str = ""

    @property
    def view(self) -> str:
        """The typed view in schema `sor`: every row of the datatype, one column per field."""
        return self.role

    def field(self, column: str) -> MappedField:
        for fld in self.fields:
            if fld.column == column:
                return fld
        raise KeyError(f"{self.role} has no mapped column {column!r}")

    @property
    def elements(self) -> frozenset[str]:
        return frozenset(f.element for f in self.fields)

    @property
    def expected(self) -> Expected:
        """What a feed of this datatype is compared with (sorsync.krs.profile)."""
        return Expected.of(self.elements, (f.element for f in self.fields if not f.optional))


T, B, N, D, TS = Kind.TEXT, Kind.BIGINT, Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP

ADDRESS_PREFIXES = {"postal": "PostalAddress", "visiting": "VisitingAddress"}
ADDRESS_PREFIXES["activity"] = "ActivityAddress"
ADDRESS_PARTS: tuple[tuple[str, str, Kind], ...] = (
    ("street_name", "StreetName", T),
    ("street_building_id", "StreetBuildingId", T),
    ("floor_id", "FloorId", T),
    ("suite_id", "SuiteId", T),
    ("additional_info", "AdditionalAddressInfo", T),
    ("postcode", "PostCodeId", T),
    ("district_name", "DistrictName", T),
    ("region_code", "RegionCode", T),
    ("etrs89_e", "CoordETRS89z32EMeasure", N),  # UTM zone 32 easting, metres (EPSG:25832)
    ("etrs89_n", "CoordETRS89z32NMeasure", N),
)
SPECIALITIES = 8
RARE_ADDRESS_PARTS = frozenset({"floor_id", "suite_id", "additional_info"})


def _f(column: str, element: str, kind: Kind, confidence: Confidence, doc: str = "") -> MappedField:
    return MappedField(column, element, kind, confidence, doc)


def _sorentity_fields() -> tuple[MappedField, ...]:
    fields = [
        _f("sor_id", "SorId", B, "C", "SOR id of the unit (Verhoeff-checked digits)"),
        _f("sor_type", "SorType", T, "I", "IE institution owner, SI health institution, OE unit"),
        _f("entity_name", "EntityName", T, "C", "name of the unit"),
        _f("entity_type_name", "EntityTypeName", T, "C", "the unit's type in words"),
        _f("from_date", "FromDate", D, "C", "first day of this version (business validity)"),
        _f("to_date", "ToDate", D, "C", "last day of this version, inclusive; empty = open"),
        _f("first_from_date", "FirstFromDate", D, "C", "first day of the unit's first version"),
        _f("shak", "ShakId", T, "C", "the unit's own SHAK code, if any"),
        _f("organisational_level_code", "OrganisationalLevelCode", T, "C", "since 2025"),
        _f("organisational_level_name", "OrganisationalLevelName", T, "C", "since 2025"),
        _f("nsp_valid_from", "ValidFrom", TS, "C", "when NSP's row became current"),
        _f("nsp_valid_to", "ValidTo", TS, "C", "when NSP's row stopped being current"),
        _f("unique_current_key", "UniqueCurrentKey", T, "C", "NSP's key of the current row"),
        _f("parent_sor_id", "ParentSorId", B, "U", "direct parent; not seen in public sources"),
        _f("health_institution_sor_id", "HealthInstitutionSorId", B, "C"),
        _f("health_institution_name", "HealthInstitutionEntityName", T, "C"),
        _f("health_institution_type_name", "HealthInstitutionEntityTypeName", T, "C"),
        _f("institution_owner_sor_id", "InstitutionOwnerSorId", B, "I"),
        _f("institution_owner_name", "InstitutionOwnerEntityName", T, "I"),
        _f("institution_owner_type_name", "InstitutionOwnerEntityTypeName", T, "C"),
        _f("institution_owner_cvr", "InstitutionOwnerCvrNumberId", T, "C"),
        _f("ean", "EanLocationCode", B, "I", "EAN/GLN location number"),
        _f("ean_region_name", "EanLocationCodeRegionName", T, "C"),
        _f("ydernummer", "ProviderId", T, "I", "ydernummer of a practice unit"),
        replace(_f("pharmacy_id", "PharmacyId", T, "I"), optional=True),
        replace(_f("local_code", "LocalCode", T, "I"), optional=True),
        _f("phone", "VirtualAddressTelephoneNumber", T, "C"),
        _f("website", "VirtualAddressWebsite", T, "C"),
        _f("email", "VirtualAddressEmailAddress", T, "C"),
    ]
    for address, prefix in ADDRESS_PREFIXES.items():
        sure: Confidence = "C" if address == "postal" else "I"
        fields += [
            replace(_f(f"{address}_{c}", prefix + e, k, sure), optional=c in RARE_ADDRESS_PARTS)
            for c, e, k in ADDRESS_PARTS
        ]
    for n in range(1, SPECIALITIES + 1):
        code = _f(f"speciality_{n}_code", f"PrioritizedEntitySpeciality{n}Id", T, "C")
        name = _f(f"speciality_{n}_name", f"PrioritizedEntitySpeciality{n}Name", T, "C")
        fields += [replace(code, optional=n > 1), replace(name, optional=n > 1)]
    return tuple(fields)


_VALIDITY = (
    _f("from_date", "FromDate", D, "I"),
    _f("to_date", "ToDate", D, "I", "last day, inclusive; empty = open"),
    _f("nsp_valid_from", "ValidFrom", TS, "I"),
    _f("nsp_valid_to", "ValidTo", TS, "I"),
)

DEFAULTS: dict[str, DatatypeMapping] = {
    m.role: m
    for m in (
        DatatypeMapping(
            "sorentity",
            "sor/v2/sorentity/v1",
            _sorentity_fields(),
            "one row per version of every SOR unit, all levels (IE, SI, OE)",
        ),
        DatatypeMapping(
            "shaksormap",
            "sor/v2/shaksormap/v1",
            (
                _f("shak", "ShakId", T, "I"),
                _f("sor_id", "SorId", B, "I"),
                *_VALIDITY,
                _f("organisational_level_code", "OrganisationalLevelCode", T, "C"),
                _f("organisational_level_name", "OrganisationalLevelName", T, "C"),
            ),
            "SHAK code to SOR unit, with validity",
        ),
        DatatypeMapping(
            "sorreplacedentity",
            "sor/v2/sorreplacedentity/v1",
            (
                _f("sor_id", "SorId", B, "I", "the unit that was replaced"),
                _f("replaced_by_sor_id", "ReplacedBySorId", B, "U", "the unit replacing it"),
                _f("replacement_date", "ReplacementDate", D, "U"),
                _f("nsp_valid_from", "ValidFrom", TS, "I"),
                _f("nsp_valid_to", "ValidTo", TS, "I"),
            ),
            "replaced-by links from reorganisations",
        ),
        DatatypeMapping(
            "eanlocationcode",
            "sor/v2/eanlocationcode/v1",
            (
                _f("ean", "EanLocationCode", B, "I", "EAN/GLN location number"),
                _f("sor_id", "SorId", B, "I", "the unit the code belongs to"),
                _f("region_code", "RegionCode", T, "U", "the region administering the code"),
                _f("from_date", "FromDate", D, "U"),
                # Most codes never end: a whole feed may have no ToDate without anything wrong.
                replace(
                    _f("to_date", "ToDate", D, "U", "last day, inclusive; empty = open"),
                    optional=True,
                ),
                _f("nsp_valid_from", "ValidFrom", TS, "I"),
                _f("nsp_valid_to", "ValidTo", TS, "I"),
            ),
            "EAN location codes (for EDI) and the SOR units they belong to",
        ),
    )
}

_COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ELEMENT = re.compile(r"^(\{[^{}\s]+\})?[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_RESERVED = frozenset({"pid", "modified_at", "token", "record", "record_namespace"})


class MappingError(ValueError):
    """An override that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class SorMapping:
    datatypes: dict[str, DatatypeMapping]

    def by_key(self) -> dict[str, DatatypeMapping]:
        return {m.key: m for m in self.datatypes.values()}

    def for_key(self, key: str) -> DatatypeMapping | None:
        return self.by_key().get(key)

    def role(self, role: str) -> DatatypeMapping:
        return self.datatypes[role]

    def fingerprint(self) -> str:
        """Changes whenever anything the views are built from changes."""
        parts = [
            f"{m.role}={m.key}:"
            + ",".join(f"{f.column}/{f.element}/{f.kind.value}" for f in m.fields)
            for m in self.datatypes.values()
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def default_mapping() -> SorMapping:
    return SorMapping(dict(DEFAULTS))


def load_mapping(path: Path | None) -> SorMapping:
    """The default mapping with the overrides of the TOML file at `path` (None = none)."""
    if path is None:
        return default_mapping()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(f"mapping file {path}: cannot be read as TOML ({exc})") from None
    return apply_overrides(default_mapping(), data, str(path))


def apply_overrides(base: SorMapping, data: Mapping[str, Any], source: str) -> SorMapping:
    unknown = set(data) - {"datatypes", "fields"}
    if unknown:
        raise MappingError(f"{source}: unknown section(s) {sorted(unknown)}; use datatypes, fields")
    mappings = dict(base.datatypes)
    for role, key in _table(data.get("datatypes", {}), f"{source} [datatypes]").items():
        if role not in mappings:
            raise MappingError(f"{source} [datatypes]: unknown role {role!r}; roles: {_roles()}")
        try:
            parse_key(str(key))
        except KeyFormatError as exc:
            raise MappingError(f"{source} [datatypes] {role}: {exc}") from None
        mappings[role] = replace(mappings[role], key=str(key))
    for role, overrides in _table(data.get("fields", {}), f"{source} [fields]").items():
        if role not in mappings:
            raise MappingError(f"{source} [fields.{role}]: unknown role; roles: {_roles()}")
        where = f"{source} [fields.{role}]"
        mappings[role] = replace(
            mappings[role], fields=_override_fields(mappings[role].fields, overrides, where)
        )
    keys = [m.key for m in mappings.values()]
    if len(set(keys)) != len(keys):
        raise MappingError(f"{source}: two roles name the same datatype ({keys})")
    return SorMapping(mappings)


def _roles() -> str:
    return ", ".join(DEFAULTS)


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MappingError(f"{where}: expected a table")
    return value


def _override_fields(
    fields: Iterable[MappedField], overrides: Mapping[str, Any], where: str
) -> tuple[MappedField, ...]:
    out = {f.column: f for f in fields}
    for column, spec in _table(overrides, where).items():
        if not _COLUMN.match(column) or column in _RESERVED:
            raise MappingError(
                f"{where}: {column!r} is not a usable column name (lower case, digits and _;"
                f" not one of {sorted(_RESERVED)})"
            )
        old = out.get(column)
        if isinstance(spec, str):
            element, kind_name = spec, None
        elif isinstance(spec, dict) and set(spec) <= {"element", "type"} and "element" in spec:
            element, kind_name = str(spec["element"]), spec.get("type")
        else:
            raise MappingError(
                f"{where} {column}: write an element name, or {{ element = ..., type = ... }}"
            )
        if not _ELEMENT.match(element):
            raise MappingError(f"{where} {column}: {element!r} is not an XML element name")
        if kind_name is None:
            kind = old.kind if old else Kind.TEXT
        else:
            try:
                kind = Kind(kind_name)
            except ValueError:
                allowed = ", ".join(k.value for k in Kind)
                raise MappingError(
                    f"{where} {column}: type {kind_name!r}; allowed: {allowed}"
                ) from None
        doc = old.doc if old else "added by the mapping file"
        out[column] = MappedField(column, element, kind, "C", doc, optional=True)
    return tuple(out.values())
