"""The hot lookups answer repeated requests from memory until the next sync run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from tests.fixtures.api import SorData, record_sync_run


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(database_url=database_url, version_ttl=0)) as client:
        yield client


def _found_lookups(client: TestClient, kind: str) -> float:
    prefix = f'sorsync_lookups_total{{kind="{kind}",result="found"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


def _rename(engine: Engine, sor_id: str, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE krs.sor_sygehusafdeling_v1 SET navn = :name WHERE sor_nummer = :id"),
            {"name": name, "id": int(sor_id)},
        )


def test_answers_stay_until_the_next_sync_run(
    client: TestClient, sor_data: SorData, engine: Engine
) -> None:
    record_sync_run(engine)
    url = "/v1/shak/800110"
    first = client.get(url)
    assert first.status_code == 200
    assert first.json()["units"][0]["name"] == "Medicinsk Afdeling M1"
    assert len(client.app.state.responses) == 1  # type: ignore[attr-defined]

    # Written behind the API's back (no sync run): the answer comes from memory, unchanged.
    _rename(engine, sor_data.department, "Omdøbt")
    try:
        again = client.get(url)
        assert again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
        assert _found_lookups(client, "shak") == 2  # hits count as lookups too

        record_sync_run(engine)  # what a sync does when it finishes: a new data version
        fresh = client.get(url)
        assert fresh.json()["units"][0]["name"] == "Omdøbt"
        assert fresh.headers["etag"] != first.headers["etag"]
    finally:
        _rename(engine, sor_data.department, "Medicinsk Afdeling M1")
        record_sync_run(engine)


def test_not_found_and_sor_lookups(client: TestClient, sor_data: SorData, engine: Engine) -> None:
    record_sync_run(engine)
    assert client.get("/v1/shak/1999").status_code == 404
    assert client.get("/v1/shak/1999").status_code == 404
    assert len(client.app.state.responses) == 0  # type: ignore[attr-defined]
    url = f"/v1/sor/{sor_data.section}"
    first = client.get(url)
    assert client.get(url).content == first.content
    assert client.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    assert len(client.app.state.responses) == 1  # type: ignore[attr-defined]


def test_turned_off(database_url: str, sor_data: SorData, engine: Engine) -> None:
    record_sync_run(engine)
    app = create_app(database_url=database_url, version_ttl=0, cache_entries=0)
    with TestClient(app) as client:
        assert client.get("/v1/shak/800110").status_code == 200
        assert len(app.state.responses) == 0


class RoutingProbe:
    """Outermost middleware that records, per request, whether the router ran: Starlette's
    router puts the matched endpoint in the scope."""

    def __init__(self, app: ASGIApp, seen: list[bool]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen.append("endpoint" in scope)


def test_hits_are_answered_before_routing(
    database_url: str, sor_data: SorData, engine: Engine
) -> None:
    record_sync_run(engine)
    routed: list[bool] = []
    app = create_app(database_url=database_url, version_ttl=3600)
    app.add_middleware(RoutingProbe, seen=routed)
    with TestClient(app) as client:
        for url, kind in (("/v1/shak/800110", "shak"), (f"/v1/sor/{sor_data.section}", "sor")):
            routed.clear()
            miss, hit = client.get(url), client.get(url)
            assert routed == [True, False]
            assert (hit.status_code, hit.content) == (miss.status_code, miss.content)
            assert hit.headers.multi_items() == miss.headers.multi_items()
            assert _found_lookups(client, kind) == 2
            template = "/v1/shak/{shak}" if kind == "shak" else "/v1/sor/{sor_id}"
            requests = f'sorsync_http_requests_total{{route="{template}",status="200"}} 2.0'
            assert requests in client.get("/metrics").text

            # A conditional request for a cached answer is answered here too, as the route would.
            routed.clear()
            etag = miss.headers["etag"]
            for header in (etag, f'"other", W/{etag}'):
                not_modified = client.get(url, headers={"If-None-Match": header})
                assert not_modified.status_code == 304
                assert not not_modified.content
                assert not_modified.headers["etag"] == etag
                assert not_modified.headers["cache-control"] == miss.headers["cache-control"]
            assert client.get(url, headers={"If-None-Match": '"other"'}).content == miss.content
            assert routed == [False, False, False]
            assert _found_lookups(client, kind) == 3  # a 304 is no lookup answered

            # Dated requests go through the routes; so do paths below or above the lookup's (404
            # problem answers or the history).
            routed.clear()
            assert client.get(url, params={"date": "2024-01-01"}).status_code == 200
            assert routed == [True]
            assert client.get(f"{url}/history").status_code == (200 if kind == "sor" else 404)
            assert client.get(url.rpartition("/")[0] + "/").status_code == 404
            routed.clear()
            assert client.get(url).content == miss.content
            assert routed == [False]


def test_hits_end_with_the_data_version(
    database_url: str, sor_data: SorData, engine: Engine
) -> None:
    """A hit is only answered within the data version's TTL; after it, the route sees the new
    sync run and answers afresh."""
    record_sync_run(engine)
    app = create_app(database_url=database_url, version_ttl=0.2)
    with TestClient(app) as client:
        url = "/v1/shak/800110"
        first = client.get(url)
        _rename(engine, sor_data.department, "Omdøbt")
        try:
            assert client.get(url).content == first.content
            record_sync_run(engine)
            time.sleep(0.3)
            assert client.get(url).json()["units"][0]["name"] == "Omdøbt"
        finally:
            _rename(engine, sor_data.department, "Medicinsk Afdeling M1")
            record_sync_run(engine)
