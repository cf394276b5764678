"""The KRS client over real HTTP against a tiny canned server on 127.0.0.1 (no mocks).

The server answers each POST with the next canned reply: a status and body, optionally after a
delay, trickled, cut short, or with the connection reset.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from sorsync.datatypes import Datatype, Field, FieldType
from sorsync.krs import wire
from sorsync.krs.client import KrsClient
from sorsync.krs.envelope import FileIdCard
from sorsync.krs.errors import (
    DgwsFault,
    IdCardExpired,
    MalformedResponse,
    ReplicationFault,
    TransportError,
)

CAPTURES = Path(__file__).parent.parent / "data" / "krs-captures"
OK_BODY = (CAPTURES / "response_raw_ddv.xml").read_bytes()
DISEASES = Datatype(
    "ddv",
    "diseases",
    1,
    (Field("Id", "id", FieldType.TEXT), Field("name", "name", FieldType.TEXT)),
    wire.record_namespace("ddv"),
)


@dataclass
class Reply:
    status: int = 200
    body: bytes = OK_BODY
    delay: float = 0.0
    mode: str = "normal"  # normal | reset | cut | trickle


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes


@dataclass
class StubKrs:
    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{wire.SERVICE_PATH}"

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def _handler(stub: StubKrs) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            stub.seen.append(Seen(dict(self.headers.items()), self.rfile.read(length)))
            reply = stub.next_reply()
            time.sleep(reply.delay)
            with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                self._answer(reply)

        def _answer(self, reply: Reply) -> None:
            if reply.mode == "reset":
                # SO_LINGER 0 makes close() send a TCP RST instead of a clean FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.mode == "cut":
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if reply.mode == "trickle":
                step = 16 * 1024
                for start in range(0, len(reply.body), step):
                    self.wfile.write(reply.body[start : start + step])
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.wfile.write(reply.body)

        def finish(self) -> None:
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stub() -> Iterator[StubKrs]:
    state = StubKrs()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class CountingCards:
    """A SecurityProvider handing out card 1, then card 2 after renew()."""

    def __init__(self) -> None:
        self.generation = 1
        self.renewals = 0

    def card(self, generation: int) -> bytes:
        return (
            f'<saml:Assertion xmlns:saml="{wire.NS_SAML}" id="IDCard">'
            f"<saml:Issuer>card-{generation}</saml:Issuer></saml:Assertion>"
        ).encode()

    def assertion(self) -> bytes:
        return self.card(self.generation)

    def renew(self) -> None:
        self.renewals += 1
        self.generation += 1


def dgws_fault(code: str) -> bytes:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{wire.NS_SOAP}" xmlns:medcom="{wire.NS_MEDCOM}">'
        "<soapenv:Body><soapenv:Fault><faultcode>Server</faultcode>"
        f"<detail><medcom:FaultCode>{code}</medcom:FaultCode></detail>"
        "<faultstring>IDCard expired.</faultstring></soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def replication_fault(code: str) -> bytes:
    return (
        f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body><S:Fault><faultcode>S:Server</faultcode>'
        "<faultstring>The provided cvr is not authorized to fetch this datatype.</faultstring>"
        f'<detail><ns2:ReplicationFault xmlns:ns2="{wire.NS_KRS}">{code}</ns2:ReplicationFault>'
        "</detail></S:Fault></S:Body></S:Envelope>"
    ).encode()


def test_page_over_the_wire_with_dgws_headers(stub: StubKrs) -> None:
    stub.replies = [Reply()]
    cards = CountingCards()
    with KrsClient(stub.url, timeout=5, security=cards) as client:
        page = client.replicate(DISEASES, wire.START_TOKEN, 2000)
        client.replicate(DISEASES, wire.START_TOKEN, 2000)
    assert [e.pid for e in page.entries] == [1]
    assert page.entries[0].values == ("1-1", "Anthrax")

    first, second = stub.seen
    assert first.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert first.headers["SOAPAction"] == wire.SOAP_ACTION
    assert cards.card(1) in first.body  # verbatim
    root = etree.fromstring(first.body)
    created = root.findtext(f".//{{{wire.NS_WSU}}}Created")
    assert created is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)
    assert root.findtext(f".//{{{wire.NS_KRS}}}ReplicationRequest/maxRecords") == "2000"

    def linking(seen: Seen, name: str) -> str | None:
        return etree.fromstring(seen.body).findtext(f".//{{{wire.NS_MEDCOM}}}{name}")

    assert linking(first, "MessageID") != linking(second, "MessageID")
    assert linking(first, "FlowID") == linking(second, "FlowID") == client.flow_id


def test_replication_fault_over_http_500(stub: StubKrs) -> None:
    stub.replies = [Reply(500, replication_fault("urn:stamdata:unauthorized-access"))]
    with (
        KrsClient(stub.url, timeout=5) as client,
        pytest.raises(ReplicationFault, match="whitelist the CVR for ddv/diseases/v1") as info,
    ):
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert info.value.transient is False


def test_503_without_soap_body(stub: StubKrs) -> None:
    stub.replies = [Reply(503, b"")]
    with KrsClient(stub.url, timeout=5) as client, pytest.raises(TransportError) as info:
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert info.value.status == 503
    assert info.value.transient is True


def test_no_answer_within_the_timeout(stub: StubKrs) -> None:
    stub.replies = [Reply(delay=2.0)]
    started = time.monotonic()
    with KrsClient(stub.url, timeout=0.5) as client, pytest.raises(TransportError) as info:
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert time.monotonic() - started < 1.5
    assert info.value.transient is True
    assert "within 0.5 s" in str(info.value)


def test_a_trickling_answer_is_bounded_by_the_timeout(stub: StubKrs) -> None:
    # Every read gets data quickly, but the whole answer takes ~1.3 s > 0.5 s.
    stub.replies = [Reply(body=OK_BODY + b" " * (200 * 1024), mode="trickle")]
    started = time.monotonic()
    with KrsClient(stub.url, timeout=0.5) as client, pytest.raises(TransportError) as info:
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert time.monotonic() - started < 1.2
    assert "did not finish answering" in str(info.value)
    assert info.value.transient is True


def test_connection_reset(stub: StubKrs) -> None:
    stub.replies = [Reply(mode="reset")]
    with KrsClient(stub.url, timeout=5) as client, pytest.raises(TransportError) as info:
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert info.value.transient is True
    assert "refused or reset" in str(info.value) or "broke off" in str(info.value)


def test_answer_cut_short(stub: StubKrs) -> None:
    stub.replies = [Reply(mode="cut")]
    with KrsClient(stub.url, timeout=5) as client, pytest.raises(TransportError) as info:
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert info.value.transient is True
    assert "broke off" in str(info.value)


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        KrsClient(f"http://127.0.0.1:{port}/x", timeout=2) as client,
        pytest.raises(TransportError) as info,
    ):
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert info.value.transient is True
    assert f"127.0.0.1:{port}" in str(info.value)


def test_truncated_xml_with_http_200(stub: StubKrs) -> None:
    # Content-Length matches what is sent, but the XML itself stops early.
    stub.replies = [Reply(body=OK_BODY[: len(OK_BODY) // 2])]
    with KrsClient(stub.url, timeout=5) as client, pytest.raises(MalformedResponse) as info:
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert info.value.transient is True


def test_expired_card_is_renewed_once_and_the_call_repeated(stub: StubKrs) -> None:
    stub.replies = [Reply(500, dgws_fault("expired_idcard")), Reply()]
    cards = CountingCards()
    with KrsClient(stub.url, timeout=5, security=cards) as client:
        page = client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert len(page) == 1
    assert cards.renewals == 1
    assert len(stub.seen) == 2
    assert cards.card(1) in stub.seen[0].body
    assert cards.card(2) in stub.seen[1].body


def test_expired_twice_gives_up(stub: StubKrs) -> None:
    stub.replies = [Reply(500, dgws_fault("expired_idcard"))]
    cards = CountingCards()
    with (
        KrsClient(stub.url, timeout=5, security=cards) as client,
        pytest.raises(DgwsFault, match="expired_idcard"),
    ):
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert cards.renewals == 1
    assert len(stub.seen) == 2


def test_other_dgws_faults_are_not_retried(stub: StubKrs) -> None:
    stub.replies = [Reply(500, dgws_fault("security_level_failed"))]
    cards = CountingCards()
    with KrsClient(stub.url, timeout=5, security=cards) as client, pytest.raises(DgwsFault):
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert cards.renewals == 0
    assert len(stub.seen) == 1


def test_an_expired_card_file_is_never_sent(stub: StubKrs, tmp_path: Path) -> None:
    until = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    card = tmp_path / "card.xml"
    card.write_text(
        f'<saml:Assertion xmlns:saml="{wire.NS_SAML}" id="IDCard">'
        f'<saml:Conditions NotOnOrAfter="{until}"/></saml:Assertion>'
    )
    stub.replies = [Reply()]
    with (
        KrsClient(stub.url, timeout=5, security=FileIdCard(card)) as client,
        pytest.raises(IdCardExpired),
    ):
        client.replicate(DISEASES, wire.START_TOKEN, 10)
    assert stub.seen == []
