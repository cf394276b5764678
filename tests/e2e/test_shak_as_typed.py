"""SHAK codes as people type them, on the demo data synced through the real CLI: lower-case
letters are the same code in the API, resolve and FHIR; an encoded slash is one malformed code.
Also: /v1/status marks the demo's data as fictive."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from sorsync.datatypes import SYGEHUS, SYGEHUSAFDELING
from tests.e2e.test_sync_cli import cli_env, sorsync

TYPED = "157501n"  # a department of the bundled demo data, SHAK 157501N
SHAK_SYSTEM = "https://sorsync.dev/fhir/NamingSystem/shak"


@pytest.fixture
def demo_replica(clean_db: Engine, database_url: str, tmp_path: Path) -> Engine:
    env = cli_env(
        database_url,
        "",
        SORSYNC_DEMO="1",
        SORSYNC_KRS_DATATYPES=f"{SYGEHUS.key},{SYGEHUSAFDELING.key}",
    )
    del env["SORSYNC_KRS_URL"]
    done = sorsync(["sync", "--full"], env, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    return clean_db


@pytest.mark.usefixtures("demo_replica")
def test_lower_case_shak_everywhere(api_client: TestClient) -> None:
    one = api_client.get(f"/v1/shak/{TYPED}")
    assert one.status_code == 200, one.text
    assert one.json()["shak"] == TYPED.upper()
    assert one.json()["units"]
    assert api_client.get(f"/v1/shak/{TYPED.upper()}").json()["units"] == one.json()["units"]

    resolved = api_client.post("/v1/shak/resolve", json={"codes": [TYPED, "1575", "zz!"]})
    assert resolved.status_code == 200
    found, hospital, bad = resolved.json()["results"]
    assert (found["shak"], found["status"]) == (TYPED.upper(), "found")
    assert hospital["status"] == "found"
    assert bad["status"] == "invalid"

    bundle = api_client.get("/fhir/Organization", params={"identifier": f"{SHAK_SYSTEM}|{TYPED}"})
    assert bundle.status_code == 200, bundle.text
    assert bundle.json()["total"] >= 1

    status = api_client.get("/v1/status").json()
    assert status["fictive"] is True
    synced = {d["datatype"]: d["fictive"] for d in status["datatypes"] if d["source"]}
    assert synced == {SYGEHUS.key: True, SYGEHUSAFDELING.key: True}
    assert status["last_ok_run"]["source"].startswith("simulator:")


@pytest.mark.parametrize("path", ["/v1/shak/25%2F29", "/v1/shak/%2F", "/v1/shak/8001%2f"])
def test_a_code_with_a_slash_is_one_malformed_code(api_client: TestClient, path: str) -> None:
    answer = api_client.get(path)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["type"].endswith("invalid-shak")
    assert "is not a SHAK code" in problem["detail"]


def test_a_real_slash_is_still_an_unknown_route(api_client: TestClient) -> None:
    assert api_client.get("/v1/shak/25/29").status_code == 404
    assert api_client.get("/v1/shak/").status_code == 404
