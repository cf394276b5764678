"""A hostile KRS stand-in: a small HTTP server on 127.0.0.1 that answers `replicate` with good
pages of a fixed set of rows, or with whatever crafted answer the test sets (`Shape`).

Unlike the simulator (sorsync/simulator) it speaks HTTP by hand, so it can send what no
well-behaved server would: a body trickled a byte at a time with or without Content-Length,
headers trickled, a declared length it never sends, gzip bombs, invalid UTF-8. Every trickle
stops by itself after `Shape.give_up` seconds or when the client hangs up.
"""

from __future__ import annotations

import contextlib
import re
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BufferedIOBase

from sorsync.datatypes import Datatype
from sorsync.krs import wire

_OFFSET = re.compile(rb"<offset>(\d*)</offset>")
_MAX = re.compile(rb"<maxRecords>(\d+)</maxRecords>")
BASE_SECONDS = 1_700_000_000


def token(i: int, seconds: int = BASE_SECONDS) -> str:
    return wire.make_token(seconds + i, 1000 + i)


def typed_record(dt: Datatype, i: int, **override: str) -> str:
    """A good record of a typed datatype (sor/sygehus/v1), any field's text replaced raw."""
    parts = []
    for fld in dt.fields:
        if fld.element == "validFrom":
            value = "2020-01-01T00:00:00.000+01:00"
        elif fld.element == "validTo":
            value = "2999-12-31T00:00:00.000+01:00"
        elif fld.type.name == "BIGINT":
            value = str(1_000_016_000_000_000 + i)
        else:
            value = f"{fld.element} {i} &amp; Ærø"
        value = override.get(fld.element, value)
        parts.append(f"<s:{fld.element}>{value}</s:{fld.element}>")
    return f'<s:{dt.datatype} xmlns:s="{dt.namespace}">{"".join(parts)}</s:{dt.datatype}>'


def document_record(i: int, inner: str = "") -> str:
    """A good SOR2-like record (stored whole as JSON by the document walk)."""
    ns = "http://nsi.dk/-/stamdata/3.0/sor2"
    return (
        f'<e:SorEntity xmlns:e="{ns}"><e:sorId>{100000 + i}</e:sorId><e:name>Enhed {i}</e:name>'
        f"<e:address><e:street>Vej {i}</e:street><e:zip>8000</e:zip></e:address>{inner}"
        "</e:SorEntity>"
    )


def entry(tok: str, record: str, updated: str = "2023-11-14T22:13:20.000Z") -> str:
    return (
        f"<atom:entry><atom:id>tag:nsi.dk,2011:x/{tok}</atom:id>"
        f"<atom:updated>{updated}</atom:updated>"
        f'<atom:content type="application/xml">{record}</atom:content></atom:entry>'
    )


def envelope(entries: str, *, prolog: str = "") -> bytes:
    return (
        f'{prolog}<soap:Envelope xmlns:soap="{wire.NS_SOAP}"><soap:Body>'
        f'<krs:ReplicationResponse xmlns:krs="{wire.NS_KRS}">'
        f'<atom:feed xmlns:atom="{wire.NS_ATOM}"><atom:id>tag:nsi.dk,2011:x</atom:id>'
        f"<atom:updated>2023-11-14T22:13:20.000Z</atom:updated>{entries}</atom:feed>"
        "</krs:ReplicationResponse></soap:Body></soap:Envelope>"
    ).encode()


@dataclass
class Shape:
    """One crafted answer. `body` is the bytes (or a function of the asked offset)."""

    body: bytes | Callable[[str], bytes] = b""
    status: int = 200
    framing: str = "length"  # length | chunked | close | lie (declares more than it sends)
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds between body bytes (0: all at once)
    slow_headers: float = 0.0  # seconds between header bytes
    give_up: float = 30.0  # a trickle stops by itself after this long
    stream: Callable[[], Iterator[bytes]] | None = None  # a body made while sending (huge ones)


class HostileKrs:
    """The stand-in. `rows` are the good rows (by index); `shape`, when set, answers instead."""

    def __init__(self, dt: Datatype, rows: int, record: Callable[[int], str]) -> None:
        self.dt = dt
        self.rows = list(range(rows))
        self.record = record
        self.shape: Shape | None = None
        self.calls = 0
        stand_in = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                stand_in._handle(self.connection, self.rfile)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hung up mid-answer is what these tests do

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{wire.SERVICE_PATH}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def good_page(self, offset: str, max_records: int) -> bytes:
        after = wire.split_token(offset) if offset else (0, 0)
        picked = [i for i in self.rows if wire.split_token(token(i)) > after][:max_records]
        return envelope("".join(entry(token(i), self.record(i)) for i in picked))

    # --- HTTP by hand ------------------------------------------------------------------

    def _handle(self, conn: socket.socket, rfile: BufferedIOBase) -> None:
        length = 0
        while True:
            line = rfile.readline(65537)
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        request = rfile.read(length) if length else b""
        self.calls += 1
        found = _OFFSET.search(request)
        offset = found.group(1).decode() if found else ""
        limit = _MAX.search(request)
        max_records = int(limit.group(1)) if limit else wire.MAX_RECORDS
        shape = self.shape or Shape(body=self.good_page(offset, max_records))
        body = shape.body(offset) if callable(shape.body) else shape.body
        with contextlib.suppress(OSError):  # the client gave up: what a bounded client does
            self._send(conn, shape, body)

    def _send(self, conn: socket.socket, shape: Shape, body: bytes) -> None:
        started = time.monotonic()
        reason = {200: "OK", 500: "Internal Server Error"}.get(shape.status, "X")
        head = [f"HTTP/1.1 {shape.status} {reason}", "Content-Type: text/xml; charset=utf-8"]
        head += [f"{k}: {v}" for k, v in shape.headers.items()]
        if shape.framing == "length":
            head.append(f"Content-Length: {len(body)}")
        elif shape.framing == "lie":
            head.append(f"Content-Length: {len(body) * 2 + 10}")
        elif shape.framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        head.append("Connection: close")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode()
        if shape.slow_headers:
            for i in range(len(raw_head)):
                if time.monotonic() - started > shape.give_up:
                    return
                conn.sendall(raw_head[i : i + 1])
                time.sleep(shape.slow_headers)
        else:
            conn.sendall(raw_head)
        pieces: Iterator[bytes]
        if shape.stream is not None:
            pieces = shape.stream()
        elif shape.trickle:
            pieces = (body[i : i + 1] for i in range(len(body)))
        else:
            pieces = iter([body])
        for piece in pieces:
            if time.monotonic() - started > shape.give_up:
                return
            if shape.framing == "chunked":
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                conn.sendall(piece)
            if shape.trickle:
                time.sleep(shape.trickle)
        if shape.framing == "chunked":
            conn.sendall(b"0\r\n\r\n")


def gzip_bomb(decompressed: int) -> bytes:
    """A gzip stream of `decompressed` bytes of spaces after an envelope's start (made a
    megabyte at a time: the test process stays small)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: with the gzip header
    chunk = b" " * (1 << 20)
    parts = [packer.compress(envelope("").split(b"</atom:feed>")[0])]
    parts += [packer.compress(chunk) for _ in range(decompressed // len(chunk))]
    parts.append(packer.flush())
    return b"".join(parts)
