"""HL7 FHIR R4 Organization (DK Core profile) for SOR units; errors as OperationOutcome.

Identifier systems: SOR `urn:oid:1.2.208.176.1.1` (use official), GLN `https://www.gs1.org/gln`
(the DK Core examples' spelling; `http://` accepted on search), ydernummer
`urn:oid:1.2.208.176.1.4`, and SHAK under a local NamingSystem of ours
(`https://sorsync.dev/fhir/NamingSystem/shak`): DK Core defines no SHAK system, and
1.2.208.176.1.6 is eCPR, not SHAK. `active` says whether the version shown is valid today.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.caching import cached_lookup
from api.deps import app_state
from api.problems import FHIR_JSON, ProblemError, identifier_problem
from api.routes.common import problem_responses
from api.schemas import addresses_json
from sorsync import identifiers, lookup
from sorsync.lookup import Unit

router = APIRouter(prefix="/fhir", tags=["FHIR"])

PROFILE = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-organization"
SOR_SYSTEM = "urn:oid:1.2.208.176.1.1"
GLN_SYSTEM = "https://www.gs1.org/gln"
GLN_SYSTEMS = (GLN_SYSTEM, "http://www.gs1.org/gln")
YDER_SYSTEM = "urn:oid:1.2.208.176.1.4"
SHAK_SYSTEM = "https://sorsync.dev/fhir/NamingSystem/shak"
KIND_SYSTEM = "https://sorsync.dev/fhir/CodeSystem/sor-unit-kind"
KIND_DISPLAY = {
    "sygehus": "Sygehus",
    "sygehusafdeling": "Sygehusafdeling",
    "praksis": "Praksis",
    "yder": "Yder",
    "apotek": "Apotek",
    "institutionsejer": "Institutionsejer",
    "sundhedsinstitution": "Sundhedsinstitution",
    "organisationsenhed": "Organisationsenhed",
}
# SOR2 facts, under NamingSystems / CodeSystems of ours (neither DK Core nor HL7 Denmark defines
# systems for SOR's level, organisational level or SNOMED speciality list of a unit).
SOR_TYPE_SYSTEM = "https://sorsync.dev/fhir/CodeSystem/sor-type"
ORG_LEVEL_SYSTEM = "https://sorsync.dev/fhir/CodeSystem/sor-organisational-level"
SNOMED = "http://snomed.info/sct"
CVR_SYSTEM = "urn:oid:2.16.208.1.1"  # Danish CVR numbers, as DK Core's Organization uses
GEOLOCATION = "http://hl7.org/fhir/StructureDefinition/geolocation"
ADDRESS_USE = {"postal": "work", "visiting": "work", "activity": "work"}
ADDRESS_TYPE = {"postal": "postal", "visiting": "physical", "activity": "physical"}

_FHIR_OBJECT = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}
_OK: dict[int | str, Any] = {200: {"content": {FHIR_JSON: {"schema": _FHIR_OBJECT}}}}


class FhirResponse(Response):
    media_type = FHIR_JSON


def _text(value: str | None) -> str | None:
    # FHIR forbids empty strings and nulls: leave the element out instead.
    if value is None:
        return None
    value = value.strip()
    return value or None


def organization(u: Unit, *, active: bool) -> dict[str, Any]:
    """A DK Core Organization for one version of a unit."""
    ids: list[dict[str, Any]] = [{"use": "official", "system": SOR_SYSTEM, "value": str(u.sor_id)}]
    if u.ean is not None:
        ids.append({"system": GLN_SYSTEM, "value": str(u.ean)})
    if shak := _text(u.shak):
        ids.append({"system": SHAK_SYSTEM, "value": shak})
    if yder := _text(u.ydernummer):
        ids.append({"system": YDER_SYSTEM, "value": yder})
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "id": str(u.sor_id),
        "meta": {"profile": [PROFILE], "lastUpdated": u.modified_at},
        "identifier": ids,
        "active": active,
        "type": [
            {"coding": [{"system": KIND_SYSTEM, "code": u.kind, "display": KIND_DISPLAY[u.kind]}]}
        ],
    }
    if name := _text(u.name):
        org["name"] = name
    telecom = [
        {"system": system, "value": value}
        for system, value in (
            ("phone", _text(u.phone)),
            ("email", _text(u.email)),
            ("url", _text(u.www)),
        )
        if value
    ]
    if telecom:
        org["telecom"] = telecom
    address: dict[str, Any] = {}
    if street := _text(u.street):
        address["line"] = [street]
    if city := _text(u.city):
        address["city"] = city
    if postcode := _text(u.postcode):
        address["postalCode"] = postcode
    if u.addresses:
        org["address"] = _sor2_addresses(u.addresses)
    elif address:
        org["address"] = [{"use": "work", **address, "country": "DK"}]
    if u.parent_sor_id is not None:
        org["partOf"] = {"reference": f"Organization/{u.parent_sor_id}"}
    if u.sor_type is not None:
        _add_sor2(org, u)
    return org


def _add_sor2(org: dict[str, Any], u: Unit) -> None:
    """What SOR2 adds: SOR level, organisational level and specialities as types, the owner's
    CVR as an identifier."""
    types: list[dict[str, Any]] = org["type"]
    if sor_type := _text(u.sor_type):
        coding = {"system": SOR_TYPE_SYSTEM, "code": sor_type}
        if entity := _text(u.entity_type):
            coding["display"] = entity
        types.append({"coding": [coding]})
    if code := _text(u.organisational_level_code):
        coding = {"system": ORG_LEVEL_SYSTEM, "code": code}
        if name := _text(u.organisational_level_name):
            coding["display"] = name
        types.append({"coding": [coding]})
    for speciality in u.specialities or []:
        if code := _text(speciality.get("code")):
            coding = {"system": SNOMED, "code": code}
            if name := _text(speciality.get("name")):
                coding["display"] = name
            types.append({"coding": [coding]})
    if u.sor_type == "IE" and (cvr := _text(u.institution_owner_cvr)):
        org["identifier"].append({"system": CVR_SYSTEM, "value": cvr})


def _sor2_addresses(addresses: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for which, parts in addresses_json(addresses).items():
        line = " ".join(p for p in (parts.get("street_name"), parts.get("street_building_id")) if p)
        address: dict[str, Any] = {"use": ADDRESS_USE[which], "type": ADDRESS_TYPE[which]}
        if line:
            address["line"] = [line]
        if city := _text(parts.get("district_name")):
            address["city"] = city
        if postcode := _text(parts.get("postcode")):
            address["postalCode"] = postcode
        address["country"] = "DK"
        if (where := parts.get("coordinates")) is not None:
            address["extension"] = [
                {
                    "url": GEOLOCATION,
                    "extension": [
                        {"url": "latitude", "valueDecimal": where["lat"]},
                        {"url": "longitude", "valueDecimal": where["lon"]},
                    ],
                }
            ]
        out.append(address)
    return out


def _current_or_latest(conn: Any, sor_id: int) -> tuple[Unit, bool] | None:
    """The version valid today (active) or else the most recent one (inactive)."""
    current = lookup.run(conn, lookup.unit(sor_id, lookup.today()))
    if current is not None:
        return current, True
    versions = lookup.run(conn, lookup.history(sor_id))
    return (versions[-1], False) if versions else None


def _sor_key(value: str) -> int | None:
    return int(value) if identifier_problem(value, identifiers.sor_id_problem) is None else None


@router.get(
    "/Organization/{sor_id}",
    operation_id="fhirReadOrganization",
    summary="FHIR read: Organization by SOR id",
    response_class=FhirResponse,
    responses={**_OK, **problem_responses(304, 404, 503, media_type=FHIR_JSON)},
)
def read_organization(request: Request, sor_id: str) -> Response:
    """The unit as a DK Core Organization: the version valid today (`active: true`) or, for a
    closed unit, its last version (`active: false`). 404 OperationOutcome if unknown."""
    key = _sor_key(sor_id)
    db, metrics = app_state(request)
    if key is None:  # cannot be a SOR id, so cannot exist: no query needed
        metrics.lookup("fhir", "not_found")
        raise ProblemError("not-found", f"No Organization with id {sor_id!r} (not a SOR id).")

    def compute(conn: Any) -> dict[str, Any]:
        found = _current_or_latest(conn, key)
        metrics.lookup("fhir", "found" if found else "not_found")
        if found is None:
            raise ProblemError("not-found", f"No Organization with SOR id {sor_id}.")
        return organization(found[0], active=found[1])

    return cached_lookup(request, db, lookup.today(), compute, media_type=FHIR_JSON)


def _search(conn: Any, system: str | None, value: str) -> list[tuple[Unit, bool]]:
    day = lookup.today()
    if system in (None, "", SOR_SYSTEM):
        key = _sor_key(value)
        found = None if key is None else _current_or_latest(conn, key)
        return [] if found is None else [found]
    if system in GLN_SYSTEMS:
        if identifier_problem(value, identifiers.gln_problem) is not None:
            return []
        return [(u, True) for u in lookup.run(conn, lookup.by_ean(int(value), day))]
    if system == YDER_SYSTEM:
        if identifier_problem(value, identifiers.ydernummer_problem) is not None:
            return []
        return [(u, True) for u in lookup.run(conn, lookup.by_ydernummer(value, day))]
    value = identifiers.normalise_shak(value)
    if identifier_problem(value, identifiers.shak_problem) is not None:
        return []
    return [(u, True) for u in lookup.run(conn, lookup.by_shak(value, day))]


SUPPORTED_SYSTEMS = (SOR_SYSTEM, *GLN_SYSTEMS, YDER_SYSTEM, SHAK_SYSTEM)


@router.get(
    "/Organization",
    operation_id="fhirSearchOrganization",
    summary="FHIR search: Organization by identifier",
    response_class=FhirResponse,
    responses={**_OK, **problem_responses(304, 400, 503, media_type=FHIR_JSON)},
)
def search_organization(
    request: Request,
    identifier: Annotated[
        str | None,
        Query(
            description="`system|value` token: SOR (urn:oid:1.2.208.176.1.1), GLN "
            "(https://www.gs1.org/gln), ydernummer (urn:oid:1.2.208.176.1.4) or SHAK "
            "(https://sorsync.dev/fhir/NamingSystem/shak); a bare value is a SOR id.",
            examples=["urn:oid:1.2.208.176.1.1|100061000016005"],
        ),
    ] = None,
) -> Response:
    """A searchset Bundle of the matching Organizations (empty when nothing matches)."""
    if not identifier:
        raise ProblemError(
            "invalid-identifier",
            "Search needs identifier=system|value, "
            "e.g. identifier=urn:oid:1.2.208.176.1.1|<SOR id>.",
        )
    system, sep, value = identifier.partition("|")
    if not sep:
        system, value = "", identifier
    if system and system not in SUPPORTED_SYSTEMS:
        raise ProblemError(
            "invalid-identifier",
            f"Identifier system {system!r} is not searchable here; use one of "
            + ", ".join(SUPPORTED_SYSTEMS)
            + ".",
        )
    base = str(request.base_url).rstrip("/")
    db, metrics = app_state(request)

    def compute(conn: Any) -> dict[str, Any]:
        matches = _search(conn, system or None, value)
        metrics.lookup("fhir", "found" if matches else "not_found")
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": str(request.url)}],
        }
        if matches:
            bundle["entry"] = [
                {
                    "fullUrl": f"{base}/fhir/Organization/{u.sor_id}",
                    "resource": organization(u, active=active),
                    "search": {"mode": "match"},
                }
                for u, active in matches
            ]
        return bundle

    return cached_lookup(request, db, lookup.today(), compute, media_type=FHIR_JSON)
