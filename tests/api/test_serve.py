"""`sorsync serve`: the real uvicorn process on an ephemeral loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.fixtures.api import SorData
from tests.fixtures.serve import serve_process


def _serve(database_url: str, *args: str) -> Iterator[str]:
    with serve_process(database_url, *args) as base:
        yield base


@pytest.fixture
def server(database_url: str, sor_data: SorData) -> Iterator[str]:
    yield from _serve(database_url)


def test_serve(server: str, sor_data: SorData) -> None:
    with httpx2.Client(base_url=server, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        r = client.get("/v1/shak/8001")
        assert r.status_code == 200
        assert r.json()["units"][0]["sor_id"] == sor_data.hospital
        assert client.get("/openapi.json").json()["info"]["title"] == "sorsync"


def test_serve_two_workers_share_metrics(database_url: str, sor_data: SorData) -> None:
    for base in _serve(database_url, "--workers", "2"):
        with httpx2.Client(base_url=base, timeout=10) as client:
            for _ in range(6):
                assert client.get("/livez").status_code == 200
            metrics = client.get("/metrics").text
        # whichever worker answers the scrape reports all workers' requests
        assert 'sorsync_http_requests_total{route="/livez",status="200"} 6.0' in metrics
