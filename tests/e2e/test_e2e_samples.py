"""NSP's own SOR test files, end to end: import into the simulator → KRS client over real HTTP →
sync engine → PostgreSQL → read API and FHIR.

Each sample is a complete SorTree snapshot of 2010-01-26 holding one kind of unit, and a
snapshot is the whole register to NSP's importer: loading the three files into ONE store as
three imports closes the earlier files' units at 2010-01-26 (units missing from a snapshot are
closed; `test_three_imports_into_one_store_close_each_other` shows it). So every file gets its
own store and simulator, and each is synced for the datatypes that file fills, which are
disjoint, into the one replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx2 as httpx
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api.problems import PROBLEM_BASE
from api.routes.fhir import SOR_SYSTEM
from api.schemas import EanResponse, ShakResponse, SorResponse, YderResponse
from sorsync.datatypes import DATATYPES, Datatype
from sorsync.krs.client import KrsClient
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import serve_in_thread
from sorsync.simulator.store import Store
from sorsync.sync import RunResult, sync
from tests.api.fhir_r4 import organization_problems
from tests.fixtures.api import empty_replica
from tests.fixtures.sync import diff_rows, expected_from_store, replica_rows

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "sor-xml-samples"
FILES = ("ONE_SYGEHUS.xml", "ONE_PRAKSIS.xml", "ONE_APOTEK.xml")
DATE = "2010-06-01"  # inside every sample unit's validity (snapshot 2010-01-26, all open)

HOSPITAL = "347811000016004"
DEPARTMENT = "347821000016008"
SECTION = "347831000016005"
PRACTICE = "8331000016009"
YDER = "8341000016002"
PRACTICE_GLN = "5790000141227"
PHARMACY = "306031000016009"
PHARMACY_GLN = "5790000173624"


@dataclass
class Synced:
    file: str
    datatypes: list[Datatype]
    result: RunResult
    problems: list[str]  # replica vs that file's store; empty = identical


@pytest.fixture(scope="module")
def samples(engine: Engine) -> list[Synced]:
    """Each sample in its own simulator, full-synced (its datatypes only) into one replica."""
    empty_replica(engine)
    synced = []
    for name in FILES:
        store = Store()
        report = load_snapshot(store, SAMPLES / name)
        datatypes = [dt for dt in DATATYPES.values() if report.counts[dt.key].records]
        handle = serve_in_thread(store)
        try:
            with KrsClient(handle.url, timeout=10) as client:
                result = sync(engine, client, datatypes, kind="full")
        finally:
            handle.stop()
        problems = [
            f"{dt.key} {p}"
            for dt in datatypes
            for p in diff_rows(expected_from_store(store, dt), replica_rows(engine, dt))
        ]
        synced.append(Synced(name, datatypes, result, problems))
    return synced


@pytest.fixture
def api(api_client: TestClient, samples: list[Synced]) -> TestClient:
    """The API over the synced samples."""
    return api_client


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_BASE + slug
    return body


def ids(units: list[dict[str, Any]]) -> list[str]:
    return [u["sor_id"] for u in units]


def test_samples_sync_row_for_row(samples: list[Synced]) -> None:
    keys = {s.file: [dt.key for dt in s.datatypes] for s in samples}
    assert keys == {
        "ONE_SYGEHUS.xml": ["sor/sygehus/v1", "sor/sygehusafdeling/v1"],
        "ONE_PRAKSIS.xml": ["sor/praksis/v1", "sor/yder/v1"],
        "ONE_APOTEK.xml": ["sor/apotek/v1"],
    }
    for s in samples:
        assert s.result.ok, f"{s.file}: {s.result.error}"
        assert not s.problems, f"{s.file}:\n" + "\n".join(s.problems)
    assert [s.result.records for s in samples] == [3, 2, 1]


def test_hospital_by_shak(api: TestClient) -> None:
    r = api.get(f"/v1/shak/2529?date={DATE}")
    assert r.status_code == 200, r.text
    ShakResponse.model_validate(r.json())
    [unit] = r.json()["units"]
    assert unit["sor_id"] == HOSPITAL
    assert unit["kind"] == "sygehus"
    assert unit["name"] == "Roskilde Øjenklinik"
    assert unit["address"] == {"street": "Hestetorvet 8", "postcode": "4000", "city": "Roskilde"}
    assert unit["hospital_sor_id"] == HOSPITAL
    assert unit["valid_from"] == "2009-10-08"
    assert unit["valid_to"] is None
    # before the hospital's first day it is not there
    problem(api.get("/v1/shak/2529?date=2009-10-07"), 404, "not-found")


def test_department_and_section(api: TestClient) -> None:
    department = api.get(f"/v1/shak/252901?date={DATE}").json()
    assert ids(department["units"]) == [DEPARTMENT]
    assert department["units"][0]["name"] == "Roskilde Øjenklinik, afdeling"
    assert department["units"][0]["parent_sor_id"] == HOSPITAL
    section = api.get(f"/v1/shak/2529010?date={DATE}").json()
    assert ids(section["units"]) == [SECTION]
    assert section["units"][0]["parent_sor_id"] == DEPARTMENT
    assert section["units"][0]["specialty_text"] == "oftalmologi"

    r = api.get(f"/v1/sor/{SECTION}?date={DATE}")
    assert r.status_code == 200, r.text
    body = r.json()
    SorResponse.model_validate(body)
    assert ids(body["ancestors"]) == [DEPARTMENT, HOSPITAL]
    assert [a["kind"] for a in body["ancestors"]] == ["sygehusafdeling", "sygehus"]
    assert body["children"] == []
    assert api.get(f"/v1/sor/{DEPARTMENT}?date={DATE}").json()["children"] == [SECTION]
    hospital = api.get(f"/v1/sor/{HOSPITAL}?date={DATE}").json()
    assert hospital["ancestors"] == []
    assert hospital["children"] == [DEPARTMENT]


@pytest.mark.parametrize("number", ["019062", "19062"])
def test_yder_with_inherited_ean(api: TestClient, number: str) -> None:
    r = api.get(f"/v1/yder/{number}?date={DATE}")
    assert r.status_code == 200, r.text
    body = YderResponse.model_validate(r.json())
    assert body.ydernummer == number
    [unit] = r.json()["units"]
    assert unit["sor_id"] == YDER
    assert unit["ydernummer"] == "19062"  # NSP stores it without the leading zero
    assert unit["ean"] == PRACTICE_GLN  # the yder has no EAN of its own: its practice's
    assert unit["parent_sor_id"] == PRACTICE
    assert unit["name"] == "Michael Filtenborg"


def test_ean_on_practice_and_yder(api: TestClient) -> None:
    r = api.get(f"/v1/ean/{PRACTICE_GLN}?date={DATE}")
    assert r.status_code == 200, r.text
    body = EanResponse.model_validate(r.json())
    # the yder inherits its practice's EAN: the practice is the answer (docs/back-mapping.md)
    assert [(u.sor_id, u.kind) for u in body.units] == [(PRACTICE, "praksis")]


def test_pharmacy_by_ean(api: TestClient) -> None:
    r = api.get(f"/v1/ean/{PHARMACY_GLN}?date={DATE}")
    assert r.status_code == 200, r.text
    [unit] = r.json()["units"]
    assert unit["sor_id"] == PHARMACY
    assert unit["kind"] == "apotek"
    assert unit["name"] == "Værløse Apotek"
    assert unit["address"] == {"street": "Bymidten 13", "postcode": "3500", "city": "Værløse"}


def test_fhir_section_part_of_department(api: TestClient) -> None:
    r = api.get(f"/fhir/Organization/{SECTION}")
    assert r.status_code == 200, r.text
    org = r.json()
    assert organization_problems(org) == []
    assert org["id"] == SECTION
    assert {"use": "official", "system": SOR_SYSTEM, "value": SECTION} in org["identifier"]
    assert org["partOf"] == {"reference": f"Organization/{DEPARTMENT}"}
    assert org["active"] is True  # open-ended since 2009
    assert org["name"] == "Roskilde Øjenklinik, beh. afsnit"
    department = api.get(f"/fhir/Organization/{DEPARTMENT}").json()
    assert department["partOf"] == {"reference": f"Organization/{HOSPITAL}"}
    assert "partOf" not in api.get(f"/fhir/Organization/{HOSPITAL}").json()


def test_three_imports_into_one_store_close_each_other() -> None:
    # Why the fixture uses one store per file: NSP closes what a snapshot does not contain.
    store = Store()
    for name in FILES:
        load_snapshot(store, SAMPLES / name)
    ends = {
        row.values["sorNummer"]: cast(datetime, row.values["validTo"]).date().isoformat()
        for dt in DATATYPES.values()
        for row in store.table(dt.key)
    }
    assert ends[int(HOSPITAL)] == ends[int(YDER)] == "2010-01-26"
    assert ends[int(PHARMACY)] == "2999-12-31"  # the last file's units stay open
