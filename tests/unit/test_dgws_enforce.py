"""The simulator's DGWS enforcement, on envelopes built in memory (no HTTP here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from sorsync.dgws import idcard, xmldsig
from sorsync.dgws.sts import extract_card, request_envelope
from sorsync.krs.wire import NS_KRS, NS_MEDCOM, NS_SAML, NS_SOAP, NS_WSSE, NS_WSU
from sorsync.simulator.render import SoapFaultSpec
from sorsync.testing.certs import krs_request_envelope, make_system_certificate
from sorsync.testing.enforce import Enforcer, make_enforcer
from sorsync.testing.sts import SimulatedSts

CAPTURE = Path(__file__).parents[1] / "data" / "krs-captures" / "request_raw_ddv.xml"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
CVR = "12345678"
VIEW = "sor/sygehus/v1"


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture(scope="module")
def client() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_system_certificate(cvr=CVR, valid_from=T0 - timedelta(days=1))


@pytest.fixture(scope="module")
def sts() -> SimulatedSts:
    return SimulatedSts(clock=lambda: T0)


def _issued(sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> bytes:
    key, cert = client
    card = idcard.build_request_idcard(cert=cert, cvr=CVR, system_name="sorsync", now=T0)
    xmldsig.sign(card, key, cert)
    status, body = sts.handle(request_envelope(card, now=T0))
    assert status == 200, body
    return extract_card(body)


def _enforcer(sts: SimulatedSts, at: datetime = T0 + timedelta(minutes=1)) -> Enforcer:
    return make_enforcer([sts.cert], {CVR: {VIEW}}, now=Clock(at))


def _run(enforcer: Enforcer, raw: bytes, view: str = VIEW) -> SoapFaultSpec | None:
    return enforcer(etree.fromstring(raw), raw, view)


def _dgws_code(spec: SoapFaultSpec | None) -> str:
    assert spec is not None
    assert spec.status == 500
    root = etree.fromstring(spec.body)
    code = root.findtext(f".//{{{NS_MEDCOM}}}FaultCode")
    assert code is not None, spec.body
    return code


def test_sts_card_passes(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    enforcer = _enforcer(sts)
    assert _run(enforcer, krs_request_envelope(_issued(sts, client))) is None
    assert enforcer.rejections == []


def test_expired_card(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    enforcer = _enforcer(sts, T0 + timedelta(hours=24))  # NotOnOrAfter is exclusive
    assert (
        _dgws_code(_run(enforcer, krs_request_envelope(_issued(sts, client)))) == "expired_idcard"
    )
    assert "not at 2026-11-23T10:00:00Z" in enforcer.rejections[0][1]


def test_card_not_yet_valid(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    enforcer = _enforcer(sts, T0 - timedelta(seconds=1))
    assert (
        _dgws_code(_run(enforcer, krs_request_envelope(_issued(sts, client)))) == "expired_idcard"
    )


def test_level_1_card(client: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    sts = SimulatedSts(clock=lambda: T0, level=1)
    spec = _run(_enforcer(sts), krs_request_envelope(_issued(sts, client)))
    assert _dgws_code(spec) == "security_level_failed"
    assert spec is not None
    assert b"Invalid security level." in spec.body


def test_expiry_is_checked_before_level(client: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    sts = SimulatedSts(clock=lambda: T0, level=1)
    enforcer = _enforcer(sts, T0 + timedelta(days=2))
    assert (
        _dgws_code(_run(enforcer, krs_request_envelope(_issued(sts, client)))) == "expired_idcard"
    )


def test_self_signed_card_is_invalid_signature(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = client
    card = idcard.build_request_idcard(cert=cert, cvr=CVR, system_name="sorsync", now=T0)
    xmldsig.sign(card, key, cert)
    enforcer = _enforcer(sts)
    raw = krs_request_envelope(etree.tostring(card), message_id="msg-7", flow_id="flow-3")
    spec = _run(enforcer, raw)
    assert _dgws_code(spec) == "invalid_signature"
    assert "not a trusted STS certificate" in enforcer.rejections[0][1]
    # SEAL echoes FlowID and MessageID for invalid_signature only
    assert spec is not None
    linking = etree.fromstring(spec.body).find(f".//{{{NS_MEDCOM}}}Linking")
    assert linking is not None
    assert linking.findtext(f"{{{NS_MEDCOM}}}FlowID") == "flow-3"
    assert linking.findtext(f"{{{NS_MEDCOM}}}InResponseToMessageID") == "msg-7"


def test_unsigned_card_is_invalid_signature(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    card = idcard.build_request_idcard(cert=client[1], cvr=CVR, system_name="s", now=T0)
    spec = _run(_enforcer(sts), krs_request_envelope(etree.tostring(card)))
    assert _dgws_code(spec) == "invalid_signature"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            f"<saml:AttributeValue>{CVR}</saml:AttributeValue>",
            "<saml:AttributeValue>87654321</saml:AttributeValue>",
        ),
        (
            "<saml:AttributeValue>sorsync</saml:AttributeValue>",
            "<saml:AttributeValue>other</saml:AttributeValue>",
        ),
        ('NotOnOrAfter="2026-11-23T10:00:00Z"', 'NotOnOrAfter="2027-11-23T10:00:00Z"'),
        ("<saml:Issuer>", "<saml:Issuer>\n"),
    ],
)
def test_tampered_card_is_invalid_signature(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate], old: str, new: str
) -> None:
    card = _issued(sts, client)
    assert old.encode() in card
    enforcer = _enforcer(sts)
    spec = _run(enforcer, krs_request_envelope(card.replace(old.encode(), new.encode(), 1)))
    assert _dgws_code(spec) == "invalid_signature"
    assert "digest mismatch" in enforcer.rejections[0][1]


def test_any_extra_signature_must_verify(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    raw = krs_request_envelope(_issued(sts, client))
    root = etree.fromstring(raw)
    body = root.find(f"{{{NS_SOAP}}}Body")
    assert body is not None
    extra = etree.SubElement(body[0], "signed")
    extra.set("id", "Body")
    key, cert = client
    xmldsig.sign(extra, key, cert)  # valid, but not by the STS
    data = etree.tostring(root)
    assert _dgws_code(_run(_enforcer(sts), data)) == "invalid_signature"


def test_missing_card_is_processing_problem(sts: SimulatedSts) -> None:
    enforcer = _enforcer(sts)
    spec = _run(enforcer, krs_request_envelope(None))
    assert _dgws_code(spec) == "processing_problem"
    assert spec is not None
    assert b"An exception was caught: the message carries no ID card" in spec.body


@pytest.mark.parametrize(
    "created", ["2026-11-22T10:00:30.123Z", "2026-11-22T10:00:30+00:00", "2026-11-22T10:00:30"]
)
def test_bad_timestamp_is_processing_problem(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate], created: str
) -> None:
    raw = krs_request_envelope(_issued(sts, client), created=created)
    assert _dgws_code(_run(_enforcer(sts), raw)) == "processing_problem"


def test_empty_message_id_is_processing_problem(
    sts: SimulatedSts, client: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    raw = krs_request_envelope(_issued(sts, client), message_id="")
    assert _dgws_code(_run(_enforcer(sts), raw)) == "processing_problem"


def test_care_provider_must_be_a_cvr(sts: SimulatedSts) -> None:
    card = idcard.build_system_idcard(
        cvr=CVR,
        system_name="sorsync",
        care_provider_name="X",
        oces_cert_hash="AAAA",
        issuer=sts.issuer,
        not_before=T0,
        not_on_or_after=T0 + timedelta(hours=1),
    )
    provider = card.xpath(
        "//saml:Attribute[@Name='medcom:CareProviderID']", namespaces={"saml": NS_SAML}
    )
    assert isinstance(provider, list)
    provider[0].set("NameFormat", "medcom:ynumber")  # type: ignore[union-attr]
    xmldsig.sign(card, sts.key, sts.cert)
    spec = _run(_enforcer(sts), krs_request_envelope(etree.tostring(card)))
    assert spec is not None
    assert spec.status == 500
    root = etree.fromstring(spec.body)
    assert root.findtext(f".//{{{NS_SOAP}}}Fault/faultcode") == "S:Server"
    assert "not a CVR number" in (root.findtext(f".//{{{NS_SOAP}}}Fault/faultstring") or "")


@pytest.mark.parametrize(
    ("permissions", "view"),
    [
        ({}, VIEW),  # unknown CVR
        ({CVR: {"sor/yder/v1"}}, VIEW),  # another view
        # comma lists do not work (docs/reference/krs-protocol.md §3.5)
        ({CVR: {"sor/sygehus/v1,sor/yder/v1"}}, VIEW),
        ({CVR: {VIEW}}, "sor/sygehus/v2"),  # the version counts
        ({"87654321": {VIEW}}, VIEW),  # another CVR's permission
    ],
)
def test_unauthorized_cvr(
    sts: SimulatedSts,
    client: tuple[rsa.RSAPrivateKey, x509.Certificate],
    permissions: dict[str, set[str]],
    view: str,
) -> None:
    enforcer = make_enforcer([sts.cert], permissions, now=Clock(T0 + timedelta(minutes=1)))
    spec = _run(enforcer, krs_request_envelope(_issued(sts, client)), view)
    assert spec is not None
    assert spec.status == 500
    root = etree.fromstring(spec.body)
    assert root.findtext(f".//{{{NS_KRS}}}ReplicationFault") == "urn:stamdata:unauthorized-access"
    assert root.findtext(f".//{{{NS_SOAP}}}Fault/faultcode") == "S:Server"


def test_dgws_fault_shape(sts: SimulatedSts) -> None:
    """docs/reference/krs-protocol.md §5.3: header Security/Timestamp + medcom:Header; Fault
    children in order faultcode, detail, faultstring."""
    spec = _run(_enforcer(sts), krs_request_envelope(None))
    assert spec is not None
    root = etree.fromstring(spec.body)
    assert root.tag == f"{{{NS_SOAP}}}Envelope"
    assert root.get("id") == "Envelope"
    header, body = list(root)
    created = header.findtext(f"{{{NS_WSSE}}}Security/{{{NS_WSU}}}Timestamp/{{{NS_WSU}}}Created")
    idcard.parse_time(created, "fault wsu:Created")
    medcom = header.find(f"{{{NS_MEDCOM}}}Header")
    assert medcom is not None
    assert medcom.findtext(f"{{{NS_MEDCOM}}}SecurityLevel") == "1"
    linking = medcom.find(f"{{{NS_MEDCOM}}}Linking")
    assert linking is not None
    assert [etree.QName(c).localname for c in linking] == [
        "FlowID",
        "MessageID",
        "InResponseToMessageID",
    ]
    assert linking.findtext(f"{{{NS_MEDCOM}}}FlowID") == "0"
    fault = body[0]
    assert fault.tag == f"{{{NS_SOAP}}}Fault"
    assert [c.tag for c in fault] == ["faultcode", "detail", "faultstring"]
    assert fault.findtext("faultcode") == "Server"


# --- the real capture ---------------------------------------------------------------------

CAPTURE_VIEW = "ddv/diseases/v1"
CAPTURE_TIME = datetime(2013, 8, 28, 9, 51, 30, tzinfo=UTC)


def test_capture_passes_the_structural_checks() -> None:
    """Timestamp format, card present, validity, level 3 and the CVR all pass for the real
    request; signatures are not checked (our simulator cannot trust TDC's test STS, and the
    published file was re-indented after signing — see test_dgws_xmldsig)."""
    raw = CAPTURE.read_bytes()
    enforcer = make_enforcer(
        [], {"25520041": {CAPTURE_VIEW}}, now=Clock(CAPTURE_TIME), check_signatures=False
    )
    assert _run(enforcer, raw, CAPTURE_VIEW) is None


def test_capture_with_signature_checks_is_refused_honestly() -> None:
    raw = CAPTURE.read_bytes()
    root = etree.fromstring(raw)
    cert = xmldsig.signing_certificate(root.xpath("//*[@id='OCESSignature']")[0])  # type: ignore[index,arg-type]
    enforcer = make_enforcer([cert], {"25520041": {CAPTURE_VIEW}}, now=Clock(CAPTURE_TIME))
    assert _dgws_code(_run(enforcer, raw, CAPTURE_VIEW)) == "invalid_signature"
    assert "digest mismatch" in enforcer.rejections[0][1]


def test_capture_outside_its_validity_is_expired() -> None:
    raw = CAPTURE.read_bytes()
    enforcer = make_enforcer(
        [], {"25520041": {CAPTURE_VIEW}}, now=Clock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    assert _dgws_code(_run(enforcer, raw, CAPTURE_VIEW)) == "expired_idcard"


def test_capture_cvr_needs_permission() -> None:
    raw = CAPTURE.read_bytes()
    enforcer = make_enforcer(
        [], {"25520041": {"ddv/diseases/v2"}}, now=Clock(CAPTURE_TIME), check_signatures=False
    )
    spec = _run(enforcer, raw, CAPTURE_VIEW)
    assert spec is not None
    assert b"urn:stamdata:unauthorized-access" in spec.body
