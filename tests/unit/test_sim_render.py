"""Rendering of KRS responses and faults (docs/reference/krs-protocol.md §4–§5), byte-level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from lxml import etree

from sorsync.datatypes import SYGEHUS, FieldType
from sorsync.krs.wire import NS_ATOM, NS_JAXWS, NS_KRS, NS_MEDCOM, NS_SOAP, NS_WSSE, NS_WSU
from sorsync.simulator import render
from sorsync.simulator.render import Distortion, PageRow

CPH = ZoneInfo("Europe/Copenhagen")
NS = {"S": NS_SOAP, "a": NS_ATOM, "k": NS_KRS, "m": NS_MEDCOM, "sor": SYGEHUS.namespace or ""}


def parse(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))


def test_local_time_has_winter_and_summer_offsets() -> None:
    assert render.format_local(datetime(2024, 1, 15, tzinfo=CPH)) == "2024-01-15T00:00:00.000+01:00"
    assert render.format_local(datetime(2024, 7, 1, tzinfo=CPH)) == "2024-07-01T00:00:00.000+02:00"
    # an aware UTC value is converted to Danish local time
    assert (
        render.format_local(datetime(2024, 7, 1, 10, 30, 5, 123456, tzinfo=UTC))
        == "2024-07-01T12:30:05.123+02:00"
    )
    # naive = server-local already (MySQL DATETIME)
    assert render.format_local(datetime(2003, 3, 1, 8)) == "2003-03-01T08:00:00.000+01:00"


def test_open_valid_to_renders_like_nsp() -> None:
    assert (
        render.format_local(datetime(2999, 12, 31, tzinfo=CPH)) == "2999-12-31T00:00:00.000+01:00"
    )


def test_negative_offsets_and_utc_format() -> None:
    minus = timezone(-timedelta(hours=3, minutes=30))
    assert render.format_local(
        datetime(2020, 1, 1, tzinfo=minus), ZoneInfo("America/St_Johns")
    ) == ("2020-01-01T00:00:00.000-03:30")
    assert render.format_epoch_utc(1376654433) == "2013-08-16T12:00:33.000Z"
    assert render.format_utc_millis(datetime(2024, 5, 1, 8, 15, 1, 330999, tzinfo=UTC)) == (
        "2024-05-01T08:15:01.330Z"
    )


def test_text_escaping() -> None:
    assert render.escape_text("A & B <c> d\r\n") == "A &amp; B &lt;c&gt; d&#13;\n"
    assert render.format_value(FieldType.TEXT, 'x"y') == 'x"y'
    assert render.format_value(FieldType.BIGINT, 5790000000000) == "5790000000000"


def test_entries_follow_nsp_layout_and_omit_nulls() -> None:
    rows = [
        PageRow(
            7,
            1376654433,
            {
                "sorNummer": 1234567890123,
                "navn": "Eksempel & Co",
                "telefon": None,  # NULL → omitted
                "validFrom": datetime(2003, 1, 1, tzinfo=CPH),
                "validTo": datetime(2999, 12, 31, tzinfo=CPH),
            },
        )
    ]
    now = datetime(2024, 5, 1, 8, 15, 1, 330000, tzinfo=UTC)
    feed = parse(render.render_feed(SYGEHUS, rows, now=now).encode())
    assert feed.findtext("a:id", namespaces=NS) == "tag:nsi.dk,2011:sor/sygehus/v1"
    assert feed.findtext("a:updated", namespaces=NS) == "2024-05-01T08:15:01.330Z"
    assert feed.findtext("a:title", namespaces=NS) == "Stamdata Registry Feed"
    assert feed.findtext("a:author/a:name", namespaces=NS) == "National Sundheds IT"
    (entry,) = feed.findall("a:entry", NS)
    assert [etree.QName(c).localname for c in entry] == ["id", "title", "updated", "content"]
    assert entry.findtext("a:id", namespaces=NS) == (
        "tag:nsi.dk,2011:sor/sygehus/v1/13766544330000000007"
    )
    assert entry.find("a:title", NS).text is None  # type: ignore[union-attr]
    assert entry.findtext("a:updated", namespaces=NS) == "2013-08-16T12:00:33.000Z"
    content = entry.find("a:content", NS)
    assert content is not None
    assert content.get("type") == "application/xml"
    (record,) = content
    assert record.tag == f"{{{SYGEHUS.namespace}}}sygehus"
    assert record.prefix == "sygehus"
    assert record.nsmap[None] == SYGEHUS.namespace
    expected: list[tuple[str, str | None, str | None]] = [
        ("sorNummer", "1234567890123", None),
        ("navn", "Eksempel & Co", None),
        ("validFrom", "2003-01-01T00:00:00.000+01:00", None),
        ("validTo", "2999-12-31T00:00:00.000+01:00", None),
    ]
    assert [(etree.QName(c).localname, c.text, c.prefix) for c in record] == expected


def test_fields_render_in_registry_order_whatever_the_dict_order() -> None:
    values = {"validTo": datetime(2999, 12, 31, tzinfo=CPH), "nummer": "1301", "sorNummer": 1}
    text = render.render_entries(SYGEHUS, [PageRow(1, 1, values)])
    assert text.index("<sorNummer>") < text.index("<nummer>") < text.index("<validTo>")


def test_response_envelope_headers_and_flow_status() -> None:
    request = parse(
        (
            f'<e:Envelope xmlns:e="{NS_SOAP}" xmlns:medcom="{NS_MEDCOM}"><e:Header>'
            "<medcom:Header><medcom:SecurityLevel>3</medcom:SecurityLevel><medcom:Linking>"
            "<medcom:FlowID>f1</medcom:FlowID><medcom:MessageID>m1</medcom:MessageID>"
            "</medcom:Linking><medcom:RequireNonRepudiationReceipt>no"
            "</medcom:RequireNonRepudiationReceipt></medcom:Header></e:Header><e:Body/></e:Envelope>"
        ).encode()
    )
    header = request.find(f"{{{NS_SOAP}}}Header/{{{NS_MEDCOM}}}Header")
    now = datetime(2024, 7, 1, 8, 15, 1, 337000, tzinfo=UTC)
    body = render.render_response(SYGEHUS, [], header, now=now)
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?><S:Envelope")
    assert b'<FlowStatus xmlns="http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd">' in body
    doc = parse(body)
    security = doc.find(f"S:Header/{{{NS_WSSE}}}Security", NS)
    assert security is not None
    assert [c.tag for c in security] == [f"{{{NS_WSU}}}Timestamp"]
    assert security.findtext(f"{{{NS_WSU}}}Timestamp/{{{NS_WSU}}}Created") == (
        "2024-07-01T10:15:01.337+02:00"
    )
    echoed = doc.find("S:Header/m:Header", NS)
    assert echoed is not None
    assert [etree.QName(c).localname for c in echoed] == [
        "SecurityLevel",
        "Linking",
        "FlowStatus",
        "RequireNonRepudiationReceipt",
    ]
    assert echoed.findtext("m:Linking/m:FlowID", namespaces=NS) == "f1"
    assert echoed.findtext("m:Linking/m:MessageID", namespaces=NS) == "m1"
    assert echoed.find("m:Linking/m:InResponseToMessageID", NS) is None
    assert echoed.findtext("m:FlowStatus", namespaces=NS) == "flow_finalized_succesfully"
    feed = doc.find("S:Body/k:ReplicationResponse/a:feed", NS)
    assert feed is not None
    assert feed.findall("a:entry", NS) == []
    # the caller's tree is untouched
    assert header is not None
    assert len(header) == 3


def test_replication_fault_shape() -> None:
    spec = render.replication_fault("urn:stamdata:invalid-history-offset")
    assert spec.status == 500
    assert spec.content_type.startswith("text/xml")
    doc = parse(spec.body)
    assert doc.find("S:Header", NS) is None
    fault = doc.find("S:Body/S:Fault", NS)
    assert fault is not None
    assert fault.findtext("faultcode") == "S:Server"
    assert fault.findtext("faultstring") == "Invalid offset in the request."
    detail = fault.find("detail")
    assert detail is not None
    assert detail[0].tag == f"{{{NS_KRS}}}ReplicationFault"
    assert detail[0].text == "urn:stamdata:invalid-history-offset"
    assert detail[1].tag == f"{{{NS_JAXWS}}}exception"
    plain = parse(render.replication_fault("urn:x", "m", stack_trace=False).body)
    assert len(plain.find("S:Body/S:Fault/detail", NS)) == 1  # type: ignore[arg-type]


def test_client_fault_has_no_detail() -> None:
    doc = parse(render.client_fault("cvc-complex-type.2.4.a: <bad>").body)
    fault = doc.find("S:Body/S:Fault", NS)
    assert fault is not None
    assert fault.findtext("faultcode") == "S:Client"
    assert fault.findtext("faultstring") == "cvc-complex-type.2.4.a: <bad>"
    assert fault.find("detail") is None


def test_dgws_fault_shape() -> None:
    now = datetime(2024, 5, 1, 8, 15, 1, 999000, tzinfo=UTC)
    spec = render.dgws_fault("expired_idcard", now=now)
    assert spec.status == 500
    assert spec.content_type == "text/xml"
    doc = parse(spec.body)
    assert doc.get("id") == "Envelope"
    assert doc.findtext(
        f"S:Header/{{{NS_WSSE}}}Security/{{{NS_WSU}}}Timestamp/{{{NS_WSU}}}Created", namespaces=NS
    ) == ("2024-05-01T08:15:01Z")
    linking = doc.find("S:Header/m:Header/m:Linking", NS)
    assert linking is not None
    assert linking.findtext("m:FlowID", namespaces=NS) == "0"
    assert linking.findtext("m:InResponseToMessageID", namespaces=NS) == "0"
    fault = doc.find("S:Body/S:Fault", NS)
    assert fault is not None
    assert [c.tag for c in fault] == ["faultcode", "detail", "faultstring"]
    assert fault.findtext("faultcode") == "Server"
    assert fault.findtext("detail/m:FaultCode", namespaces=NS) == "expired_idcard"
    assert fault.findtext("faultstring") == "IDCard expired."


def test_distortions() -> None:
    rows = [PageRow(1, 100, {"sorNummer": 1}), PageRow(2, 100, {"sorNummer": 2})]
    text = render.render_entries(
        SYGEHUS,
        rows,
        distortion=Distortion(
            drop_token_at=0,
            reverse=True,
            extra_element=("nytFelt", "x<y"),
            record_namespace="urn:other",
        ),
    )
    feed = parse(f'<f xmlns:atom="{NS_ATOM}">{text}</f>'.encode())
    ids = [e.findtext("a:id", namespaces=NS) for e in feed.findall("a:entry", NS)]
    assert ids == [
        "tag:nsi.dk,2011:sor/sygehus/v1",
        "tag:nsi.dk,2011:sor/sygehus/v1/00000001000000000001",
    ]
    record = feed.find("a:entry/a:content", NS)[0]  # type: ignore[index]
    assert record.tag == "{urn:other}sygehus"
    assert record[-1].tag == "{urn:other}nytFelt"
    assert record[-1].text == "x<y"
