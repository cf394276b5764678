"""`sorsync serve` under slow or many clients (issue 23): half-sent connections are closed after
SORSYNC_API_HEADER_TIMEOUT, connections beyond SORSYNC_API_MAX_CONNECTIONS are refused, and the
API keeps answering throughout. Only 127.0.0.1; every loop bounded in count and time."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2
import pytest

from tests.api.test_serve import _serve
from tests.fixtures.api import SorData

SLOW = 120  # slowloris connections, more than the cap below
CAP = 60
HEADER_TIMEOUT = 1.5


@pytest.fixture
def guarded(database_url: str, sor_data: SorData) -> Iterator[str]:
    saved = {
        k: os.environ.get(k) for k in ("SORSYNC_API_HEADER_TIMEOUT", "SORSYNC_API_MAX_CONNECTIONS")
    }
    os.environ["SORSYNC_API_HEADER_TIMEOUT"] = str(HEADER_TIMEOUT)
    os.environ["SORSYNC_API_MAX_CONNECTIONS"] = str(CAP)
    try:
        yield from _serve(database_url)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _closed(sock: socket.socket) -> bool:
    """Has the server closed (or answered and closed) this connection?"""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        data = sock.recv(4096)
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 503")


def test_slowloris_connections_are_closed_and_capped(guarded: str) -> None:
    parts = urlsplit(guarded)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    socks: list[socket.socket] = []
    try:
        for _ in range(SLOW):
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(b"GET /v1/shak/8001 HTTP/1.1\r\nHost: x\r\n")  # never finished
            socks.append(sock)
        # The API still answers while they hang (a fresh connection within the cap in time).
        deadline = time.monotonic() + 2 * HEADER_TIMEOUT + 10
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                answered = httpx2.get(guarded + "/livez", timeout=2).status_code == 200
            except httpx2.TransportError:
                time.sleep(0.2)
        assert answered
        # Keep trickling a header byte now and then: the deadline is for all the headers.
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            for sock in list(open_):
                if _closed(sock):
                    open_.remove(sock)
                else:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X")
            time.sleep(0.25)
        assert not open_, f"{len(open_)} of {SLOW} half-sent connections still open"
    finally:
        for sock in socks:
            sock.close()


def test_a_large_body_sent_with_its_headers_is_answered(guarded: str) -> None:
    """A body larger than the header cap, in the same write as the headers (as HTTP clients
    send a POST /v1/resolve of 10 000 items), is a request like any other."""
    parts = urlsplit(guarded)
    items = ",".join('{"code": "8001", "date": "2024-06-01"}' for _ in range(3000))
    body = ('{"items": [' + items + "]}").encode()
    assert len(body) > 100_000
    head = (
        f"POST /v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(1 << 16):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_headers_past_the_cap_still_close(guarded: str) -> None:
    parts = urlsplit(guarded)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000)
        data = b"still open"
        with contextlib.suppress(ConnectionResetError):
            data = sock.recv(4096)
        assert data == b""
