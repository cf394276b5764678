"""SOSI ID card builder and parser, checked against the real 2013 capture."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from sorsync.dgws import idcard, xmldsig
from sorsync.dgws.sts import request_envelope
from sorsync.krs.wire import NS_DS, NS_SAML, NS_SOAP, NS_WSSE, NS_WST, NS_WSU
from sorsync.testing.certs import make_system_certificate

CAPTURE = Path(__file__).parents[1] / "data" / "krs-captures" / "request_raw_ddv.xml"
NOW = datetime(2026, 11, 22, 10, 0, 0, 654321, tzinfo=UTC)
# attribute values that differ per card; everything else must equal the capture
VOLATILE_ATTRIBUTES = {"IssueInstant", "NotBefore", "NotOnOrAfter"}
VOLATILE_TEXT = {
    "Issuer",
    "NameID",
    "sosi:IDCardID",
    "sosi:OCESCertHash",
    "medcom:ITSystemName",
    "medcom:CareProviderID",
    "medcom:CareProviderName",
    "DigestValue",
    "SignatureValue",
    "X509Certificate",
}


@pytest.fixture(scope="module")
def creds() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_system_certificate(cvr="12345678", organisation="Sorsync Test ApS")


def _capture_assertion() -> etree._Element:
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    found = etree.fromstring(CAPTURE.read_bytes(), parser).find(f".//{{{NS_SAML}}}Assertion")
    assert found is not None
    return found


Shape = list[tuple[str, str | None, tuple[tuple[str, str], ...], str]]


def _shape(assertion: etree._Element) -> Shape:
    """(qualified tag, prefix, attributes, text) for every element, volatile values blanked."""
    shape: Shape = []
    for element in assertion.iter():
        attributes = tuple(
            (str(name), "*" if name in VOLATILE_ATTRIBUTES else str(value))
            for name, value in element.attrib.items()
        )
        local = etree.QName(element).localname
        attribute_name = element.getparent().get("Name") if local == "AttributeValue" else None  # type: ignore[union-attr]
        text = (element.text or "").strip()
        if local in VOLATILE_TEXT or attribute_name in VOLATILE_TEXT:
            text = "*" if text else ""
        shape.append((str(element.tag), element.prefix, attributes, text))
    return shape


def test_built_card_has_the_captures_structure(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    key, cert = creds
    card = idcard.build_request_idcard(cert=cert, cvr="12345678", system_name="sorsync", now=NOW)
    xmldsig.sign(card, key, cert)
    # element order, namespaces, prefixes, attribute names/order/values and constant texts
    assert _shape(card) == _shape(_capture_assertion())


def test_built_card_values(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    _, cert = creds
    card = idcard.build_request_idcard(cert=cert, cvr="12345678", system_name="sorsync", now=NOW)
    facts = idcard.parse_idcard(card)
    assert card.get("IssueInstant") == "2026-11-22T10:00:00Z"
    assert facts.not_before == datetime(2026, 11, 22, 9, 55, tzinfo=UTC)  # 5 min clock skew
    assert facts.not_on_or_after == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert facts.level == 3
    assert facts.card_type == "system"
    assert facts.cvr == facts.subject_cvr == "12345678"
    assert facts.cvr_name_format == "medcom:cvrnumber"
    assert facts.system_name == "sorsync"
    assert facts.issuer == "sorsync"
    assert facts.care_provider_name == "Sorsync Test ApS"  # from the certificate, CVR suffix cut
    der = cert.public_bytes(serialization.Encoding.DER)
    assert facts.cert_hash == base64.b64encode(hashlib.sha1(der).digest()).decode()  # noqa: S324
    assert len(base64.b64decode(facts.card_id or "")) == 16


def test_card_ids_are_fresh(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    _, cert = creds
    ids = {
        idcard.parse_idcard(
            idcard.build_request_idcard(cert=cert, cvr="12345678", system_name="s", now=NOW)
        ).card_id
        for _ in range(5)
    }
    assert len(ids) == 5


def test_parse_the_capture() -> None:
    facts = idcard.parse_idcard(_capture_assertion())
    assert facts.level == 3
    assert facts.cvr == "25520041"
    assert facts.cvr_name_format == "medcom:cvrnumber"
    assert facts.issuer == "TEST2-NSP-STS"
    assert facts.card_id == "wS6ZViMoYGG/oxTYIq9EvQ=="
    assert facts.cert_hash == "R8xzlxrY7lGoFnpUekVnHE3eCyU="
    assert facts.system_name == "krsdemo"
    assert facts.not_before == datetime(2013, 8, 28, 9, 45, 38, tzinfo=UTC)
    assert facts.not_on_or_after == datetime(2013, 8, 29, 9, 45, 38, tzinfo=UTC)
    assert facts.valid_at(datetime(2013, 8, 28, 12, tzinfo=UTC))
    assert not facts.valid_at(datetime(2013, 8, 29, 9, 45, 38, tzinfo=UTC))  # NotOnOrAfter


def test_parse_rejects_bad_conditions() -> None:
    card = _capture_assertion()
    conditions = card.find(f"{{{NS_SAML}}}Conditions")
    assert conditions is not None
    conditions.set("NotOnOrAfter", "2013-08-29T09:45:38.000Z")
    with pytest.raises(idcard.IdCardError, match="NotOnOrAfter"):
        idcard.parse_idcard(card)
    card.remove(conditions)
    with pytest.raises(idcard.IdCardError, match="no saml:Conditions"):
        idcard.parse_idcard(card)
    with pytest.raises(idcard.IdCardError, match="not a saml:Assertion"):
        idcard.parse_idcard(etree.Element("x"))


def test_parse_is_lenient_on_missing_attributes() -> None:
    card = _capture_assertion()
    for statement in card.findall(f"{{{NS_SAML}}}AttributeStatement"):
        card.remove(statement)
    facts = idcard.parse_idcard(card)
    assert facts.level is None
    assert facts.cvr is None
    assert facts.subject_cvr == "25520041"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), "2026-07-01T10:00:00Z"),
    ],
)
def test_format_time(moment: datetime, expected: str) -> None:
    assert idcard.format_time(moment) == expected


def test_format_time_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        idcard.format_time(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T03:04:05",
        "2026-01-02 03:04:05Z",
        "2026-13-02T03:04:05Z",
        "",
        None,
    ],
)
def test_parse_time_is_strict(text: str | None) -> None:
    with pytest.raises(idcard.IdCardError):
        idcard.parse_time(text, "wsu:Created")


def test_sts_request_layout(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    key, cert = creds
    card = idcard.build_request_idcard(cert=cert, cvr="12345678", system_name="sorsync", now=NOW)
    xmldsig.sign(card, key, cert)
    root = etree.fromstring(request_envelope(card, now=NOW))
    created = root.findtext(
        f"{{{NS_SOAP}}}Header/{{{NS_WSSE}}}Security/{{{NS_WSU}}}Timestamp/{{{NS_WSU}}}Created"
    )
    assert created == "2026-11-22T10:00:00Z"
    rst = root.find(f"{{{NS_SOAP}}}Body/{{{NS_WST}}}RequestSecurityToken")
    assert rst is not None
    assert rst.get("Context") == "www.sosi.dk"
    assert [etree.QName(c).localname for c in rst] == ["TokenType", "RequestType", "Claims"]
    assert rst[0].text == "urn:oasis:names:tc:SAML:2.0:assertion:"
    assert rst[1].text == "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"
    sent = rst[2][0]
    assert sent.tag == f"{{{NS_SAML}}}Assertion"
    assert sent[-1].tag == f"{{{NS_DS}}}Signature"
    assert xmldsig.verify(sent, [cert]) == cert  # the signature survived the envelope


def test_certificate_helpers(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    _, cert = creds
    assert idcard.cert_cvr(cert) == "12345678"
    assert idcard.organisation_name(cert) == "Sorsync Test ApS"


def test_builder_rejects_a_bad_cvr(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    with pytest.raises(idcard.IdCardError, match="8 digits"):
        idcard.build_request_idcard(cert=creds[1], cvr="1234", system_name="s", now=NOW)


def test_doctype_is_rejected() -> None:
    with pytest.raises(idcard.IdCardError, match="DOCTYPE"):
        idcard.parse_xml(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
