"""A test SOSI STS for the simulator: turns self-signed system ID cards into STS-signed ones.

It generates its own RSA key and a self-signed "SOSI Federation Test STS" certificate at start
(nothing is read from disk), checks a `wst:RequestSecurityToken` the way the SOSI STS does —
timestamp format, the client's signature with the certificate in the card, OCESCertHash of that
certificate, level 3, a CVR — and answers with a fresh card signed by its key. The simulator's
DGWS enforcement trusts exactly that certificate.

Test knobs (plain attributes, change them while it runs): `validity` of issued cards, `level`
written into them (e.g. 1 to provoke `security_level_failed`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from sorsync.dgws import idcard, xmldsig
from sorsync.krs.wire import NS_DS, NS_MEDCOM, NS_SAML, NS_SOAP, NS_WSSE, NS_WST, NS_WSU
from sorsync.testing.certs import self_signed

STS_PATHS = ("/sts/services/NewSecurityTokenService", "/sts/services/SecurityTokenService")
STS_SUBJECT = "SOSI Federation Test STS"
DEFAULT_ISSUER = "SORSYNC-TEST-STS"
SAML_TOKEN_TYPE = "urn:oasis:names:tc:SAML:2.0:assertion:"  # noqa: S105 - a URN
WSA_NS = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
STATUS_VALID = "http://schemas.xmlsoap.org/ws/2005/02/trust/status/valid"
_MAX_REQUEST = 1 << 20  # an RST with one card is a few KB


class StsRejection(Exception):
    """The STS refuses the request; `code` is the DGWS fault code it answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def make_sts_credentials(
    *, common_name: str = STS_SUBJECT, now: datetime | None = None
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh RSA-2048 key and a self-signed certificate for it (valid for ten years)."""
    moment = now or datetime.now(UTC)
    return self_signed(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sorsync simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ],
        not_before=moment - timedelta(days=1),
        not_after=moment + timedelta(days=3650),
    )


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _missing(what: str) -> StsRejection:
    return StsRejection("processing_problem", f"the request lacks {what}")


class SimulatedSts:
    """The STS logic, independent of HTTP: `handle(body) -> (status, response bytes)`."""

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_ISSUER,
        validity: timedelta = timedelta(hours=24),
        level: int = 3,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.issuer = issuer
        self.validity = validity
        self.level = level
        self._clock = clock or (lambda: datetime.now(UTC))
        self.key, self.cert = make_sts_credentials()
        self._lock = threading.Lock()
        self.issued = 0
        self.rejected = 0

    def now(self) -> datetime:
        return self._clock()

    # --- request checks --------------------------------------------------------------------

    def _request_card(self, root: etree._Element) -> etree._Element:
        if root.tag != _q(NS_SOAP, "Envelope"):
            raise StsRejection("processing_problem", "the request is not a SOAP 1.1 envelope")
        created = root.find(
            f"{_q(NS_SOAP, 'Header')}/{_q(NS_WSSE, 'Security')}/"
            f"{_q(NS_WSU, 'Timestamp')}/{_q(NS_WSU, 'Created')}"
        )
        if created is None:
            raise _missing("wsse:Security/wsu:Timestamp/wsu:Created")
        try:
            idcard.parse_time(created.text, "wsu:Created")
        except idcard.IdCardError as exc:
            raise StsRejection("processing_problem", str(exc)) from None
        rst = root.find(f"{_q(NS_SOAP, 'Body')}/{_q(NS_WST, 'RequestSecurityToken')}")
        if rst is None:
            raise _missing("soapenv:Body/wst:RequestSecurityToken")
        if rst.get("Context") != "www.sosi.dk":
            raise StsRejection(
                "processing_problem", 'RequestSecurityToken Context is not "www.sosi.dk"'
            )
        card = rst.find(f"{_q(NS_WST, 'Claims')}/{_q(NS_SAML, 'Assertion')}")
        if card is None:
            raise _missing("wst:Claims/saml:Assertion (the ID card to sign)")
        return card

    def _check_card(self, card: etree._Element) -> tuple[idcard.IdCardFacts, x509.Certificate]:
        try:
            facts = idcard.parse_idcard(card)
        except idcard.IdCardError as exc:
            raise StsRejection("invalid_idcard", str(exc)) from None
        try:
            # The request card is self-signed: the certificate it carries is the client's.
            client_cert = xmldsig.verify(card, (), trust_embedded=True)
        except xmldsig.SignatureError as exc:
            raise StsRejection("invalid_signature", f"the ID card's signature: {exc}") from None
        now = self.now()
        if not client_cert.not_valid_before_utc <= now < client_cert.not_valid_after_utc:
            raise StsRejection("invalid_certificate", "the signing certificate is not valid now")
        if facts.cert_hash != idcard.cert_hash(client_cert):
            raise StsRejection(
                "invalid_idcard", "sosi:OCESCertHash does not match the signing certificate"
            )
        if facts.level != 3:
            raise StsRejection(
                "security_level_failed",
                f"a system ID card needs authentication level 3, the request has {facts.level}",
            )
        if facts.card_type != "system":
            raise StsRejection("invalid_idcard", "only system ID cards are issued here")
        if facts.cvr_name_format != idcard.CVR_FORMAT or not idcard.is_cvr(facts.cvr):
            raise StsRejection(
                "invalid_idcard", "medcom:CareProviderID must be a CVR number (medcom:cvrnumber)"
            )
        cert_cvr = idcard.cert_cvr(client_cert)
        if cert_cvr is not None and cert_cvr != facts.cvr:
            raise StsRejection(
                "invalid_idcard",
                f"the card's CVR {facts.cvr} is not the CVR of the certificate ({cert_cvr})",
            )
        if not facts.valid_at(now):
            raise StsRejection("expired_idcard", "the request's ID card is not valid now")
        return facts, client_cert

    # --- issuing ---------------------------------------------------------------------------

    def issue(self, facts: idcard.IdCardFacts) -> etree._Element:
        """A new card for the (already checked) request facts, signed with the STS key."""
        now = self.now().replace(microsecond=0)
        assert facts.cvr is not None
        assert facts.cert_hash is not None
        card = idcard.build_system_idcard(
            cvr=facts.cvr,
            system_name=facts.system_name or "",
            care_provider_name=facts.care_provider_name or "",
            oces_cert_hash=facts.cert_hash,
            issuer=self.issuer,
            issue_instant=now,
            not_before=now,
            not_on_or_after=now + self.validity,
            level=self.level,
        )
        xmldsig.sign(card, self.key, self.cert)
        return card

    def response(self, card: etree._Element) -> bytes:
        nsmap = {
            "soapenv": NS_SOAP,
            "wsse": NS_WSSE,
            "wsu": NS_WSU,
            "wst": NS_WST,
            "wsa": WSA_NS,
            "saml": NS_SAML,
            "ds": NS_DS,
            "medcom": NS_MEDCOM,
        }
        envelope = etree.Element(_q(NS_SOAP, "Envelope"), nsmap=nsmap)
        header = etree.SubElement(envelope, _q(NS_SOAP, "Header"))
        security = etree.SubElement(header, _q(NS_WSSE, "Security"))
        timestamp = etree.SubElement(security, _q(NS_WSU, "Timestamp"))
        etree.SubElement(timestamp, _q(NS_WSU, "Created")).text = idcard.format_time(self.now())
        body = etree.SubElement(envelope, _q(NS_SOAP, "Body"))
        rstr = etree.SubElement(body, _q(NS_WST, "RequestSecurityTokenResponse"))
        rstr.set("Context", "www.sosi.dk")
        etree.SubElement(rstr, _q(NS_WST, "TokenType")).text = SAML_TOKEN_TYPE
        etree.SubElement(rstr, _q(NS_WST, "RequestedSecurityToken")).append(card)
        status = etree.SubElement(rstr, _q(NS_WST, "Status"))
        etree.SubElement(status, _q(NS_WST, "Code")).text = STATUS_VALID
        issuer = etree.SubElement(rstr, _q(NS_WST, "Issuer"))
        etree.SubElement(issuer, _q(WSA_NS, "Address")).text = self.issuer
        # Declarations on the envelope only, like SEAL writes them: the card's own namespace
        # declarations move up, so a client must keep the inherited ones when it takes the
        # card out (the signature covers the canonical form, which does not change).
        etree.cleanup_namespaces(envelope, top_nsmap=nsmap)
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

    def fault(self, code: str, message: str) -> bytes:
        nsmap = {"soapenv": NS_SOAP, "medcom": NS_MEDCOM}
        envelope = etree.Element(_q(NS_SOAP, "Envelope"), nsmap=nsmap)
        body = etree.SubElement(envelope, _q(NS_SOAP, "Body"))
        fault = etree.SubElement(body, _q(NS_SOAP, "Fault"))
        etree.SubElement(fault, "faultcode").text = "Server"
        detail = etree.SubElement(fault, "detail")
        etree.SubElement(detail, _q(NS_MEDCOM, "FaultCode")).text = code
        etree.SubElement(fault, "faultstring").text = f"{code}: {message}"
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

    def handle(self, body: bytes) -> tuple[int, bytes]:
        """Answer one RequestSecurityToken: (200, RSTR with a card) or (500, SOAP fault)."""
        try:
            try:
                root = idcard.parse_xml(body)
            except (etree.XMLSyntaxError, idcard.IdCardError):
                raise StsRejection(
                    "processing_problem", "the request is not well-formed XML"
                ) from None
            facts, _ = self._check_card(self._request_card(root))
            card = self.issue(facts)
        except StsRejection as exc:
            with self._lock:
                self.rejected += 1
            return 500, self.fault(exc.code, str(exc))
        with self._lock:
            self.issued += 1
        return 200, self.response(card)


# --- HTTP ----------------------------------------------------------------------------------


@dataclass
class StsHandle:
    """A running test STS: `url` is the full service URL, `cert` the certificate to trust."""

    url: str
    sts: SimulatedSts
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def cert(self) -> x509.Certificate:
        return self.sts.cert

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler_for(sts: SimulatedSts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass  # tests and the simulator log elsewhere; keep stderr clean

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path.split("?")[0] not in STS_PATHS:
                self._send(404, b"not found\n", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_REQUEST:
                self._send(413, b"request too large\n", "text/plain")
                return
            status, body = sts.handle(self.rfile.read(length))
            self._send(status, body, "text/xml; charset=utf-8")

        def do_GET(self) -> None:
            self._send(405, b"use POST\n", "text/plain")

    return Handler


def serve_sts_in_thread(
    sts: SimulatedSts | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> StsHandle:
    """Start a test STS on its own little HTTP server (port 0 = any free port)."""
    sts = sts or SimulatedSts()
    server = ThreadingHTTPServer((host, port), _handler_for(sts))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},  # stop() returns within one poll interval
        name="test-sts",
        daemon=True,
    )
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host!s}:{bound_port}{STS_PATHS[0]}"
    return StsHandle(url=url, sts=sts, server=server, thread=thread)
