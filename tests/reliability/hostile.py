"""Hostile HTTP input for the API: raw requests over a socket (so nothing on the client side
tidies them up), a catalogue of nasty parameter values, and the checks every answer must pass.
Shared by tests/reliability/test_hostile_api.py and tests/soak/soak_api_fuzz.py."""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
# uvicorn's own answer to a request line it cannot parse (before the app sees anything)
PROTOCOL_REJECTION = b"Invalid HTTP request received."

# Values for every path and query parameter. Percent-encoded on the wire unless listed in RAW.
HOSTILE: list[str] = [
    "",
    " ",
    "\x00",
    "8001\x00",
    "\x00" * 64,
    "\t8001\n",
    "8001\r\nX-Injected: 1",
    "\u202e1008",  # right-to-left override
    "\u200f8001\u200e",  # RTL / LTR marks
    "\u200b",  # zero-width space
    "\ufeff8001",  # byte-order mark
    "🏥",
    "🏥" * 500,
    "e\u0301" * 50,  # combining accents
    "８００１",  # fullwidth digits
    "٨٠٠١",  # Arabic-Indic digits
    "𝟖𝟎𝟎𝟏",  # mathematical digits
    "ǅ",
    "\udcff",  # lone surrogate (sent as its UTF-8-ish escape below)
    "../../etc/passwd",
    "..\\..\\windows",
    "/",
    "//",
    "%",
    "%%",
    "%2e%2e/",
    "%2F",
    "?",
    "#",
    ";",
    "' OR '1'='1",
    "1; DROP TABLE krs.sync_state; --",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "9" * 19,
    "9" * 400,
    "9" * 9000,  # an overlong path segment / query value
    "-1",
    "0",
    "1e309",
    "NaN",
    "null",
    "true",
    "[]",
    "{}",
    "2024-02-30",
    "0000-00-00",
    "9999-12-31",
    "+275760-09-13",
    "2024-1-1",
    "1000016",
]

# Sent verbatim in the URL (already encoded, or deliberately not encoded): path tricks.
RAW: list[bytes] = [
    b"%2e%2e/",
    b"%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"..%2f..%2f",
    b"%2F%2F",
    b"%00",
    b"%ff%fe",
    b"%ED%A0%80",  # an encoded lone surrogate
    b"%C0%AE%C0%AE/",  # overlong UTF-8 for ".."
    b"%25%32%65",  # double encoding
    b"\xf0\x9f\x8f\xa5",  # raw UTF-8 in the request line
    b"\xe2\x80\xae",
    b"a" * 20000,
]


def encode(value: str) -> bytes:
    return quote(value, safe="", errors="surrogateescape").encode("ascii")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    request: bytes

    def problems(self, path: str) -> list[str]:
        """What is wrong with this answer (empty when fine)."""
        out: list[str] = []
        where = f"{self.request[:120]!r} → {self.status}"
        if self.status >= 500:
            out.append(f"{where}: server error {self.body[:300]!r}")
        for marker in (b"Traceback", b'File "', b"psycopg", b"sqlalchemy.", b"Exception:"):
            if marker in self.body:
                out.append(f"{where}: {marker!r} in the body {self.body[:300]!r}")
        if self.status >= 400 and self.body != PROTOCOL_REJECTION:
            wanted = FHIR_JSON if path.startswith("/fhir") else PROBLEM_JSON
            if not self.content_type.startswith(wanted):
                out.append(f"{where}: content type {self.content_type!r}, not {wanted}")
        return out


def exchange(port: int, request: bytes, timeout: float = 30) -> Answer:
    """Send `request` as raw bytes and read one answer. A server that answers before the body
    is sent (413 on a declared length) gets to answer without the body being pushed at it."""
    head, _, body = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + b"\r\n\r\n")
        # Only a big body is worth waiting for an early answer (a 413 on the declared length).
        if body and (len(body) <= 1 << 20 or not select.select([sock], [], [], 0.3)[0]):
            # The server may answer and close mid-body; then read what it said.
            with contextlib.suppress(OSError):
                sock.sendall(body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        return Answer(response.status, response.getheader("content-type") or "", data, request)


def get(port: int, target: bytes) -> Answer:
    return exchange(
        port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )


def post_json(
    port: int,
    path: bytes,
    body: bytes,
    *,
    chunked: bool = False,
    content_type: bytes = b"application/json",
) -> Answer:
    head = (
        b"POST "
        + path
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: "
        + content_type
        + b"\r\n"
    )
    if chunked:
        step = 1 << 16
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step])
            for i in range(0, len(body), step)
        )
        return exchange(port, head + b"Transfer-Encoding: chunked\r\n\r\n" + payload + b"0\r\n\r\n")
    return exchange(port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def parameter_requests(
    openapi: dict[str, Any], valid: dict[str, str]
) -> Iterator[tuple[str, bytes]]:
    """(path template, request target) with one hostile value in one parameter of one GET
    operation, every other path parameter valid; for every parameter the document lists."""
    for template, item in openapi["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        params = operation.get("parameters", [])
        for param in params:
            values = [encode(v) for v in HOSTILE] + RAW
            for value in values:
                path = template
                for other in params:
                    if other["in"] == "path" and other is not param:
                        path = path.replace("{" + other["name"] + "}", valid[other["name"]])
                target = path.encode()
                if param["in"] == "path":
                    target = target.replace(b"{" + param["name"].encode() + b"}", value)
                    query = b""
                else:
                    query = b"?" + param["name"].encode() + b"=" + value
                yield template, target + query
