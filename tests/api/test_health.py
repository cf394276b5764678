"""Liveness, readiness (unreachable database, schema behind, recovery) and /metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from api.app import create_app
from api.problems import PROBLEM_BASE
from sorsync.db import migrate
from sorsync.db.engine import make_engine
from tests.fixtures.api import SorData
from tests.fixtures.db import _server_url, create_database, drop_database, kill_api_connections

UNREACHABLE = "postgresql+psycopg://sorsync@127.0.0.1:9/sorsync"  # discard port: refused


@pytest.fixture
def unreachable_client() -> Iterator[TestClient]:
    with TestClient(create_app(database_url=UNREACHABLE, version_ttl=0)) as client:
        yield client


def test_livez(api_client: TestClient) -> None:
    r = api_client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz(api_client: TestClient) -> None:
    r = api_client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_unreachable_database(unreachable_client: TestClient) -> None:
    r = unreachable_client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == PROBLEM_BASE + "not-ready"
    assert "sorsync@" not in r.text
    assert "9/sorsync" not in r.text
    # lookups answer 503 problem+json, not a stack trace; validation still comes first
    with capture_logs() as logs:
        r = unreachable_client.get("/v1/shak/8001")
    # The log says which kind of outage (a refused connection has no SQLSTATE), nothing more.
    [logged] = [e for e in logs if e["event"] == "database unavailable"]
    assert logged == {
        "event": "database unavailable",
        "log_level": "warning",
        "path": "/v1/shak/8001",
        "error": "OperationalError",
        "sqlstate": None,
    }
    assert r.status_code == 503
    assert r.json()["type"] == PROBLEM_BASE + "database-unavailable"
    assert r.headers["retry-after"] == "5"
    assert "Traceback" not in r.text
    assert "psycopg" not in r.text
    assert unreachable_client.get("/v1/shak/x").status_code == 422
    r = unreachable_client.post("/v1/shak/resolve", json={"codes": ["8001"]})
    assert r.status_code == 503
    assert unreachable_client.get("/v1/status").status_code == 503
    r = unreachable_client.get("/fhir/Organization/347811000016004")
    assert r.status_code == 503
    assert r.json()["resourceType"] == "OperationOutcome"
    # still alive, and /metrics still scrapes
    assert unreachable_client.get("/livez").status_code == 200
    assert unreachable_client.get("/metrics").status_code == 200


def test_schema_behind_then_upgraded(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "0001")
    with TestClient(create_app(database_url=empty_database_url)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["type"] == PROBLEM_BASE + "not-ready"
        assert "sorsync db upgrade" in r.json()["detail"]
        migrate.upgrade(empty_database_url)
        assert client.get("/readyz").status_code == 200


def test_recovers_when_the_database_appears() -> None:
    """A database that does not exist yet (as after a failover, or before provisioning): 503,
    then ready as soon as it is there, without restarting the app."""
    url = create_database("sorsync_later")
    drop_database(url)
    name = make_url(url).database
    try:
        with TestClient(create_app(database_url=url)) as client:
            assert client.get("/readyz").status_code == 503
            assert client.get("/v1/shak/8001").status_code == 503
            admin = make_engine(_server_url(), pool=False)
            try:
                with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                admin.dispose()
            migrate.upgrade(url)
            assert client.get("/readyz").status_code == 200
            assert client.get("/v1/shak/8001").status_code == 404
    finally:
        drop_database(url)


def test_metrics(api_client: TestClient, sor_data: SorData) -> None:
    api_client.get("/v1/shak/8001")
    api_client.get("/v1/shak/9999")
    api_client.get(f"/v1/sor/{sor_data.hospital}")
    api_client.get("/v1/nowhere")
    body = api_client.get("/metrics").text
    assert 'sorsync_http_requests_total{route="/v1/shak/{shak}",status="200"}' in body
    assert 'sorsync_http_requests_total{route="/v1/shak/{shak}",status="404"}' in body
    assert 'sorsync_http_requests_total{route="unmatched",status="404"}' in body
    assert (
        'sorsync_http_request_duration_seconds_bucket{le="0.01",route="/v1/sor/{sor_id}"}' in body
    )
    assert 'sorsync_lookups_total{kind="shak",result="found"}' in body
    assert 'sorsync_lookups_total{kind="shak",result="not_found"}' in body
    assert "sorsync_data_age_seconds" in body
    # raw SOR ids never become label values (one series per id would explode)
    assert sor_data.hospital not in body


def test_openapi_document(api_client: TestClient) -> None:
    doc = api_client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    operation_ids = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert operation_ids == {
        "getShak",
        "resolve",
        "resolveShak",
        "getSorUnit",
        "getSorHistory",
        "getYder",
        "getEan",
        "searchUnits",
        "getStatus",
        "fhirReadOrganization",
        "fhirSearchOrganization",
    }
    shak = doc["paths"]["/v1/shak/{shak}"]["get"]["responses"]
    assert shak["404"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    assert "application/problem+json" in shak["422"]["content"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    fhir = doc["paths"]["/fhir/Organization/{sor_id}"]["get"]["responses"]
    assert list(fhir["200"]["content"]) == ["application/fhir+json"]
    assert list(fhir["404"]["content"]) == ["application/fhir+json"]


def test_survives_killed_connections(
    api_client: TestClient, sor_data: SorData, engine: Engine
) -> None:
    """A database restart or failover kills pooled connections: the next lookup notices,
    drops the pool and retries on a fresh connection, so the client sees no error. The
    status report and page and /readyz too (they once read through a connection of their
    own, and a UI test whose neighbour killed the connections met a 503)."""
    for _ in range(3):
        assert api_client.get("/v1/shak/8001").status_code == 200
        assert api_client.get("/v1/status").status_code == 200
    assert kill_api_connections(engine) >= 2
    assert api_client.get("/v1/status").status_code == 200
    assert api_client.get("/v1/shak/8001").status_code == 200
    assert api_client.get(f"/v1/sor/{sor_data.section}").status_code == 200
    assert api_client.post("/v1/shak/resolve", json={"codes": ["8001"]}).status_code == 200
    # Each of these first after a kill of its own: only the first call meets a dead connection.
    for path in ("/status", "/readyz"):
        assert kill_api_connections(engine) >= 1
        assert api_client.get(path).status_code == 200, path
