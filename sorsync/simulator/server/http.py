"""The simulator as an HTTP server: routing `POST <SERVICE_PATH>` to replicate.py, `GET
<SERVICE_PATH>?wsdl|?xsd=` to wsdl.py and `/admin/*` to admin.py; reading request bodies
(Content-Length required, size limits, the snapshot streamed), sending answers (keep-alive,
truncated bodies, TCP resets), one log line per replicate call; the threaded server, which
tracks its connections so stopping ends keep-alive ones; and `serve`/`serve_in_thread`.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from sorsync.krs.wire import SERVICE_PATH
from sorsync.logs import get_logger
from sorsync.simulator.faults import FaultPlan
from sorsync.simulator.render import CONTENT_TYPE
from sorsync.simulator.server import admin
from sorsync.simulator.server.admin import AdminAnswer
from sorsync.simulator.server.replicate import Enforce, replicate
from sorsync.simulator.server.wsdl import wsdl_document
from sorsync.simulator.sor2 import DEFAULT_SHAPE, RecordShape
from sorsync.simulator.store import Store

log = get_logger("sorsync.simulator")

MAX_REQUEST_BYTES = 16 * 1024 * 1024
_ADMIN_BODY_BYTES = 1024 * 1024  # a fault plan or record shape; snapshots are streamed instead


class _BodyReader(io.RawIOBase):
    """Reads exactly Content-Length bytes of a request body, streaming."""

    def __init__(self, raw: io.BufferedIOBase, length: int) -> None:
        self._raw = raw
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.remaining)]
        data = self._raw.read(len(view))
        if not data:
            raise ConnectionError("the client closed the connection before sending the body")
        view[: len(data)] = data
        self.remaining -= len(data)
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the JBoss NSP runs on
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to every small answer
    server_version = "sorsync-krs-simulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: SimulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged once, with context, by the code that answers it

    # -- plumbing --

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None or not value.strip().isdigit():
            return None
        return int(value)

    def _read_body(self, limit: int) -> bytes | None:
        length = self._content_length()
        if length is None:
            self._send_text(
                HTTPStatus.LENGTH_REQUIRED, "send the request with a Content-Length header\n"
            )
            self.close_connection = True
            return None
        if length > limit:
            self._send_text(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request larger than {limit} bytes\n"
            )
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        send_bytes: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if send_bytes is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(body if send_bytes is None else body[:send_bytes])
        if send_bytes is not None:
            self.close_connection = True

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _send_json(self, status: int, payload: Any) -> None:
        body = (json.dumps(payload, default=str, ensure_ascii=False, indent=2) + "\n").encode()
        self._send(status, body, "application/json")

    def _send_answer(self, answer: AdminAnswer) -> None:
        self._send_json(answer.status, answer.payload)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST instead of FIN, like a proxy dropping the connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    def _route(self) -> tuple[str, dict[str, list[str]], str]:
        path, _, query = self.path.partition("?")
        return path, parse_qs(query, keep_blank_values=True), query

    # -- methods --

    def do_POST(self) -> None:
        path, _, _ = self._route()
        if path == SERVICE_PATH:
            self._replicate()
        elif path == "/admin/snapshot":
            self._admin_snapshot()
        elif path == "/admin/faults":
            raw = self._read_body(_ADMIN_BODY_BYTES)
            if raw is not None:
                self._send_answer(admin.set_faults(self.server.faults, raw))
        elif path == "/admin/shape":
            raw = self._read_body(_ADMIN_BODY_BYTES)
            if raw is not None:
                self._send_answer(admin.set_shape(self.server.store, raw))
        else:
            self._read_body(MAX_REQUEST_BYTES)
            self._send_text(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}\n")

    def do_GET(self) -> None:
        path, params, query = self._route()
        if path == SERVICE_PATH:
            if query.lower() == "wsdl" or "xsd" in params:
                xsd = params["xsd"][0] if "xsd" in params else None
                document = wsdl_document(self.server.url, xsd)
                if document is None:
                    self._send_text(HTTPStatus.NOT_FOUND, f"no schema file {xsd!r}\n")
                else:
                    self._send(HTTPStatus.OK, document, CONTENT_TYPE)
            else:
                self._send_text(
                    HTTPStatus.OK,
                    "KRS simulator: StamdataReplicationService (SOAP 1.1). POST replicate"
                    f" requests here; the WSDL is at {self.server.url}?wsdl\n",
                )
        elif path == "/admin/state":
            self._send_json(HTTPStatus.OK, self.server.state())
        elif path == "/admin/faults":
            self._send_json(HTTPStatus.OK, self.server.faults.to_json())
        elif path == "/admin/shape":
            self._send_json(HTTPStatus.OK, self.server.store.shape.to_json())
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {path}\n")

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        path, _, _ = self._route()
        if path == "/admin/faults":
            self._send_answer(admin.clear_faults(self.server.faults))
        elif path == "/admin/shape":
            self._send_answer(admin.reset_shape(self.server.store))
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"no such endpoint: DELETE {path}\n")

    # -- endpoints that need the connection --

    def _replicate(self) -> None:
        raw = self._read_body(MAX_REQUEST_BYTES)
        if raw is None:
            return
        started = time.perf_counter()
        fault = self.server.faults.take()
        reply = replicate(self.server.store, raw, enforce=self.server.enforce, fault=fault)
        log.debug(
            "replicate",
            status=reply.status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            **reply.summary,
        )
        if reply.reset:
            self._reset()
            return
        self._send(reply.status, reply.body, reply.content_type, send_bytes=reply.send_bytes)

    def _admin_snapshot(self) -> None:
        length = self._content_length()
        if length is None:
            self._send_text(HTTPStatus.LENGTH_REQUIRED, "send the snapshot with a Content-Length\n")
            self.close_connection = True
            return
        reader = _BodyReader(self.rfile, length)
        stream = io.BufferedReader(reader, buffer_size=1 << 16)
        answer = admin.import_snapshot(self.server.store, stream)
        if answer.status != HTTPStatus.OK or reader.remaining:
            self.close_connection = True  # the rest of the body may be unread
        self._send_answer(answer)


class SimulatorServer(ThreadingHTTPServer):
    """A threaded HTTP server answering KRS calls from `store`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        store: Store | None = None,
        *,
        enforce: Enforce | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.store = store if store is not None else Store()
        self.enforce = enforce
        self.faults = faults if faults is not None else FaultPlan()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + SERVICE_PATH

    def state(self) -> dict[str, Any]:
        """What `GET /admin/state` answers (admin.state)."""
        return admin.state(self.store, self.faults, self.url)

    # Track open connections so stop() can end keep-alive connections instead of leaving
    # their threads blocked on a read.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def serve(
    store: Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    enforce: Enforce | None = None,
    shape: RecordShape | None = None,
) -> SimulatorServer:
    """A bound server (not yet serving): call `serve_forever()` or use `serve_in_thread`.
    `shape` replaces the store's SOR2 record shape (sor2.RecordShape)."""
    server = SimulatorServer((host, port), store, enforce=enforce)
    if shape is not None:
        server.store.shape = shape
    return server


@dataclass
class SimulatorHandle:
    """A simulator running in a background thread of this process."""

    url: str  # the full service URL
    store: Store
    faults: FaultPlan
    server: SimulatorServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def set_shape(self, shape: RecordShape | None = None) -> None:
        """Render SOR2 records in `shape` from the next page on (None: the default shape)."""
        self.store.shape = shape if shape is not None else DEFAULT_SHAPE

    def stop(self) -> None:
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(
    store: Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    enforce: Enforce | None = None,
    shape: RecordShape | None = None,
) -> SimulatorHandle:
    server = serve(store, host=host, port=port, enforce=enforce, shape=shape)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"krs-simulator-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return SimulatorHandle(server.url, server.store, server.faults, server, thread)
