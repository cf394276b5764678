"""The API stays up whatever the replica holds (issue 23): a row stored by an older sorsync
with a timestamp before year 1 or after 9999 (PostgreSQL keeps both; Python has neither) makes
no lookup answer 500. Also: every route's methods are told right (Allow, 405)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from tests.fixtures.api import SorData, empty_replica, load_sor_data, record_sync_run

PATHS = [
    "/v1/units",
    "/v1/units?kind=sygehus",
    "/v1/shak/8001",
    "/v1/shak/800110",
    "/v1/sor/{hospital}",
    "/v1/sor/{hospital}/history",
    "/fhir/Organization/{hospital}",
]


@pytest.fixture
def poisoned(engine: Engine) -> Iterator[SorData]:
    empty_replica(engine)
    data = load_sor_data(engine)
    record_sync_run(engine)
    with engine.begin() as conn:
        # What an older version stored for `0001-01-01T00:00:00+14:00` and
        # `9999-12-31T23:59:59-14:00`: year 1 BC and year 10000.
        conn.execute(
            text(
                "UPDATE krs.sor_sygehus_v1 SET valid_from = '0001-12-31 10:00:00+00 BC',"
                " modified_at = '10000-01-01 13:59:59+00'"
            )
        )
        conn.execute(
            text("UPDATE krs.sor_sygehusafdeling_v1 SET valid_to = '10000-01-01 13:59:59+00'")
        )
    yield data
    empty_replica(engine)


def test_no_stored_value_makes_a_lookup_answer_500(
    poisoned: SorData, api_client: TestClient
) -> None:
    for path in PATHS:
        url = path.format(hospital=poisoned.hospital)
        for query in ("", "&date=2024-01-01" if "?" in url else "?date=2024-01-01"):
            r = api_client.get(url + query)
            assert r.status_code < 500, (url + query, r.status_code, r.text[:300])
    r = api_client.post("/v1/shak/resolve", json={"codes": ["8001", "800110"]})
    assert r.status_code < 500, r.text[:300]


def test_get_on_a_post_only_route_is_405_with_allow_post(api_client: TestClient) -> None:
    r = api_client.get("/v1/shak/resolve")
    assert r.status_code == 405, r.text[:300]
    assert r.headers["allow"] == "POST"
    r = api_client.options("/v1/shak/resolve")
    assert r.headers["allow"] == "POST"
    r = api_client.options("/v1/shak/8001")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
