"""The Atom feed parser against real captures and hand-built SOR feeds
(docs/reference/krs-protocol.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sorsync.datatypes import SYGEHUS, SYGEHUSAFDELING, Datatype, Field, FieldType
from sorsync.krs import wire
from sorsync.krs.errors import MalformedResponse
from sorsync.krs.feed import parse_feed, parse_response

CAPTURES = Path(__file__).parent.parent / "data" / "krs-captures"
B, T, D = FieldType.BIGINT, FieldType.TEXT, FieldType.TIMESTAMP
CEST = timezone(timedelta(hours=2))
CET = timezone(timedelta(hours=1))


def _dt(register: str, datatype: str, *fields: tuple[str, FieldType]) -> Datatype:
    return Datatype(
        register=register,
        datatype=datatype,
        version=1,
        fields=tuple(Field(name, name.lower(), kind) for name, kind in fields),
        namespace=wire.record_namespace(register),
    )


# Test-only datatypes shaped after the captures (not in the registry).
DISEASES = _dt(
    "ddv",
    "diseases",
    ("Id", T),
    ("DiseaseIdentifier", B),
    ("versionID", B),
    ("name", T),
    ("name_dk", T),
    ("ATCCode", T),
    ("ATCText", T),
    ("ddvModifiedDate", D),
    ("ddvValidFrom", D),
    ("ddvValidTo", D),
    ("ValidFrom", D),
    ("ValidTo", D),
)
DOSAGEUNIT = _dt(
    "doseringsforslag",
    "dosageunit",
    ("releaseNumber", B),
    ("code", B),
    ("textSingular", T),
    ("textPlural", T),
    ("validFrom", D),
    ("validTo", D),
)

DISEASE_VALUES = (
    "1-1",
    1,
    1,
    "Anthrax",
    "Anthrax",
    "J07AC",
    "Anthrax vacciner",
    datetime(2010, 5, 3, tzinfo=CEST),
    datetime(2002, 9, 1, tzinfo=CEST),
    datetime(2010, 5, 4, tzinfo=CEST),
    datetime(2013, 8, 16, 13, 50, 32, tzinfo=CEST),
    datetime(2013, 8, 16, 14, 0, 33, tzinfo=CEST),
)


def _check_disease_page(page_entries: list, unknown: frozenset[str]) -> None:  # type: ignore[type-arg]
    assert len(page_entries) == 1
    entry = page_entries[0]
    assert entry.token == "13766544330000000001"
    assert entry.pid == 1
    assert entry.modified_at == datetime(2013, 8, 16, 12, 0, 33, tzinfo=UTC)
    assert entry.modified_at.utcoffset() == timedelta(0)
    assert entry.values == DISEASE_VALUES
    assert entry.values[7].utcoffset() == timedelta(hours=2)  # the +02:00 is kept
    assert entry.extra is None
    assert unknown == frozenset()


def test_real_capture_full_response() -> None:
    body = (CAPTURES / "response_raw_ddv.xml").read_bytes()
    page = parse_response(body, 200, DISEASES)
    _check_disease_page(page.entries, page.unknown_elements)
    assert page.last_token == "13766544330000000001"
    assert len(page) == 1


def test_real_capture_feed_body() -> None:
    page = parse_feed((CAPTURES / "response_body_ddv.xml").read_bytes(), DISEASES)
    _check_disease_page(page.entries, page.unknown_elements)


def test_real_capture_dosageunit() -> None:
    body = (CAPTURES / "response_body_doseringsforslag_dosageunit.xml").read_bytes()
    page = parse_feed(body, DOSAGEUNIT)
    (entry,) = page.entries
    assert entry.token == "13709457390000000032"
    assert entry.pid == 32
    assert entry.modified_at == datetime(2013, 6, 11, 10, 15, 39, tzinfo=UTC)
    assert entry.values == (
        6,
        1002,
        "anvendelse",
        "anvendelser",
        datetime(2012, 6, 18, tzinfo=CEST),
        datetime(2013, 6, 7, tzinfo=CEST),  # a real (closed) validTo stays a value
    )


def test_capture_parsed_with_the_wrong_datatype_names_both_namespaces() -> None:
    body = (CAPTURES / "response_raw_ddv.xml").read_bytes()
    with pytest.raises(MalformedResponse) as info:
        parse_response(body, 200, SYGEHUS)
    text = str(info.value)
    assert "{http://nsi.dk/-/stamdata/3.0/sor}sygehus" in text
    assert "{http://nsi.dk/-/stamdata/3.0/ddv}diseases" in text
    assert info.value.transient is False


# --- hand-built SOR feeds (docs/reference/krs-protocol.md §4.2, §4.5) ---------------------------


def sor_entry(token: str, record: str, *, updated: str = "2013-05-29T10:00:00.000Z") -> str:
    return (
        "<atom:entry>"
        f"<atom:id>tag:nsi.dk,2011:sor/sygehus/v1/{token}</atom:id>"
        "<atom:title/>"
        f"<atom:updated>{updated}</atom:updated>"
        '<atom:content type="application/xml">'
        f'<sygehus:sygehus xmlns:sygehus="{wire.record_namespace("sor")}"'
        f' xmlns="{wire.record_namespace("sor")}">{record}</sygehus:sygehus>'
        "</atom:content></atom:entry>"
    )


def sor_response(*entries: str, datatype: str = "sygehus") -> bytes:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Header>'
        f'<ns5:Security xmlns:ns5="{wire.NS_WSSE}" xmlns:ns4="{wire.NS_WSU}">'
        "<ns4:Timestamp><ns4:Created>2024-05-01T10:15:01.337+02:00</ns4:Created></ns4:Timestamp>"
        "</ns5:Security></S:Header><S:Body>"
        f'<ns7:ReplicationResponse xmlns:ns7="{wire.NS_KRS}">'
        f'<atom:feed xmlns:atom="{wire.NS_ATOM}">'
        f"<atom:id>tag:nsi.dk,2011:sor/{datatype}/v1</atom:id>"
        "<atom:updated>2024-05-01T08:15:01.330Z</atom:updated>"
        "<atom:title>Stamdata Registry Feed</atom:title>"
        "<atom:author><atom:name>National Sundheds IT</atom:name></atom:author>"
        + "".join(entries)
        + "</atom:feed></ns7:ReplicationResponse></S:Body></S:Envelope>"
    ).encode()


HOSPITAL = (
    "<sorNummer>1234567890123</sorNummer>"
    "<eanLokationsnummer>5790000000000</eanLokationsnummer>"
    "<nummer>1301</nummer>"
    "<navn>Eksempel Hospital</navn>"
    "<telefon>12345678</telefon>"
    "<vejnavn>Eksempelvej 1</vejnavn>"
    "<postnummer>2100</postnummer>"
    "<bynavn>København Ø</bynavn>"
    "<nyKolonne>fremtid</nyKolonne>"
    "<validFrom>2003-01-01T00:00:00.000+01:00</validFrom>"
    "<validTo>2999-12-31T00:00:00.000+01:00</validTo>"
)
CLOSED = (
    "<sorNummer>1234567890124</sorNummer>"
    "<nummer>1302</nummer>"
    "<navn>Lukket Hospital</navn>"
    "<email>post@example.dk</email>"
    "<www>www.example.dk</www>"
    "<validFrom>2003-01-01T00:00:00Z</validFrom>"
    "<validTo>2020-06-30T22:00:00Z</validTo>"
)


def test_sor_feed_values_omissions_open_validto_and_unknown_elements() -> None:
    token1 = wire.make_token(1369821600, 42)
    token2 = wire.make_token(1369821600, 43)
    body = sor_response(
        sor_entry(token1, HOSPITAL),
        sor_entry(token2, CLOSED, updated="2013-05-29T12:00:00.000+02:00"),
    )
    page = parse_response(body, 200, SYGEHUS)
    first, second = page.entries
    assert first.token == "13698216000000000042"
    assert first.pid == 42
    assert first.modified_at == datetime(2013, 5, 29, 10, 0, tzinfo=UTC)
    assert first.values == (
        1234567890123,
        5790000000000,
        "1301",
        "Eksempel Hospital",
        "12345678",
        "Eksempelvej 1",
        "2100",
        "København Ø",
        None,  # email omitted = NULL
        None,  # www omitted = NULL
        datetime(2003, 1, 1, tzinfo=CET),
        None,  # 2999-12-31 = open-ended
    )
    assert first.extra == {"nyKolonne": "fremtid"}
    assert page.unknown_elements == frozenset({"nyKolonne"})

    assert second.pid == 43
    assert second.modified_at == datetime(2013, 5, 29, 10, 0, tzinfo=UTC)
    assert second.values == (
        1234567890124,
        None,
        "1302",
        "Lukket Hospital",
        None,
        None,
        None,
        None,
        "post@example.dk",
        "www.example.dk",
        datetime(2003, 1, 1, tzinfo=UTC),
        datetime(2020, 6, 30, 22, 0, tzinfo=UTC),
    )
    assert second.extra is None
    assert page.last_token == token2


def test_prefixes_do_not_matter() -> None:
    # Same feed, every prefix different (default-namespace atom, prefixed record children).
    ns = wire.record_namespace("sor")
    body = (
        f'<soap:Envelope xmlns:soap="{wire.NS_SOAP}"><soap:Body>'
        f'<r:ReplicationResponse xmlns:r="{wire.NS_KRS}"><feed xmlns="{wire.NS_ATOM}">'
        f"<entry><id>x/{wire.make_token(5, 7)}</id><updated>2020-01-01T00:00:00Z</updated>"
        f'<content><s:sygehus xmlns:s="{ns}"><!-- a comment -->'
        "<s:sorNummer>1</s:sorNummer><s:navn>N</s:navn><s:validTo>3000-01-01T00:00:00Z</s:validTo>"
        "</s:sygehus></content></entry></feed></r:ReplicationResponse></soap:Body></soap:Envelope>"
    ).encode()
    (entry,) = parse_response(body, 200, SYGEHUS).entries
    assert entry.pid == 7
    assert entry.values[0] == 1
    assert entry.values[3] == "N"
    assert entry.values[-1] is None
    assert entry.extra is None


def test_empty_feed_is_an_empty_page() -> None:
    page = parse_response(sor_response(), 200, SYGEHUS)
    assert page.entries == []
    assert page.last_token is None
    assert len(page) == 0


def test_long_pid_tokens() -> None:
    token = "1369821600" + "12345678901"  # 21 digits (docs/reference/krs-protocol.md §4.4)
    (entry,) = parse_response(sor_response(sor_entry(token, CLOSED)), 200, SYGEHUS).entries
    assert entry.pid == 12345678901
    assert entry.token == token


def test_empty_elements_mean_null_for_numbers_and_dates() -> None:
    record = "<sorNummer>5</sorNummer><eanLokationsnummer/><navn></navn><validFrom> </validFrom>"
    (entry,) = parse_response(sor_response(sor_entry("1" * 20, record)), 200, SYGEHUS).entries
    assert entry.values[1] is None
    assert entry.values[3] == ""  # an empty text element is an empty string, not NULL
    assert entry.values[10] is None


def test_full_page_of_2000_sygehusafdeling_records() -> None:
    ns = wire.record_namespace("sor")
    record = (
        "<sorNummer>123456789012345</sorNummer><sygehusSorNummer>1234567890123</sygehusSorNummer>"
        "<afdelingTypeKode>3</afdelingTypeKode><nummer>252901</nummer><navn>Afd</navn>"
        "<validFrom>2003-01-01T00:00:00.000+01:00</validFrom>"
        "<validTo>2999-12-31T00:00:00.000+01:00</validTo>"
    )
    entries = "".join(
        f"<atom:entry><atom:id>t/{wire.make_token(1700000000, i)}</atom:id>"
        "<atom:updated>2023-11-14T22:13:20.000Z</atom:updated><atom:content>"
        f'<sygehusafdeling xmlns="{ns}">{record}</sygehusafdeling></atom:content></atom:entry>'
        for i in range(1, wire.MAX_RECORDS + 1)
    )
    feed = f'<atom:feed xmlns:atom="{wire.NS_ATOM}">{entries}</atom:feed>'.encode()
    page = parse_feed(feed, SYGEHUSAFDELING)
    assert len(page) == wire.MAX_RECORDS
    assert page.entries[-1].pid == wire.MAX_RECORDS
    assert page.entries[0].values[5] == 3


# --- validation -------------------------------------------------------------------------------


def test_more_than_2000_entries_is_refused() -> None:
    entries = [sor_entry(wire.make_token(10, i), "<sorNummer>1</sorNummer>") for i in range(2001)]
    with pytest.raises(MalformedResponse, match="sent 2001 records, more than the protocol's 2000"):
        parse_response(sor_response(*entries), 200, SYGEHUS)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (wire.make_token(10, 5), wire.make_token(10, 4)),  # PID going back
        (wire.make_token(11, 1), wire.make_token(10, 9)),  # time going back
        (wire.make_token(10, 5), wire.make_token(10, 5)),  # a repeat
    ],
)
def test_tokens_must_increase(first: str, second: str) -> None:
    body = sor_response(sor_entry(first, CLOSED), sor_entry(second, CLOSED))
    with pytest.raises(MalformedResponse, match="does not come after") as info:
        parse_response(body, 200, SYGEHUS)
    assert info.value.transient is False


def test_entries_must_come_after_the_offset_asked_for() -> None:
    body = sor_response(sor_entry(wire.make_token(10, 5), CLOSED))
    assert len(parse_response(body, 200, SYGEHUS, offset=wire.make_token(10, 4))) == 1
    with pytest.raises(MalformedResponse, match="does not come after"):
        parse_response(body, 200, SYGEHUS, offset=wire.make_token(10, 5))


def test_wrong_record_namespace() -> None:
    record_ns = "http://nsi.dk/-/stamdata/3.0/ddv"
    entry = (
        f"<atom:entry><atom:id>t/{'1' * 20}</atom:id><atom:updated>2020-01-01T00:00:00Z"
        f'</atom:updated><atom:content><sygehus xmlns="{record_ns}"><sorNummer>1</sorNummer>'
        "</sygehus></atom:content></atom:entry>"
    )
    with pytest.raises(MalformedResponse) as info:
        parse_response(sor_response(entry), 200, SYGEHUS)
    assert f"expected record element {{{wire.record_namespace('sor')}}}sygehus" in str(info.value)
    assert f"got {{{record_ns}}}sygehus" in str(info.value)


@pytest.mark.parametrize(
    "atom_id",
    [
        "",
        "tag:nsi.dk,2011:sor/sygehus/v1",
        "tag:nsi.dk,2011:sor/sygehus/v1/1234",
        "x/1234567890abcdefghij",
    ],
)
def test_entry_without_a_token(atom_id: str) -> None:
    entry = (
        f"<atom:entry><atom:id>{atom_id}</atom:id><atom:updated>2020-01-01T00:00:00Z"
        "</atom:updated></atom:entry>"
    )
    with pytest.raises(MalformedResponse, match="no 20-digit token"):
        parse_response(sor_response(entry), 200, SYGEHUS)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("<sorNummer>12a</sorNummer>", "element sorNummer: value '12a' is not valid"),
        ("<validFrom>2003-01-01T00:00:00</validFrom>", "no UTC offset"),
        ("<validFrom>1. januar 2003</validFrom>", "element validFrom"),
    ],
)
def test_bad_values(record: str, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_response(sor_response(sor_entry("1" * 20, record)), 200, SYGEHUS)


def test_entry_without_updated_or_record() -> None:
    no_updated = f"<atom:entry><atom:id>t/{'1' * 20}</atom:id></atom:entry>"
    with pytest.raises(MalformedResponse, match="no atom:updated"):
        parse_response(sor_response(no_updated), 200, SYGEHUS)
    no_record = (
        f"<atom:entry><atom:id>t/{'1' * 20}</atom:id><atom:updated>2020-01-01T00:00:00Z"
        "</atom:updated><atom:content/></atom:entry>"
    )
    with pytest.raises(MalformedResponse, match="no record"):
        parse_response(sor_response(no_record), 200, SYGEHUS)


def test_response_without_feed() -> None:
    body = (
        f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body>'
        f'<ns7:ReplicationResponse xmlns:ns7="{wire.NS_KRS}"/></S:Body></S:Envelope>'
    ).encode()
    with pytest.raises(MalformedResponse, match="holds no atom:feed"):
        parse_response(body, 200, SYGEHUS)


def test_body_without_replication_response() -> None:
    body = f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body><other/></S:Body></S:Envelope>'.encode()
    with pytest.raises(MalformedResponse, match=r"expected .*ReplicationResponse"):
        parse_response(body, 200, SYGEHUS)


def test_not_soap_at_all() -> None:
    with pytest.raises(MalformedResponse, match=r"not a SOAP 1\.1 envelope"):
        parse_response(b"<html><body>proxy says hi</body></html>", 200, SYGEHUS)
    with pytest.raises(MalformedResponse, match="expected an atom:feed"):
        parse_feed(b"<feed/>", SYGEHUS)


def test_truncated_body_is_transient() -> None:
    body = sor_response(sor_entry("1" * 20, CLOSED))
    with pytest.raises(MalformedResponse, match="not well-formed") as info:
        parse_response(body[: len(body) // 2], 200, SYGEHUS)
    assert info.value.transient is True
    with pytest.raises(MalformedResponse, match="empty") as info:
        parse_response(b"", 200, SYGEHUS)
    assert info.value.transient is True


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><x>&lol9;</x></S:Body></S:Envelope>
"""


def test_xml_bomb_is_refused_not_expanded() -> None:
    with pytest.raises(MalformedResponse, match="DTD") as info:
        parse_response(BOMB, 200, SYGEHUS)
    assert info.value.transient is False


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        f'<atom:feed xmlns:atom="{wire.NS_ATOM}"><atom:entry><atom:id>&xxe;</atom:id>'
        "</atom:entry></atom:feed>"
    ).encode()
    with pytest.raises(MalformedResponse, match="DTD") as info:
        parse_feed(body, SYGEHUS)
    assert "TOP-SECRET" not in str(info.value)
    # A DTD without entities is refused too: DOCTYPE has no place in SOAP.
    with pytest.raises(MalformedResponse, match="DTD"):
        parse_response(b"<!DOCTYPE S><S/>", 200, SYGEHUS)
