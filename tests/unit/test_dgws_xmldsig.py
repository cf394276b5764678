"""XML-DSig for SOSI ID cards: sign/verify, tamper detection, and the real 2013 capture."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from sorsync.dgws import idcard, xmldsig
from sorsync.krs.wire import NS_DS, NS_SAML
from sorsync.testing.certs import make_system_certificate

CAPTURE = Path(__file__).parents[1] / "data" / "krs-captures" / "request_raw_ddv.xml"
DS = f"{{{NS_DS}}}"


@pytest.fixture(scope="module")
def creds() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_system_certificate()


def _card(cert: x509.Certificate) -> etree._Element:
    return idcard.build_request_idcard(
        cert=cert,
        cvr="12345678",
        system_name="sorsync",
        now=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )


def _signed(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> etree._Element:
    key, cert = creds
    card = _card(cert)
    xmldsig.sign(card, key, cert)
    return card


def test_round_trip_returns_signer(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    card = _signed(creds)
    assert xmldsig.verify(card, [creds[1]]) == creds[1]


def test_round_trip_survives_serialise_and_parse(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    data = etree.tostring(_signed(creds))
    assert xmldsig.verify(etree.fromstring(data), [creds[1]]) == creds[1]


def test_signature_layout_is_the_sosi_profile(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    card = _signed(creds)
    signature = card[-1]
    assert signature.tag == f"{DS}Signature"
    assert signature.get("id") == "OCESSignature"
    assert [c.tag for c in signature] == [f"{DS}SignedInfo", f"{DS}SignatureValue", f"{DS}KeyInfo"]
    signed_info = signature[0]
    assert [c.tag.removeprefix(DS) for c in signed_info] == [
        "CanonicalizationMethod",
        "SignatureMethod",
        "Reference",
    ]
    assert signed_info[0].get("Algorithm") == xmldsig.ALG_EXC_C14N
    assert signed_info[1].get("Algorithm") == xmldsig.ALG_RSA_SHA1
    reference = signed_info[2]
    assert reference.get("URI") == "#IDCard"
    transforms = reference.find(f"{DS}Transforms")
    assert transforms is not None
    assert [t.get("Algorithm") for t in transforms] == [
        xmldsig.ALG_ENVELOPED,
        xmldsig.ALG_EXC_C14N,
    ]
    assert reference.find(f"{DS}DigestMethod").get("Algorithm") == xmldsig.ALG_SHA1  # type: ignore[union-attr]
    assert signature.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") is not None
    # no whitespace anywhere: the bytes are what gets signed and sent
    assert all(not (e.tail or "").strip() and e.tail is None for e in signature.iter())


def _mutations(card: etree._Element) -> list[tuple[str, etree._Element, str | None]]:
    """(description, element, attribute or None for text) of everything that is signed."""
    found: list[tuple[str, etree._Element, str | None]] = []
    signature = card.find(f"{DS}Signature")
    for element in card.iter():
        if element is signature:
            # the enveloped Signature itself, its id too, is not signed
            # (docs/reference/krs-protocol.md §3.2)
            continue
        path = element.getroottree().getpath(element)
        for name in element.attrib:
            found.append((f"{path}/@{name!s}", element, str(name)))
        if element.text and element.text.strip():
            found.append((f"{path}/text()", element, None))
    return found


def test_tampering_with_anything_signed_fails(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    original = _signed(creds)
    mutations = _mutations(original)
    assert len(mutations) > 30
    elements = list(original.iter())
    for description, element, attribute in mutations:
        card = copy.deepcopy(original)
        twin = list(card.iter())[elements.index(element)]  # same element, by document order
        if attribute is None:
            twin.text = (twin.text or "") + "X"
        else:
            twin.set(attribute, (twin.get(attribute) or "") + "X")
        try:
            xmldsig.verify(card, [creds[1]])
        except xmldsig.SignatureError:
            continue
        pytest.fail(f"tampering with {description} went unnoticed")


def test_tampered_content_is_a_digest_mismatch(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    card = _signed(creds)
    level = card.xpath(
        "//saml:Attribute[@Name='sosi:AuthenticationLevel']/saml:AttributeValue",
        namespaces={"saml": NS_SAML},
    )
    assert isinstance(level, list)
    level[0].text = "4"  # type: ignore[union-attr]
    with pytest.raises(xmldsig.DigestMismatch, match="changed after it was signed"):
        xmldsig.verify(card, [creds[1]])


def test_added_whitespace_breaks_the_digest(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    card = _signed(creds)
    etree.indent(card)  # what a pretty-printer (or a careless re-serialisation) does
    with pytest.raises(xmldsig.DigestMismatch):
        xmldsig.verify(card, [creds[1]])


def test_changed_signature_value_fails(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    card = _signed(creds)
    value = card.find(f"{DS}Signature/{DS}SignatureValue")
    assert value is not None
    text = value.text or ""
    value.text = ("B" if text[0] == "A" else "A") + text[1:]
    with pytest.raises(xmldsig.BadSignatureValue):
        xmldsig.verify(card, [creds[1]])


def test_resigned_with_another_key_is_untrusted(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    key, cert = make_system_certificate(common_name="mallory")
    card = _card(creds[1])
    xmldsig.sign(card, key, cert)
    with pytest.raises(xmldsig.UntrustedSigner, match=r"mallory.*not a trusted STS"):
        xmldsig.verify(card, [creds[1]])
    # ... though its integrity is fine
    assert xmldsig.verify(card, [], trust_embedded=True) == cert


def test_unsigned_card_is_rejected(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    with pytest.raises(xmldsig.MalformedSignature, match="not signed"):
        xmldsig.verify(_card(creds[1]), [creds[1]])


def test_duplicate_id_is_rejected(creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    # Signature wrapping: a second element claiming id="IDCard" must not confuse the verifier.
    card = _signed(creds)
    wrapper = etree.Element("wrapper")
    wrapper.append(card)
    decoy = etree.SubElement(wrapper, "decoy")
    decoy.set("id", "IDCard")
    with pytest.raises(xmldsig.MalformedSignature, match="more than one"):
        xmldsig.verify(card, [creds[1]])


def test_reference_must_point_at_the_enveloping_element(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    card = _signed(creds)
    card.set("id", "Other")
    with pytest.raises(xmldsig.MalformedSignature, match="Reference URI"):
        xmldsig.verify(card, [creds[1]])


def test_sign_needs_an_id_and_an_unsigned_element(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    key, cert = creds
    with pytest.raises(xmldsig.MalformedSignature, match="no id"):
        xmldsig.sign(etree.Element("x"), key, cert)
    with pytest.raises(xmldsig.MalformedSignature, match="already signed"):
        xmldsig.sign(_signed(creds), key, cert)


def test_text_after_the_signature_stays_signed_content(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    # The enveloped-signature transform removes the ds:Signature element, not the text that
    # follows it (lxml's remove() would drop that tail, hiding an insertion there).
    card = _signed(creds)
    signature = card[-1]
    signature.tail = "injected"
    with pytest.raises(xmldsig.DigestMismatch):
        xmldsig.verify(card, [creds[1]])
    signature.tail = None
    assert xmldsig.verify(card, [creds[1]]) == creds[1]


# --- the real capture ---------------------------------------------------------------------


def _capture_assertion(*, strip_whitespace: bool) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=strip_whitespace
    )
    root = etree.fromstring(CAPTURE.read_bytes(), parser)
    assertion = root.find(f".//{{{NS_SAML}}}Assertion")
    assert assertion is not None
    if strip_whitespace:
        # base64 values were re-wrapped too; their whitespace is not part of the signed bytes
        for path in ("SignatureValue", "KeyInfo/ds:X509Data/ds:X509Certificate"):
            found = assertion.xpath(f"ds:Signature/ds:{path}", namespaces={"ds": NS_DS})
            assert isinstance(found, list)
            element = found[0]
            assert isinstance(element, etree._Element)
            element.text = "".join((element.text or "").split())
    return assertion


def test_capture_as_published_does_not_verify() -> None:
    """The published file was re-indented after signing: its digest no longer matches."""
    with pytest.raises(xmldsig.DigestMismatch):
        xmldsig.verify(_capture_assertion(strip_whitespace=False), [], trust_embedded=True)


def test_capture_verifies_once_the_indentation_is_removed() -> None:
    """Without the pretty-printing whitespace the 2013 STS signature verifies: our exc-c14n,
    enveloped transform and rsa-sha1 reproduce what NSP's test STS (TDC test CA) signed."""
    cert = xmldsig.verify(_capture_assertion(strip_whitespace=True), [], trust_embedded=True)
    assert "Danske Regioner - SOSI STS" in cert.subject.rfc4514_string()
    assert cert.issuer.rfc4514_string() == "CN=TDC OCES Systemtest CA II,O=TDC,C=DK"
    # and trusted by certificate, not only by integrity
    assert xmldsig.verify(_capture_assertion(strip_whitespace=True), [cert]) == cert


def test_capture_signed_by_someone_else_is_untrusted(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    with pytest.raises(xmldsig.UntrustedSigner, match="SOSI STS"):
        xmldsig.verify(_capture_assertion(strip_whitespace=True), [creds[1]])


def test_exc_c14n_ignores_unused_inherited_namespaces(
    creds: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    card = _signed(creds)
    holder = etree.Element("{urn:x}holder", nsmap={"x": "urn:x", "y": "urn:y"})
    holder.append(card)
    moved = etree.fromstring(etree.tostring(holder))[0]
    assert xmldsig.verify(moved, [creds[1]]) == creds[1]
