"""`sorsync serve`: the real uvicorn process on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest

from tests.fixtures.api import SorData


def _serve(database_url: str, *args: str) -> Iterator[str]:
    env = {**os.environ, "SORSYNC_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sorsync", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    drain: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 30
        base = None
        while base is None and time.monotonic() < deadline:
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                break
            if match := re.search(r"running on (http://127\.0\.0\.1:\d+)", line):
                base = match.group(1)
        assert base is not None, "sorsync serve did not start"
        # keep reading its log so a full pipe never blocks it
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        # with several workers the parent announces the port before the workers listen
        while time.monotonic() < deadline:
            try:
                if httpx2.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if drain is not None:
            drain.join(timeout=5)
        proc.stderr.close()


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
