"""The request envelope matches NSP's captured request; ID cards are sent byte for byte."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from sorsync.config import load_settings
from sorsync.datatypes import SYGEHUS, Datatype, Field, FieldType
from sorsync.krs import wire
from sorsync.krs.client import KrsClient, client_from_settings
from sorsync.krs.envelope import (
    FileIdCard,
    SecurityProvider,
    build_envelope,
    created_timestamp,
)
from sorsync.krs.errors import IdCardError, IdCardExpired, KrsError
from sorsync.krs.wsdl import header_schema, request_schema

CAPTURES = Path(__file__).parent.parent / "data" / "krs-captures"
CAPTURED_REQUEST = (CAPTURES / "request_raw_ddv.xml").read_bytes()
DISEASES = Datatype("ddv", "diseases", 1, (Field("Id", "id", FieldType.TEXT),), "urn:x")

NS = {
    "soapenv": wire.NS_SOAP,
    "wsse": wire.NS_WSSE,
    "wsu": wire.NS_WSU,
    "medcom": wire.NS_MEDCOM,
    "saml": wire.NS_SAML,
}


def captured_assertion() -> bytes:
    """The STS-signed card of the capture, cut out byte for byte (its namespaces are declared
    on the captured envelope, so it has none of its own — as when cut from an STS answer)."""
    start = CAPTURED_REQUEST.index(b"<saml:Assertion ")
    end = CAPTURED_REQUEST.index(b"</saml:Assertion>") + len(b"</saml:Assertion>")
    return CAPTURED_REQUEST[start:end]


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def shape(element: etree._Element, *, skip: frozenset[str] = frozenset()) -> list[object]:
    """Element order, namespaces and attribute names of a subtree (not the text)."""
    return [
        element.tag,
        sorted(element.attrib),
        [shape(child, skip=skip) for child in element if child.tag not in skip],
    ]


@pytest.fixture(scope="module")
def client() -> KrsClient:
    # No connection is made until replicate(); the body builder is what we test here.
    return KrsClient("http://127.0.0.1:9/stamdata-batch-copy-ws/service/StamdataReplication")


def our_request(client: KrsClient, assertion: bytes | None, message_id: str = "m-1") -> bytes:
    body = client.request_body(DISEASES, wire.START_TOKEN, 1)
    return build_envelope(
        body,
        assertion=assertion,
        message_id=message_id,
        flow_id="f-1",
        created=created_timestamp(),
    )


def test_header_structure_matches_the_captured_request(client: KrsClient) -> None:
    card = captured_assertion()
    ours = parse(our_request(client, card))
    theirs = parse(CAPTURED_REQUEST)

    assert ours.tag == theirs.tag == f"{{{wire.NS_SOAP}}}Envelope"
    assert sorted(ours.attrib) == sorted(theirs.attrib) == ["id"]
    our_header = ours.find("soapenv:Header", NS)
    their_header = theirs.find("soapenv:Header", NS)
    assert our_header is not None
    assert their_header is not None
    assert [c.tag for c in ours] == [c.tag for c in theirs]

    # wsse:Security: Timestamp/Created then the assertion, identical shapes.
    flow_id = f"{{{wire.NS_MEDCOM}}}FlowID"
    assert shape(our_header[0]) == shape(their_header[0])
    # medcom:Header: the capture has no FlowID; ours adds one (uuid4) before MessageID.
    assert shape(our_header[1], skip=frozenset({flow_id})) == shape(their_header[1])
    linking = our_header[1].find("medcom:Linking", NS)
    assert linking is not None
    assert [child.tag for child in linking] == [flow_id, f"{{{wire.NS_MEDCOM}}}MessageID"]
    for path in ("medcom:SecurityLevel", "medcom:RequireNonRepudiationReceipt"):
        assert our_header[1].findtext(path, namespaces=NS) == their_header[1].findtext(
            path, namespaces=NS
        )

    # The card is the same XML as the STS issued: its exclusive c14n (what the signature covers)
    # is identical.
    ours_card = ours.find(".//saml:Assertion", NS)
    theirs_card = theirs.find(".//saml:Assertion", NS)
    assert ours_card is not None
    assert theirs_card is not None
    assert etree.tostring(ours_card, method="c14n", exclusive=True) == etree.tostring(
        theirs_card, method="c14n", exclusive=True
    )

    # The body: same element, same unqualified children, same values.
    our_request_el = ours.find("soapenv:Body", NS)[0]  # type: ignore[index]
    their_request_el = theirs.find("soapenv:Body", NS)[0]  # type: ignore[index]
    assert our_request_el.tag == their_request_el.tag
    assert [(c.tag, c.text) for c in our_request_el] == [
        (c.tag, (c.text or "").strip()) for c in their_request_el
    ]


def test_headers_and_body_validate_against_the_schemas(client: KrsClient) -> None:
    root = parse(our_request(client, captured_assertion()))
    header = root.find("soapenv:Header", NS)
    assert header is not None
    schema = header_schema()
    for element in header:
        assert schema.validate(element), schema.error_log
    body = root.find("soapenv:Body", NS)
    assert body is not None
    assert request_schema().validate(body[0])


def test_created_is_utc_whole_seconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created_timestamp())
    moment = datetime(2024, 5, 1, 10, 15, 0, 999999, tzinfo=UTC) + timedelta(hours=0)
    assert created_timestamp(moment) == "2024-05-01T10:15:00Z"
    local = datetime.fromisoformat("2024-05-01T10:15:00.5+02:00")
    assert created_timestamp(local) == "2024-05-01T08:15:00Z"


def test_card_bytes_appear_verbatim(client: KrsClient) -> None:
    card = captured_assertion()
    sent = our_request(client, card)
    assert card in sent
    created = parse(sent).findtext(".//wsu:Created", namespaces=NS)
    assert created is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)


def test_without_a_card_security_holds_the_timestamp_only(client: KrsClient) -> None:
    root = parse(our_request(client, None))
    security = root.find(".//wsse:Security", NS)
    assert security is not None
    assert [child.tag for child in security] == [f"{{{wire.NS_WSU}}}Timestamp"]


def test_request_body_is_validated(client: KrsClient) -> None:
    body = client.request_body(SYGEHUS, "123", 2000)
    assert body.startswith(b"<ns0:ReplicationRequest")
    assert b"soap-env" not in body  # no stray declarations from zeep's envelope
    assert b"<register>sor</register><datatype>sygehus</datatype><version>1</version>" in body
    with pytest.raises(ValueError, match="1 to 2000"):
        client.replicate(SYGEHUS, "0", 2001)
    with pytest.raises(ValueError, match="1 to 2000"):
        client.replicate(SYGEHUS, "0", 0)


# --- ID card files ----------------------------------------------------------------------------


def self_contained_card(not_on_or_after: datetime) -> bytes:
    """A card as saved from an STS answer: its own namespace declarations, odd formatting."""
    until = not_on_or_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"<saml:Assertion xmlns:saml='{wire.NS_SAML}' xmlns:ds=\"{wire.NS_DS}\"  IssueInstant="
        f'"2024-05-01T08:10:00Z" Version="2.0" id="IDCard">\r\n'
        "  <saml:Issuer >TEST1-NSP-STS</saml:Issuer>\n"
        '  <saml:Conditions NotBefore="2024-05-01T08:10:00Z"'
        f' NotOnOrAfter="{until}" ></saml:Conditions>\n'
        "  <saml:AttributeStatement id='SystemLog'>"
        '<saml:Attribute Name="medcom:CareProviderName">'
        "<saml:AttributeValue>Æblerød Sygehus &amp; Co</saml:AttributeValue></saml:Attribute>"
        "</saml:AttributeStatement>\n"
        '  <ds:Signature id="OCESSignature">'
        "<ds:SignatureValue>c2VjcmV0LXNpZ25hdHVyZQ==</ds:SignatureValue></ds:Signature>\n"
        "</saml:Assertion>"
    ).encode()


def test_file_card_is_sent_verbatim_without_declaration_and_bom(tmp_path: Path) -> None:
    card = self_contained_card(datetime.now(UTC) + timedelta(hours=8))
    path = tmp_path / "card.xml"
    path.write_bytes(b"\xef\xbb\xbf<?xml version='1.0' encoding='UTF-8'?>\n" + card + b"\n")
    provider = FileIdCard(path)
    assert isinstance(provider, SecurityProvider)
    assert provider.assertion() == card
    assert provider.not_on_or_after > datetime.now(UTC)
    assert "c2VjcmV0" not in repr(provider)


def test_card_cut_from_an_sts_answer_without_own_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "card.xml"
    path.write_bytes(captured_assertion())
    provider = FileIdCard(path)
    assert provider.not_on_or_after == datetime(2013, 8, 29, 9, 45, 38, tzinfo=UTC)
    with pytest.raises(IdCardExpired) as info:
        provider.assertion()
    text = str(info.value)
    assert "expired at 2013-08-29T09:45:38+00:00" in text
    assert "SORSYNC_IDCARD_FILE" in text
    assert "wS6ZViMoYGG" not in text  # nothing of the card itself
    assert info.value.transient is False
    assert isinstance(info.value, KrsError)


def test_card_about_to_expire_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "card.xml"
    path.write_bytes(self_contained_card(datetime.now(UTC) + timedelta(seconds=10)))
    with pytest.raises(IdCardExpired, match="too soon"):
        FileIdCard(path).assertion()


def test_renew_rereads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "card.xml"
    path.write_bytes(self_contained_card(datetime.now(UTC) - timedelta(minutes=1)))
    provider = FileIdCard(path)
    with pytest.raises(IdCardExpired):
        provider.assertion()
    fresh = self_contained_card(datetime.now(UTC) + timedelta(hours=1))
    path.write_bytes(fresh)
    with pytest.raises(IdCardExpired):
        provider.assertion()  # still the cached card until renew()
    provider.renew()
    assert provider.assertion() == fresh


def test_card_in_another_encoding_is_transcoded(tmp_path: Path) -> None:
    card = self_contained_card(datetime.now(UTC) + timedelta(hours=1))
    path = tmp_path / "card.xml"
    path.write_bytes(
        b'<?xml version="1.0" encoding="ISO-8859-1"?>' + card.decode().encode("iso-8859-1")
    )
    assert FileIdCard(path).assertion() == card


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<saml:Assertion", "well-formed"),
        (b"<html/>", "not a SOSI ID card"),
        (f'<saml:Assertion xmlns:saml="{wire.NS_SAML}"/>'.encode(), "NotOnOrAfter"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "DTD"),
    ],
)
def test_unusable_card_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "card.xml"
    path.write_bytes(content)
    with pytest.raises(IdCardError, match=message):
        FileIdCard(path).assertion()


def test_missing_card_file(tmp_path: Path) -> None:
    with pytest.raises(IdCardError, match="cannot read the ID card file"):
        FileIdCard(tmp_path / "nope.xml").assertion()


# --- configuration ----------------------------------------------------------------------------


def test_client_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key in [k for k in os.environ if k.startswith("SORSYNC_")]:
        monkeypatch.delenv(key)
    card = tmp_path / "card.xml"
    card.write_bytes(self_contained_card(datetime.now(UTC) + timedelta(hours=1)))
    settings = load_settings(krs_timeout=7.5, idcard_file=card)
    with client_from_settings(settings, "http://127.0.0.1:9/x") as made:
        assert made.timeout == 7.5
        assert isinstance(made.security, FileIdCard)

    with client_from_settings(load_settings(), "http://127.0.0.1:9/x") as plain:
        assert plain.security is None  # no card configured: the simulator without DGWS
        assert plain.timeout == 60


def test_client_rejects_bad_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        KrsClient("ftp://example/x")
    with pytest.raises(ValueError, match="timeout"):
        KrsClient("http://example/x", timeout=0)
    assert "secret" not in repr(KrsClient("http://user:secret@example/x"))
