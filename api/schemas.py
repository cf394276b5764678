"""Response and request shapes (docs/reference/design.md §6) and the functions that render
lookups into them.

The pydantic models document the API (OpenAPI) and are what tests check responses against;
handlers build plain dicts with `unit_json` & co. and serialise them with orjson, which keeps the
10 000-code batch fast. SOR ids, GLNs, ydernumre and SHAK codes are JSON strings: SOR ids reach
18 digits, beyond what a JavaScript number holds exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sorsync.geo import etrs89_utm32_to_wgs84
from sorsync.lookup import Unit, local_date

Kind = Literal[
    "sygehus",
    "sygehusafdeling",
    "praksis",
    "yder",
    "apotek",
    "institutionsejer",
    "sundhedsinstitution",
    "organisationsenhed",
]

SOR_ID_EXAMPLE = "100061000016005"  # Hyldby Sygehus of the demo data: /docs tries it


class Address(BaseModel):
    street: str | None = Field(description="Street name and building number.")
    postcode: str | None
    city: str | None


class CodeName(BaseModel):
    code: str | None = None
    name: str | None = None


class Reference(BaseModel):
    sor_id: str | None = None
    name: str | None = None


class Owner(Reference):
    type: str | None = Field(default=None, description="privat, stat, region, kommune, …")
    cvr: str | None = None


class Coordinates(BaseModel):
    etrs89_e: float = Field(description="ETRS89 / UTM zone 32N easting, metres (EPSG:25832).")
    etrs89_n: float = Field(description="ETRS89 / UTM zone 32N northing, metres.")
    lat: float = Field(description="WGS84 latitude (EPSG:4326), projected with PROJ.")
    lon: float = Field(description="WGS84 longitude.")


class AddressOut(BaseModel):
    street_name: str | None = None
    street_building_id: str | None = None
    floor_id: str | None = None
    suite_id: str | None = None
    additional_info: str | None = None
    postcode: str | None = None
    district_name: str | None = None
    region_code: str | None = None
    coordinates: Coordinates | None = None


class UnitOut(BaseModel):
    """One version of a SOR unit."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})

    sor_id: str = Field(description="SOR id.", examples=[SOR_ID_EXAMPLE])
    kind: Kind
    name: str | None
    shak: str | None = Field(description="SHAK code (hospitals and departments).")
    ydernummer: str | None = Field(description="Ydernummer as NSP stores it (no leading zeros).")
    ean: str | None = Field(description="EAN/GLN location number (13 digits).")
    parent_sor_id: str | None = Field(
        description="Parent unit: superior department or hospital; a yder's practice."
    )
    hospital_sor_id: str | None = Field(description="The hospital the unit belongs to.")
    praksis_sor_id: str | None = Field(description="The practice the unit belongs to.")
    address: Address
    phone: str | None
    email: str | None
    www: str | None
    specialty_code: str | None
    specialty_text: str | None
    valid_from: dt.date | None = Field(description="First day this version is valid.")
    valid_to: dt.date | None = Field(
        description="First day this version is no longer valid (exclusive); null = open. For"
        " SOR2 this is the day after ToDate, which SOR gives as the last valid day."
    )
    # SOR2 (sorsync/mapping.py names the element each comes from); null for v1 data.
    datatype: str | None = Field(
        default=None,
        description="The KRS datatype the unit comes from (sor/v2/sorentity/v1 or a v1 view).",
    )
    sor_type: Literal["IE", "SI", "OE"] | str | None = Field(
        default=None,
        description="SOR2 SorType: IE institution owner, SI health institution,"
        " OE organisational unit.",
    )
    entity_type: str | None = Field(default=None, description="SOR2 EntityTypeName.")
    organisational_level: CodeName | None = Field(
        default=None, description="SOR2 OrganisationalLevelCode / OrganisationalLevelName."
    )
    health_institution: Reference | None = Field(
        default=None,
        description="SOR2 HealthInstitutionSorId / HealthInstitutionEntityName (the SI above).",
    )
    institution_owner: Owner | None = Field(
        default=None, description="SOR2 InstitutionOwner* (the IE above: type and CVR)."
    )
    specialities: list[CodeName] | None = Field(
        default=None,
        description="SOR2 PrioritizedEntitySpeciality1..8 (SNOMED code and text), in priority"
        " order.",
    )
    addresses: dict[str, AddressOut] | None = Field(
        default=None,
        description="SOR2 postal, visiting and activity addresses (PostalAddress*,"
        " VisitingAddress*, ActivityAddress*), with coordinates. Not in batch resolve answers.",
    )
    replaced_by: list[str] | None = Field(
        default=None, description="SOR2 sorreplacedentity: the units that replaced this one."
    )


class ShakResponse(BaseModel):
    shak: str
    date: dt.date
    units: list[UnitOut]


class ResolveRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"codes": ["1575", "157501", "9999"], "date": None}]}
    )

    codes: list[str] = Field(description="SHAK codes, at most 10 000 (more → 413).")
    date: str | None = Field(
        default=None, description="ISO date YYYY-MM-DD; default today (Europe/Copenhagen)."
    )


class ResolveResult(BaseModel):
    shak: str
    status: Literal["found", "not_found", "invalid"]
    units: list[UnitOut]
    detail: str | None = Field(default=None, description="Why the code is invalid.")


class ResolveResponse(BaseModel):
    date: dt.date
    results: list[ResolveResult] = Field(description="One result per code, in request order.")


class BulkItem(BaseModel):
    code: str = Field(description="The code as recorded.", examples=["800110"])
    kind: str | None = Field(
        default="shak",
        description="shak (the default: left out, null or empty), sor, ean or ydernummer;"
        " another value answers `invalid`.",
    )
    date: str | None = Field(
        default=None,
        description="ISO date YYYY-MM-DD the code was recorded on; default the request's `date`"
        " (query or body), else today (Europe/Copenhagen). A bad date answers `invalid`.",
    )


class BulkResolveRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"code": "1575", "kind": "shak", "date": "2021-06-01"},
                        {"code": "100061000016005", "kind": "sor"},
                    ]
                }
            ]
        }
    )

    items: list[BulkItem] = Field(description="At most 10 000 items (more → 413).")
    date: str | None = Field(
        default=None, description="Default date of the items (YYYY-MM-DD); default today."
    )


class BulkUnit(BaseModel):
    sor_id: str
    name: str | None
    kind: Kind
    shak: str | None
    health_institution: Reference | None = Field(
        description="The hospital or practice (SOR2: health institution) the unit belongs to."
    )
    organisational_level: CodeName | None = Field(
        description="SOR2 OrganisationalLevelCode / OrganisationalLevelName; null for v1 data."
    )
    valid_from: dt.date | None
    valid_to: dt.date | None = Field(description="First day no longer valid (exclusive).")


class BulkResult(BaseModel):
    code: str
    kind: str
    date: str | None = Field(
        description="The item's date (YYYY-MM-DD; the default when it was sent without one); an"
        " invalid item echoes an unreadable date as sent; null only for an item that could not"
        " be read at all (not a JSON object)."
    )
    status: Literal["found", "not_found", "invalid", "ambiguous"]
    units: list[BulkUnit] = Field(
        description="found: the unit; ambiguous: every unit the rule leaves; else empty."
    )
    detail: str | None = Field(default=None, description="Why the item is invalid.")


class BulkResolveResponse(BaseModel):
    results: list[BulkResult] = Field(description="One result per item, in request order.")


class SorResponse(UnitOut):
    """The unit on the date, its ancestors (nearest first) and its children's SOR ids."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})

    date: dt.date
    ancestors: list[UnitOut]
    children: list[str]


class HistoryResponse(BaseModel):
    sor_id: str
    versions: list[UnitOut] = Field(description="Every version, oldest first.")


class YderResponse(BaseModel):
    ydernummer: str
    date: dt.date
    units: list[UnitOut]


class EanResponse(BaseModel):
    gln: str
    date: dt.date
    units: list[UnitOut]


class UnitsPage(BaseModel):
    items: list[UnitOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last.")


class DatatypeStatusOut(BaseModel):
    datatype: str = Field(examples=["sor/sygehus/v1"])
    token: str | None = Field(description="Token of the last committed page; null = never.")
    updated_at: dt.datetime | None
    last_success_at: dt.datetime | None
    rows: int
    last_error: str | None
    record_namespace: str | None = Field(
        default=None, description="SOR2: the namespace of the records last received."
    )
    field_drift: dict[str, list[str]] | None = Field(
        default=None,
        description="SOR2: fields of the last sync with records that differ from the mapping"
        " (mapped_not_seen, seen_not_mapped); null when nothing was compared.",
    )
    source: str | None = Field(
        description="The source the replica is bound to: KRS endpoint and datatype key, or"
        " `simulator:…` for the built-in simulator; null = never synced."
    )
    fictive: bool = Field(description="The built-in simulator's fictive demo data.")


class RunOut(BaseModel):
    id: int
    kind: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    pages: int
    records: int
    error: str | None
    source: str | None = Field(description="The source the run read (null: unrecorded).")


class ReplicationOut(BaseModel):
    role: Literal["primary", "standby"] = Field(
        description="The PostgreSQL server answering: the primary, or a hot standby."
    )
    lag_seconds: float | None = Field(
        description="Standby only: how far its data lags behind the primary (0 when it has"
        " replayed all it received); null on the primary, or before the first replayed change."
    )
    replayed_at: dt.datetime | None = Field(
        description="Standby only: when the last change it replayed was committed on the primary."
    )
    wal_receiver: str | None = Field(
        description="Standby only: the WAL receiver's state ('streaming'); null when it is not"
        " connected to a primary (no new data arrives)."
    )


class StatusResponse(BaseModel):
    data_version: str | None = Field(
        description="Id of the last successful sync run (what ETags are derived from)."
    )
    as_of: dt.datetime
    fictive: bool = Field(
        description="True when any replicated data is the built-in simulator's fictive demo"
        " data, not SOR."
    )
    last_success_at: dt.datetime | None = Field(
        description="Oldest of the datatypes' last successful syncs."
    )
    data_age_seconds: float | None
    stale: bool
    stale_after_seconds: float
    datatypes: list[DatatypeStatusOut]
    last_run: RunOut | None
    last_ok_run: RunOut | None
    replication: ReplicationOut = Field(
        description="The server's place in PostgreSQL's replication (docs/deployment.md); the"
        " data age above already includes a standby's lag."
    )


class ValidationErrorItem(BaseModel):
    loc: list[str]
    msg: str
    type: str | None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["https://sorsync.dev/problems/invalid-sor-id"])
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ValidationErrorItem] | None = Field(
        default=None, description="Request validation errors (422)."
    )


def unit_json(u: Unit) -> dict[str, Any]:
    # Written out inline: this runs 10 000 times for one batch resolve.
    ean, parent, hospital, praksis = u.ean, u.parent_sor_id, u.hospital_sor_id, u.praksis_sor_id
    valid_from, valid_to = u.valid_from, u.valid_to
    return {
        "sor_id": str(u.sor_id),
        "kind": u.kind,
        "name": u.name,
        "shak": u.shak,
        "ydernummer": u.ydernummer,
        "ean": None if ean is None else str(ean),
        "parent_sor_id": None if parent is None else str(parent),
        "hospital_sor_id": None if hospital is None else str(hospital),
        "praksis_sor_id": None if praksis is None else str(praksis),
        "address": {"street": u.street, "postcode": u.postcode, "city": u.city},
        "phone": u.phone,
        "email": u.email,
        "www": u.www,
        "specialty_code": u.specialty_code,
        "specialty_text": u.specialty_text,
        "valid_from": None if valid_from is None else local_date(valid_from),
        "valid_to": None if valid_to is None else local_date(valid_to),
        **sor2_json(u),
    }


def sor2_json(u: Unit) -> dict[str, Any]:
    """The SOR2 facts of a unit (UnitOut's SOR2 fields)."""
    level = None
    if u.organisational_level_code is not None or u.organisational_level_name is not None:
        level = {"code": u.organisational_level_code, "name": u.organisational_level_name}
    owner = None
    if u.institution_owner_sor_id is not None or u.institution_owner_name is not None:
        owner = {
            "sor_id": None
            if u.institution_owner_sor_id is None
            else str(u.institution_owner_sor_id),
            "name": u.institution_owner_name,
            "type": u.institution_owner_type,
            "cvr": u.institution_owner_cvr,
        }
    institution = None
    if u.health_institution_name is not None:
        institution = {
            "sor_id": None if u.hospital_sor_id is None else str(u.hospital_sor_id),
            "name": u.health_institution_name,
        }
    return {
        "datatype": u.datatype,
        "sor_type": u.sor_type,
        "entity_type": u.entity_type,
        "organisational_level": level,
        "health_institution": institution,
        "institution_owner": owner,
        "specialities": u.specialities,
        "addresses": None if u.addresses is None else addresses_json(u.addresses),
        "replaced_by": None if u.replaced_by is None else [str(i) for i in u.replaced_by],
    }


def addresses_json(addresses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """sor.unit's addresses with their coordinates as ETRS89 and WGS84."""
    out: dict[str, Any] = {}
    for name, parts in addresses.items():
        address = {k: v for k, v in parts.items() if k not in ("etrs89_e", "etrs89_n")}
        e, n = parts.get("etrs89_e"), parts.get("etrs89_n")
        if isinstance(e, (int, float)) and isinstance(n, (int, float)):
            lat, lon = etrs89_utm32_to_wgs84(float(e), float(n))
            address["coordinates"] = {
                "etrs89_e": float(e),
                "etrs89_n": float(n),
                "lat": round(lat, 7),
                "lon": round(lon, 7),
            }
        out[name] = address
    return out
