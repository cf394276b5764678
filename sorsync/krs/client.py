"""The KRS `replicate` client: one call = one page of at most 2000 records.

zeep builds the ReplicationRequest from the packaged WSDL (so the body follows the contract) and
owns the requests session and its timeouts; the envelope around it is assembled as bytes so the
STS-signed ID card goes out exactly as issued (see envelope.py). The answer is parsed by
`feed.parse_response`, which turns faults into typed errors. Retrying transient errors is the
caller's job (the sync engine knows what a page means); this client only renews an expired ID
card once and repeats that call.

One client per thread: a requests session is not meant to be shared between threads.
"""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
import zeep
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from zeep.exceptions import Error as ZeepError
from zeep.transports import Transport

from sorsync import __version__
from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.krs.envelope import SecurityProvider, build_envelope, created_timestamp
from sorsync.krs.errors import DgwsFault, KrsError, MalformedResponse, TransportError
from sorsync.krs.feed import Page, parse_response
from sorsync.krs.wsdl import request_schema, wsdl_path
from sorsync.logs import get_logger

if TYPE_CHECKING:
    from sorsync.config import Settings

log = get_logger(__name__)

# The default cap on one answer (SORSYNC_KRS_MAX_ANSWER_BYTES). A simulator page of 2000
# sygehusafdeling records (19 fields) is 2.3 MB, ~1.2 kB a record; 32 MiB leaves 16 kB a
# record for the wider SOR2 documents and keeps a sync's peak memory far under 300 MB
# (docs/reliability-hostile-source.md has the figures).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_CHUNK = 1 << 16
_HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": wire.SOAP_ACTION,
    "Accept": "text/xml",
}


@dataclass(frozen=True)
class Answer:
    """One raw HTTP answer to `replicate`, not parsed yet (see `KrsClient.send`)."""

    dt: Datatype
    offset: str
    max_records: int
    status: int
    content: bytes = field(repr=False)
    message_id: str
    started: float
    renewed: bool  # the ID card was renewed for this call already


def safe_url(url: str) -> str:
    """The URL without user:password, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_calls = threading.local()  # the watchdog of the call this thread is making, if any


class _Watchdog:
    """Shuts the socket of one call down at its deadline, whatever the call is waiting for.

    requests' timeouts bound each socket operation only: a server that trickles headers or
    body (one byte a second, with or without Content-Length) never trips them, and a reader
    blocked in urllib3 never comes back to look at a clock. A timer thread that shuts the
    socket down makes the blocked read return at once, so connect, headers and the whole
    body share one deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.answering = False  # the status line and headers have come
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            fired = self.fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)

    def __enter__(self) -> _Watchdog:
        _calls.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        _calls.watchdog = None


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        sock.shutdown(socket.SHUT_RDWR)


def _watch_current(conn: HTTPConnection) -> None:
    watchdog: _Watchdog | None = getattr(_calls, "watchdog", None)
    if watchdog is not None:
        watchdog.watch(conn.sock)


class _WatchedHTTPConnection(HTTPConnection):
    # Both hooks: connect() for a new connection, request() for a kept-alive one.
    def connect(self) -> None:
        super().connect()
        _watch_current(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch_current(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections report their sockets to the call's watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        return manager


class KrsClient:
    """Calls `replicate` on one KRS endpoint (NSP or the simulator)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60,
        security: SecurityProvider | None = None,
        copy_rows: bool = True,
        max_answer_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"KRS URL must be http(s)://host/…, got {safe_url(url)!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be above 0 seconds, got {timeout!r}")
        if max_answer_bytes < 1:
            raise ValueError(f"max_answer_bytes must be above 0, got {max_answer_bytes!r}")
        self.url = url
        self.timeout = float(timeout)
        self.max_answer_bytes = max_answer_bytes
        self.security = security
        # Pages come as COPY-ready rows where they can (what the sync stores); False gives
        # every page as entries.
        self.copy_rows = copy_rows
        # One DGWS flow per client (a sync run); quote it to NSP support when asking about calls.
        self.flow_id = str(uuid.uuid4())
        self._session = requests.Session()
        self._session.mount("http://", _WatchedAdapter())
        self._session.mount("https://", _WatchedAdapter())
        # timeout covers loading WSDL/XSD, operation_timeout every call (connect and each read);
        # zeep's default operation_timeout is None = wait forever.
        self._transport = Transport(  # type: ignore[no-untyped-call]
            session=self._session, timeout=self.timeout, operation_timeout=self.timeout
        )
        self._session.headers["User-Agent"] = f"sorsync/{__version__}"
        self._zeep = zeep.Client(  # type: ignore[no-untyped-call]
            str(wsdl_path()),
            transport=self._transport,
            settings=zeep.Settings(strict=True, xml_huge_tree=True),
        )
        self._service = self._zeep.service

    def __repr__(self) -> str:
        return f"KrsClient({safe_url(self.url)!r}, timeout={self.timeout}, flow_id={self.flow_id})"

    # --- lifecycle ---

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> KrsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the operation ---

    def request_body(self, dt: Datatype, offset: str, max_records: int) -> bytes:
        """The serialised krs:ReplicationRequest, built by zeep and checked against the XSD."""
        # registerVersion only above 1: a v1 request stays byte for byte what NSP's 2013 servers
        # know (the element is optional and absent means 1).
        extra: dict[str, int] = (
            {"registerVersion": dt.register_version} if dt.register_version != 1 else {}
        )
        try:
            envelope: Any = self._zeep.create_message(  # type: ignore[no-untyped-call]
                self._service,
                "replicate",
                register=dt.register,
                datatype=dt.datatype,
                version=dt.version,
                offset=offset,
                maxRecords=max_records,
                **extra,
            )
        except ZeepError as exc:
            raise ValueError(f"cannot build a ReplicationRequest for {dt.key}: {exc}") from None
        body = envelope.find(f"{{{wire.NS_SOAP}}}Body")
        request = body[0]
        schema = request_schema()
        if not schema.validate(request):
            problem = (str(schema.error_log).strip().splitlines() or ["?"])[-1]
            raise ValueError(f"ReplicationRequest for {dt.key} breaks the KRS schema: {problem}")
        # Detached copy without the envelope's namespace declarations zeep left in scope.
        detached = copy.deepcopy(request)
        etree.cleanup_namespaces(detached)
        return etree.tostring(detached, encoding="UTF-8", xml_declaration=False)

    def replicate(self, dt: Datatype, offset: str, max_records: int) -> Page:
        """The records of `dt` after token `offset`, at most `max_records` (1..2000) of them.

        An empty page means caught up. Raises a KrsError subclass on any failure.
        """
        return self.finish(self.send(dt, offset, max_records))

    def send(self, dt: Datatype, offset: str, max_records: int) -> Answer:
        """The first half of `replicate`: post the request and read the raw answer.

        The page loop uses the halves to overlap parsing one page with fetching the next.
        """
        if (
            isinstance(max_records, bool)
            or not isinstance(max_records, int)
            or not 1 <= max_records <= wire.MAX_RECORDS
        ):
            raise ValueError(
                f"max_records must be an integer from 1 to {wire.MAX_RECORDS}, got {max_records!r}"
            )
        return self._send(dt, offset, max_records, renewed=False)

    def _send(self, dt: Datatype, offset: str, max_records: int, *, renewed: bool) -> Answer:
        body = self.request_body(dt, offset, max_records)
        assertion = self.security.assertion() if self.security is not None else None
        message_id = str(uuid.uuid4())
        envelope = build_envelope(
            body,
            assertion=assertion,
            message_id=message_id,
            flow_id=self.flow_id,
            created=created_timestamp(),
        )
        started = time.perf_counter()
        status, content = self._post(envelope, dt)
        return Answer(dt, offset, max_records, status, content, message_id, started, renewed)

    def parse(self, answer: Answer) -> Page:
        """The page in `answer`, or its KrsError. Pure (no I/O): safe in any thread."""
        page = parse_response(
            answer.content, answer.status, answer.dt, offset=answer.offset, copy_rows=self.copy_rows
        )
        log.debug(
            "krs.replicate",
            datatype=answer.dt.key,
            offset=answer.offset,
            records=len(page),
            bytes=len(answer.content),
            seconds=round(time.perf_counter() - answer.started, 3),
            message_id=answer.message_id,
            flow_id=self.flow_id,
        )
        return page

    def finish(self, answer: Answer) -> Page:
        """The second half of `replicate`: parse, renewing an expired ID card once.

        Renewing repeats the call on this client's session: only from the thread that sends.
        """
        while True:
            try:
                return self.parse(answer)
            except DgwsFault as fault:
                if (
                    fault.code == "expired_idcard"
                    and self.security is not None
                    and not answer.renewed
                ):
                    log.warning(
                        "krs.card_expired_renewing",
                        datatype=answer.dt.key,
                        message_id=answer.message_id,
                        flow_id=self.flow_id,
                    )
                    self.security.renew()
                    answer = self._send(answer.dt, answer.offset, answer.max_records, renewed=True)
                    continue
                raise

    def _post(self, envelope: bytes, dt: Datatype) -> tuple[int, bytes]:
        where = safe_url(self.url)
        limit = f"{self.timeout:g} s (SORSYNC_KRS_TIMEOUT)"
        watchdog = _Watchdog(self.timeout)
        try:
            with watchdog:
                answer = self._exchange(envelope, dt, where, limit)
        except KrsError as exc:
            if watchdog.fired and exc.transient:
                raise self._too_slow(dt, where, limit, watchdog) from None
            raise
        except Exception:
            if watchdog.fired:
                raise self._too_slow(dt, where, limit, watchdog) from None
            raise
        if watchdog.fired:
            # A body read until the connection closes ends "normally" when the watchdog shuts
            # the socket: what was read is only a part.
            raise self._too_slow(dt, where, limit, watchdog)
        return answer

    def _too_slow(
        self, dt: Datatype, where: str, limit: str, watchdog: _Watchdog
    ) -> TransportError:
        if not watchdog.answering:
            return TransportError(
                f"KRS at {where} did not answer {dt.key} within {limit} (connect, headers and"
                " the whole answer together); the server is slow or hung — retrying later"
                " usually helps (or raise SORSYNC_KRS_TIMEOUT)"
            )
        return TransportError(
            f"KRS at {where} did not finish answering {dt.key} within {limit} (connect,"
            " headers and the whole answer together); the server or network is slow —"
            " retrying later usually helps (or raise SORSYNC_KRS_TIMEOUT)"
        )

    def _exchange(self, envelope: bytes, dt: Datatype, where: str, limit: str) -> tuple[int, bytes]:
        cap = self.max_answer_bytes
        try:
            with self._session.post(
                self.url,
                data=envelope,
                headers=_HEADERS,
                timeout=(self.timeout, self.timeout),
                stream=True,
            ) as response:
                watchdog: _Watchdog | None = getattr(_calls, "watchdog", None)
                if watchdog is not None:
                    watchdog.answering = True
                declared = response.headers.get("Content-Length", "")
                if (
                    declared.isdigit()
                    and int(declared) > cap
                    and not response.headers.get("Content-Encoding")
                ):
                    raise self._too_big(dt, cap, f"it announces {declared} bytes")
                chunks: list[bytes] = []
                size = 0
                # iter_content decodes gzip/deflate in steps of at most _CHUNK (urllib3 2.6+
                # bounds each decompression), so a gzip bomb stops at the cap like any answer.
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > cap:
                        raise self._too_big(dt, cap, "reading stopped there")
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)
        except KrsError:
            raise
        except requests.exceptions.ConnectTimeout:
            raise TransportError(
                f"could not connect to KRS at {where} within {limit}: check SORSYNC_KRS_URL and"
                " the network path (firewall, VPN, Sundhedsdatanet)"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise TransportError(
                f"KRS at {where} did not answer {dt.key} within {limit}; the server is slow or"
                " hung — retrying later usually helps (or raise SORSYNC_KRS_TIMEOUT)"
            ) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise TransportError(
                f"the connection to KRS at {where} broke off in the middle of the answer for"
                f" {dt.key} ({type(exc).__name__}); retrying later usually helps"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            if any(isinstance(arg, ReadTimeoutError) for arg in exc.args):
                raise TransportError(
                    f"KRS at {where} stopped sending the answer for {dt.key} for longer than"
                    f" {limit}; retrying later usually helps"
                ) from None
            raise TransportError(
                f"could not talk to KRS at {where} ({_reason(exc)}): the connection was refused"
                " or reset; check that the service is up and SORSYNC_KRS_URL is right"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(
                f"request to KRS at {where} failed: {type(exc).__name__}", transient=False
            ) from None

    @staticmethod
    def _too_big(dt: Datatype, cap: int, how: str) -> MalformedResponse:
        # Not transient: the same page is as big next time. A page holds at most 2000 records,
        # so an answer this size is not a KRS page; a smaller SORSYNC_KRS_PAGE_SIZE or a larger
        # cap is the person's call.
        return MalformedResponse(
            f"KRS answer for {dt.key} is larger than {cap} bytes ({how}), more than a page of"
            f" {wire.MAX_RECORDS} records can be; refused — if the source's records really are"
            " that wide, raise SORSYNC_KRS_MAX_ANSWER_BYTES or lower SORSYNC_KRS_PAGE_SIZE"
        )


def _reason(exc: BaseException) -> str:
    """The innermost cause's class name, e.g. ConnectionResetError (messages may carry URLs)."""
    inner: BaseException = exc
    seen = 0
    while seen < 10:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            for arg in inner.args:
                if isinstance(arg, BaseException):
                    nxt = arg
                    break
        if nxt is None:
            break
        inner = nxt
        seen += 1
    return type(inner).__name__


def client_from_settings(
    settings: Settings, url: str, *, security: SecurityProvider | None = None
) -> KrsClient:
    """A client for `url` with SORSYNC_KRS_TIMEOUT and the configured ID card source.

    The card source comes from `sorsync.dgws.security_from_settings` (SORSYNC_IDCARD_FILE →
    FileIdCard, SORSYNC_STS_URL → the STS provider, neither → no card) unless given.
    """
    if security is None:
        from sorsync.dgws import security_from_settings  # lazy: keeps STS code off the import path

        security = security_from_settings(settings)
    return KrsClient(
        url,
        timeout=settings.krs_timeout,
        security=security,
        max_answer_bytes=settings.krs_max_answer_bytes,
    )
