"""Response and request shapes (design.md §6) and the functions that render lookups into them.

The pydantic models document the API (OpenAPI) and are what tests check responses against;
handlers build plain dicts with `unit_json` & co. and serialise them with orjson, which keeps the
10 000-code batch fast. SOR ids, GLNs, ydernumre and SHAK codes are JSON strings: SOR ids reach
18 digits, beyond what a JavaScript number holds exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sorsync.lookup import Unit, local_date

Kind = Literal["sygehus", "sygehusafdeling", "praksis", "yder", "apotek"]

SOR_ID_EXAMPLE = "347811000016004"


class Address(BaseModel):
    street: str | None = Field(description="Street name and building number.")
    postcode: str | None
    city: str | None


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
        description="First day this version is no longer valid (exclusive); null = open."
    )


class ShakResponse(BaseModel):
    shak: str
    date: dt.date
    units: list[UnitOut]


class ResolveRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"codes": ["8001", "800110", "XYZ"], "date": None}]}
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


class RunOut(BaseModel):
    id: int
    kind: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    pages: int
    records: int
    error: str | None


class StatusResponse(BaseModel):
    data_version: str | None = Field(
        description="Id of the last successful sync run (what ETags are derived from)."
    )
    as_of: dt.datetime
    last_success_at: dt.datetime | None = Field(
        description="Oldest of the datatypes' last successful syncs."
    )
    data_age_seconds: float | None
    stale: bool
    stale_after_seconds: float
    datatypes: list[DatatypeStatusOut]
    last_run: RunOut | None
    last_ok_run: RunOut | None


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
    }
