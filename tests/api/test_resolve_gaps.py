"""POST /v1/resolve: invalid items echo their date, kind defaults to shak (and says so in the
OpenAPI document), an unreadable NDJSON line is answered by its raw code and how to fix it, a
CSV header that cannot be read is a 422."""

from __future__ import annotations

import orjson
from starlette.testclient import TestClient

from tests.fixtures.api import SorData


def test_invalid_items_echo_their_date(api_client: TestClient, sor_data: SorData) -> None:
    items = [
        {"code": "AB!", "date": "2020-01-01"},
        {"code": "800110", "kind": "nope", "date": "2020-01-01"},
        {"code": "800110", "date": "2020-13-01"},
        {"code": "800110"},
    ]
    got = api_client.post("/v1/resolve", json={"items": items, "date": "2021-06-01"}).json()
    results = got["results"]
    assert [(r["status"], r["date"]) for r in results] == [
        ("invalid", "2020-01-01"),
        ("invalid", "2020-01-01"),
        ("invalid", "2020-13-01"),
        ("found", "2021-06-01"),
    ]
    assert results[3]["kind"] == "shak"
    # A batch with no valid item asks the database nothing and answers each item.
    got = api_client.post("/v1/resolve", json={"items": items[:3]}).json()
    assert [r["status"] for r in got["results"]] == ["invalid"] * 3
    assert api_client.post("/v1/resolve", json={"items": []}).json() == {"results": []}


def test_default_kind_is_documented(api_client: TestClient) -> None:
    schema = api_client.get("/openapi.json").json()["components"]["schemas"]["BulkItem"]
    assert schema["properties"]["kind"]["default"] == "shak"


def test_unreadable_ndjson_line(api_client: TestClient, sor_data: SorData) -> None:
    body = b'{"code": "8001"}\n{"code": "800110", "kind": shak}\n[1]\n{"code": "8001"}\n'
    r = api_client.post(
        "/v1/resolve", content=body, headers={"content-type": "application/x-ndjson"}
    )
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert [(x["code"], x["status"]) for x in lines] == [
        ("8001", "found"),
        ("800110", "invalid"),
        ("", "invalid"),
        ("8001", "found"),
    ]
    assert "line 2 is not JSON" in lines[1]["detail"]
    assert "one JSON object a line" in lines[2]["detail"]


def test_a_csv_header_that_breaks_the_quoting(api_client: TestClient) -> None:
    r = api_client.post(
        "/v1/resolve", content=b'"co"de,kind\n8001,shak\n', headers={"content-type": "text/csv"}
    )
    assert r.status_code == 422
    assert "The CSV header cannot be read" in r.json()["detail"]
