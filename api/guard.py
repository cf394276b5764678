"""The API's HTTP protocol: uvicorn's httptools protocol with a header deadline and a cap.

uvicorn 0.54 bounds the idle time between requests (`timeout_keep_alive`) and answers 503 past
`limit_concurrency`, but only once a request's headers are complete: a client that opens a
connection and sends its headers a byte at a time (slowloris) holds the connection forever,
and any number of them can. This protocol closes a connection whose request headers are not
complete within SORSYNC_API_HEADER_TIMEOUT seconds (or that sends more than MAX_HEADER_BYTES
of them), and refuses a connection beyond SORSYNC_API_MAX_CONNECTIONS at once. Used by
`sorsync serve` (sorsync/cli/serve.py) as `http="api.guard:GuardedProtocol"`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sorsync.config import get_settings

MAX_HEADER_BYTES = 64 * 1024  # request line and headers; a lookup's are a few hundred bytes

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 29\r\nconnection: close\r\n\r\ntoo many connections; retry.\n"
)


class GuardedProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.api_header_timeout
        self.max_connections = settings.api_max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_REFUSED)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the next request on a kept-alive connection has begun
        super().data_received(data)
        # Counted after parsing: a client may send its headers and a large body in one write
        # (POST /v1/resolve's 10 000 items), and headers completed in this chunk disarm the
        # timer; only a chunk that leaves the headers unfinished counts towards the cap.
        if self._header_timer is not None:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._close()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None:
            self._watch_for_cut_off(self.cycle)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client closed its write side. Mid-body of an answer already begun, the body is
        cut off: keep the connection open for the rest of the answer (a streamed POST
        /v1/resolve ends with an error row saying so, api/routes/resolve.py), and close it once
        that is sent. Otherwise close, as uvicorn does (before an answer has begun there is none
        worth sending: the client stopped mid-request)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            return None
        if not cycle.response_started:
            return None
        cycle.body_cut_off = True  # type: ignore[attr-defined]
        cycle.keep_alive = False
        cycle.message_event.set()
        return True

    @staticmethod
    def _watch_for_cut_off(cycle: Any) -> None:
        """Once the body is cut off (eof_received) and what came of it was read, the app's next
        receive() is http.disconnect, which Starlette reports as ClientDisconnect. Set before
        the app's task first runs, so the app gets this receive."""
        read = cycle.receive
        cycle.body_cut_off = False

        async def receive() -> Any:
            if cycle.body_cut_off and not cycle.body:
                return {"type": "http.disconnect"}
            return await read()

        cycle.receive = receive

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._close)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _close(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()
