"""FHIR R4 Organization (DK Core) routes, checked with the structural R4 validator."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from api.routes.fhir import GLN_SYSTEM, SHAK_SYSTEM, SOR_SYSTEM, YDER_SYSTEM
from sorsync.identifiers import make_sor_id
from tests.api.fhir_r4 import bundle_problems, operation_outcome_problems, organization_problems
from tests.fixtures.api import SorData

FHIR = "application/fhir+json"


def identifiers(org: dict[str, Any]) -> dict[str, str]:
    return {i["system"]: i["value"] for i in org["identifier"]}


def outcome(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR
    body = response.json()
    assert operation_outcome_problems(body) == []
    assert body["issue"][0]["code"] == code


def test_read_hospital_department(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get(f"/fhir/Organization/{sor_data.department}")
    assert r.status_code == 200
    assert r.headers["content-type"] == FHIR
    assert r.headers["etag"]
    org = r.json()
    assert organization_problems(org) == []
    assert org["id"] == sor_data.department
    assert org["active"] is True
    assert org["name"] == "Medicinsk Afdeling M1"
    assert identifiers(org) == {SOR_SYSTEM: sor_data.department, SHAK_SYSTEM: "800110"}
    assert org["identifier"][0]["use"] == "official"
    assert org["partOf"] == {"reference": f"Organization/{sor_data.hospital}"}
    assert org["address"] == [
        {
            "use": "work",
            "line": ["Hospitalsvej 1"],
            "city": "Aalborg",
            "postalCode": "9000",
            "country": "DK",
        }
    ]
    assert org["telecom"] == [{"system": "phone", "value": "98000000"}]


def test_read_hospital_and_practice(api_client: TestClient, sor_data: SorData) -> None:
    hospital = api_client.get(f"/fhir/Organization/{sor_data.hospital}").json()
    assert organization_problems(hospital) == []
    assert "partOf" not in hospital
    assert identifiers(hospital)[GLN_SYSTEM] == sor_data.hospital_gln
    assert {t["system"] for t in hospital["telecom"]} == {"phone", "email", "url"}
    # a practice has no address in the replica: no empty address element
    praksis = api_client.get(f"/fhir/Organization/{sor_data.praksis}").json()
    assert organization_problems(praksis) == []
    assert "address" not in praksis
    assert "telecom" not in praksis
    yder = api_client.get(f"/fhir/Organization/{sor_data.yder}").json()
    assert organization_problems(yder) == []
    assert identifiers(yder)[YDER_SYSTEM] == "19062"
    assert yder["partOf"] == {"reference": f"Organization/{sor_data.praksis}"}


def test_read_closed_unit_is_inactive(api_client: TestClient, sor_data: SorData) -> None:
    org = api_client.get(f"/fhir/Organization/{sor_data.closed_section}").json()
    assert organization_problems(org) == []
    assert org["active"] is False
    assert org["name"] == "Gastro Afsnit"


@pytest.mark.parametrize("sor_id", [make_sor_id(99999), "123", "not-a-sor-id", "34781100001600"])
def test_read_unknown(api_client: TestClient, sor_data: SorData, sor_id: str) -> None:
    outcome(api_client.get(f"/fhir/Organization/{sor_id}"), 404, "not-found")


def test_search_by_sor(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get(f"/fhir/Organization?identifier={SOR_SYSTEM}|{sor_data.section}")
    assert r.status_code == 200
    assert r.headers["content-type"] == FHIR
    bundle = r.json()
    assert bundle_problems(bundle) == []
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    entry = bundle["entry"][0]
    assert entry["search"] == {"mode": "match"}
    assert entry["fullUrl"] == f"http://testserver/fhir/Organization/{sor_data.section}"
    assert entry["resource"]["id"] == sor_data.section
    # a bare value is a SOR id
    bare = api_client.get(f"/fhir/Organization?identifier={sor_data.section}").json()
    assert bare["total"] == 1


@pytest.mark.parametrize(
    ("system", "value", "expected"),
    [
        (GLN_SYSTEM, "praksis_gln", ["praksis", "yder"]),
        ("http://www.gs1.org/gln", "praksis_gln", ["praksis", "yder"]),
        (YDER_SYSTEM, "019062", ["yder"]),
        (SHAK_SYSTEM, "800120", ["emergency", "emergency_unit"]),
    ],
)
def test_search_by_other_identifiers(
    api_client: TestClient, sor_data: SorData, system: str, value: str, expected: list[str]
) -> None:
    value = getattr(sor_data, value, value)
    bundle = api_client.get(f"/fhir/Organization?identifier={system}|{value}").json()
    assert bundle_problems(bundle) == []
    assert [e["resource"]["id"] for e in bundle["entry"]] == [
        getattr(sor_data, n) for n in expected
    ]


@pytest.mark.parametrize(
    "identifier", [f"{SOR_SYSTEM}|{make_sor_id(99999)}", f"{SOR_SYSTEM}|12345", f"{SHAK_SYSTEM}|x"]
)
def test_search_no_match(api_client: TestClient, sor_data: SorData, identifier: str) -> None:
    bundle = api_client.get("/fhir/Organization", params={"identifier": identifier}).json()
    assert bundle_problems(bundle) == []
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_search_errors(api_client: TestClient, sor_data: SorData) -> None:
    outcome(api_client.get("/fhir/Organization"), 400, "value")
    outcome(api_client.get("/fhir/Organization?identifier=urn:oid:1.2.3|1"), 400, "value")


def test_fhir_304(api_client: TestClient, sor_data: SorData) -> None:
    url = f"/fhir/Organization/{sor_data.hospital}"
    etag = api_client.get(url).headers["etag"]
    assert api_client.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_validator_catches_mistakes() -> None:
    # the checker itself: these are the mistakes it exists to catch
    bad = {
        "resourceType": "Organization",
        "id": "x" * 65,
        "identifier": [{"system": SOR_SYSTEM, "value": "1"}],
        "name": "",
        "telecom": [{"value": "1"}],
        "address": [{"use": "home", "line": []}],
        "alias": None,
        "colour": "blue",
    }
    problems = "\n".join(organization_problems(bad))
    for expected in (
        ".id",
        ".name",
        "cpt-2",
        "org-2",
        ".line",
        "null",
        ".colour",
        "dk-core",
        "SOR",
    ):
        assert expected in problems
    assert bundle_problems({"resourceType": "Bundle", "type": "collection", "total": 1})
    assert operation_outcome_problems({"resourceType": "OperationOutcome", "issue": []})
