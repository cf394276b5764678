"""Byte-exact rendering of KRS responses and faults, as NSP's server writes them
(docs/reference/krs-protocol.md §4.1–§4.3 and §5).

Everything is built as strings, not lxml trees: a 2000-record page is rendered in a few
milliseconds this way. Only the echoed medcom:Header goes through lxml, because it is the
client's own XML and has to come back as the client wrote it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from lxml import etree

from sorsync.datatypes import Datatype, FieldType
from sorsync.krs.wire import (
    NS_ATOM,
    NS_JAXWS,
    NS_KRS,
    NS_MEDCOM,
    NS_SOAP,
    NS_WSSE,
    NS_WSU,
    feed_id,
    make_token,
)

if TYPE_CHECKING:
    from sorsync.simulator.sor2 import Layout

# NSP's JBoss runs in Danish local time; every TIMESTAMP column is rendered in it.
SERVER_ZONE = ZoneInfo("Europe/Copenhagen")

XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>"
CONTENT_TYPE = "text/xml; charset=utf-8"
FLOW_STATUS = f'<FlowStatus xmlns="{NS_MEDCOM}">flow_finalized_succesfully</FlowStatus>'

# faultstrings of NSP's FaultCodes (docs/reference/krs-protocol.md §5.1)
REPLICATION_FAULT_MESSAGES: Mapping[str, str] = {
    "urn:stamdata:unauthorized-access": (
        "The provided cvr is not authorized to fetch this datatype."
    ),
    "urn:stamdata:invalid-history-offset": "Invalid offset in the request.",
    "urn:stamdata:internal-error": "Could not complete the request do to an error.",
    "urn:stamdata:unknown-view": "No view with identifier register, datatype and version found.",
    "urn:stamdata:io-error": "A unexpected error occurred. Processing stopped.",
}

# faultstrings SEAL writes for the DGWS codes (docs/reference/krs-protocol.md §5.3)
DGWS_FAULT_MESSAGES: Mapping[str, str] = {
    "expired_idcard": "IDCard expired.",
    "security_level_failed": "Invalid security level.",
    "invalid_signature": (
        "The signature used to sign the message was incorrectly signed or no longer valid"
    ),
    "processing_problem": "An exception was caught: processing problem",
    "syntax_error": "Syntax error.",
    "missing_required_header": "Missing required header.",
    "invalid_username_password": "Invalid username or password.",
    "invalid_idcard": "Invalid IDCard.",
    "invalid_certificate": "Invalid certificate.",
    "not_authorized": "Not authorized.",
    "illegal_http_method": "Illegal HTTP method.",
}


@dataclass(frozen=True, slots=True)
class SoapFaultSpec:
    """A complete HTTP answer for a fault: status, body and content type."""

    status: int
    body: bytes
    content_type: str = CONTENT_TYPE


# --- values --------------------------------------------------------------------------------


def escape_text(value: str) -> str:
    """Escape character data; CR is escaped so it survives XML end-of-line normalisation."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    return value


def escape_attr(value: str) -> str:
    return escape_text(value).replace('"', "&quot;")


def _offset(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def format_local(value: datetime, zone: ZoneInfo = SERVER_ZONE) -> str:
    """`yyyy-MM-ddTHH:mm:ss.SSS±hh:mm` in the server zone (Joda ISO, as NSP renders TIMESTAMP).

    A naive value is taken to be server-local already, like a MySQL DATETIME.
    """
    local = value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)
    offset = local.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    return (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}T"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}."
        f"{local.microsecond // 1000:03d}{_offset(seconds)}"
    )


def format_utc_millis(value: datetime) -> str:
    """`yyyy-MM-ddTHH:mm:ss.SSSZ` (atom:updated)."""
    utc = value.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def format_epoch_utc(seconds: int) -> str:
    """A row's ModifiedDate (second precision) as atom:updated."""
    return format_utc_millis(datetime.fromtimestamp(seconds, UTC))


class _TimestampCache:
    """validFrom/validTo repeat a lot (midnights, 2999-12-31): format each value once."""

    def __init__(self, zone: ZoneInfo, limit: int = 100_000) -> None:
        self.zone = zone
        self.limit = limit
        self.local: dict[datetime, str] = {}
        self.epoch: dict[int, str] = {}

    def fmt_local(self, value: datetime) -> str:
        text = self.local.get(value)
        if text is None:
            if len(self.local) >= self.limit:
                self.local.clear()
            text = self.local[value] = format_local(value, self.zone)
        return text

    def fmt_epoch(self, seconds: int) -> str:
        text = self.epoch.get(seconds)
        if text is None:
            if len(self.epoch) >= self.limit:
                self.epoch.clear()
            text = self.epoch[seconds] = format_epoch_utc(seconds)
        return text


_CACHE = _TimestampCache(SERVER_ZONE)


def _cache_for(zone: ZoneInfo) -> _TimestampCache:
    return _CACHE if zone is SERVER_ZONE else _TimestampCache(zone, limit=1000)


def format_value(kind: FieldType, value: object, zone: ZoneInfo = SERVER_ZONE) -> str:
    """One field value as element text (already escaped)."""
    if kind is FieldType.TIMESTAMP and isinstance(value, datetime):
        return _cache_for(zone).fmt_local(value)
    if kind is FieldType.BIGINT and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return escape_text(value if isinstance(value, str) else str(value))


# --- the feed --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distortion:
    """Deliberate deviations from NSP's format, for fault injection (see faults.py)."""

    drop_token_at: int | None = None  # this entry's atom:id carries no token
    reverse: bool = False  # entries in descending token order
    extra_element: tuple[str, str] | None = None  # (name, text) appended to every record
    record_namespace: str | None = None  # records in this namespace instead
    doctype: str | None = None  # raw DOCTYPE put before the envelope
    feed_title: str | None = None  # raw XML in place of the feed title's text


@dataclass(frozen=True, slots=True)
class PageRow:
    """What the renderer needs of a row; the simulator's Row satisfies it."""

    pid: int
    modified: int
    values: Mapping[str, object]


def datatype_feed_id(datatype: Datatype) -> str:
    """The feed id: `tag:nsi.dk,2011:sor/sygehus/v1`; for a register version above 1 with it,
    `tag:nsi.dk,2011:sor/v2/sorentity/v1` (clients read the token from the last segment)."""
    if datatype.register_version == 1:
        return feed_id(datatype.register, datatype.datatype)
    return feed_id(f"{datatype.register}/v{datatype.register_version}", datatype.datatype)


class _DateCache:
    """SOR2 dates (FromDate, ToDate…): `2024-01-01`, or as NSP may write them,
    `2024-01-01T00:00:00+01:00` (midnight, the Danish offset of that day)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.plain: dict[date, str] = {}
        self.timed: dict[date, str] = {}

    def fmt(self, value: date, timed: bool) -> str:
        cache = self.timed if timed else self.plain
        text = cache.get(value)
        if text is None:
            if len(cache) > 100_000:
                cache.clear()
            if timed:
                midnight = datetime(value.year, value.month, value.day, tzinfo=self.zone)
                offset = midnight.utcoffset() or timedelta(0)
                text = f"{value.isoformat()}T00:00:00{_offset(int(offset.total_seconds()))}"
            else:
                text = value.isoformat()
            cache[value] = text
        return text


_DATES = _DateCache(SERVER_ZONE)
MIXED_SHARE = 5  # date style "mixed": every 5th row (by PID) writes its dates as date-times


def _record_tags(datatype: Datatype, namespace: str) -> tuple[str, str]:
    name = datatype.datatype
    return (
        f'<atom:content type="application/xml"><{name}:{name} xmlns:{name}="{namespace}"'
        f' xmlns="{namespace}">',
        f"</{name}:{name}></atom:content></atom:entry>",
    )


def render_entries(
    datatype: Datatype,
    rows: Sequence[Any],
    *,
    zone: ZoneInfo = SERVER_ZONE,
    distortion: Distortion | None = None,
    layout: Layout | None = None,
) -> str:
    """The `atom:entry` elements for rows in feed order (each row: .pid, .modified, .values).

    A document datatype (SOR2) is rendered by `layout` (sor2.RecordShape.layout): every stored
    value in stored order, renamed or dropped as the layout says.
    """
    if datatype.is_document:
        return _render_documents(datatype, rows, zone, distortion, layout)
    cache = _cache_for(zone)
    fid = feed_id(datatype.register, datatype.datatype)
    namespace = datatype.namespace or ""
    if distortion is not None and distortion.record_namespace is not None:
        namespace = distortion.record_namespace
    open_record, close_entry = _record_tags(datatype, namespace)
    BIGINT, TEXT, TIMESTAMP = FieldType.BIGINT, FieldType.TEXT, FieldType.TIMESTAMP
    fields = [(f.element, f"<{f.element}>", f"</{f.element}>", f.type) for f in datatype.fields]
    extra = ""
    if distortion is not None and distortion.extra_element is not None:
        name, text = distortion.extra_element
        extra = f"<{name}>{escape_text(text)}</{name}>"
    drop = distortion.drop_token_at if distortion is not None else None
    ordered = list(reversed(rows)) if distortion is not None and distortion.reverse else rows

    parts: list[str] = []
    add = parts.append
    for index, row in enumerate(ordered):
        token = make_token(row.modified, row.pid)
        entry_id = fid if index == drop else f"{fid}/{token}"
        add(
            f"<atom:entry><atom:id>{entry_id}</atom:id><atom:title/>"
            f"<atom:updated>{cache.fmt_epoch(row.modified)}</atom:updated>{open_record}"
        )
        values = row.values
        for element, start, end, kind in fields:
            value = values.get(element)
            if value is None:
                continue  # NULL columns are omitted (docs/reference/krs-protocol.md §4.3)
            if kind is TEXT and value.__class__ is str:
                text = escape_text(value)
            elif kind is BIGINT and value.__class__ is int:
                text = str(value)
            elif kind is TIMESTAMP and isinstance(value, datetime):
                text = cache.fmt_local(value)
            else:
                text = format_value(kind, value, zone)
            add(start)
            add(text)
            add(end)
        if extra:
            add(extra)
        add(close_entry)
    return "".join(parts)


def _render_documents(
    datatype: Datatype,
    rows: Sequence[Any],
    zone: ZoneInfo,
    distortion: Distortion | None,
    layout: Layout | None,
) -> str:
    if layout is None:
        from sorsync.simulator.sor2 import DEFAULT_SHAPE

        layout = DEFAULT_SHAPE.layout(datatype.key)
    cache = _cache_for(zone)
    dates = _DATES if zone is SERVER_ZONE else _DateCache(zone)
    fid = datatype_feed_id(datatype)
    namespace = layout.namespace
    if distortion is not None and distortion.record_namespace is not None:
        namespace = distortion.record_namespace
    open_record, close_entry = _record_tags(datatype, namespace)
    tags: dict[str, tuple[str, str] | None] = dict(layout.tags)
    extra = layout.extra
    if distortion is not None and distortion.extra_element is not None:
        name, text = distortion.extra_element
        extra += f"<{name}>{escape_text(text)}</{name}>"
    style = layout.dates
    drop = distortion.drop_token_at if distortion is not None else None
    ordered = list(reversed(rows)) if distortion is not None and distortion.reverse else rows
    str_, int_, date_, datetime_ = str, int, date, datetime

    parts: list[str] = []
    add = parts.append
    for index, row in enumerate(ordered):
        pid = row.pid
        token = make_token(row.modified, pid)
        entry_id = fid if index == drop else f"{fid}/{token}"
        timed = style == "datetime" or (style == "mixed" and pid % MIXED_SHARE == 0)
        add(
            f"<atom:entry><atom:id>{entry_id}</atom:id><atom:title/>"
            f"<atom:updated>{cache.fmt_epoch(row.modified)}</atom:updated>{open_record}"
        )
        for name, value in row.values.items():
            if value is None:
                continue  # NULL columns are omitted (docs/reference/krs-protocol.md §4.3)
            try:
                tag = tags[name]
            except KeyError:  # an element outside the mapping (rows written by a test)
                tag = tags[name] = (f"<{name}>", f"</{name}>")
            if tag is None:
                continue  # dropped by the shape
            cls = value.__class__
            if cls is str_:
                text = escape_text(value)
            elif cls is int_:
                text = str(value)
            elif cls is date_:
                text = dates.fmt(value, timed)
            elif cls is datetime_:
                text = cache.fmt_local(value)
            else:
                text = escape_text(str(value))
            add(tag[0])
            add(text)
            add(tag[1])
        if extra:
            add(extra)
        add(close_entry)
    return "".join(parts)


def render_feed(
    datatype: Datatype,
    rows: Sequence[Any],
    *,
    now: datetime | None = None,
    zone: ZoneInfo = SERVER_ZONE,
    distortion: Distortion | None = None,
    layout: Layout | None = None,
) -> str:
    now = now or datetime.now(UTC)
    title = "Stamdata Registry Feed"
    if distortion is not None and distortion.feed_title is not None:
        title = distortion.feed_title
    entries = render_entries(datatype, rows, zone=zone, distortion=distortion, layout=layout)
    return (
        f'<atom:feed xmlns:atom="{NS_ATOM}">'
        f"<atom:id>{datatype_feed_id(datatype)}</atom:id>"
        f"<atom:updated>{format_utc_millis(now)}</atom:updated>"
        f"<atom:title>{title}</atom:title>"
        "<atom:author><atom:name>National Sundheds IT</atom:name></atom:author>"
        f"{entries}</atom:feed>"
    )


# --- the envelope ----------------------------------------------------------------------------


def echo_medcom_header(header: etree._Element | None) -> str:
    """The request's medcom:Header, unchanged, with FlowStatus inserted right after Linking
    (DGWSSoapHandler's behaviour; docs/reference/krs-protocol.md §4.1). Empty when the request had
    none."""
    if header is None:
        return ""
    copy = etree.fromstring(etree.tostring(header))  # never touch the caller's tree
    linking = copy.find(f"{{{NS_MEDCOM}}}Linking")
    # A marker in the tail is replaced after serialisation: lxml would re-prefix an inserted
    # element with the header's medcom prefix, but NSP's FlowStatus declares its own default
    # namespace.
    marker = "FLOWSTATUS" + os.urandom(8).hex()
    if linking is not None:
        tail = linking.tail or ""
        linking.tail = marker
        replacement = FLOW_STATUS + escape_text(tail)
    elif len(copy):
        last = copy[-1]
        tail = last.tail or ""
        last.tail = marker
        replacement = FLOW_STATUS + escape_text(tail)
    else:
        copy.text = (copy.text or "") + marker
        replacement = FLOW_STATUS
    text = etree.tostring(copy, encoding="unicode", with_tail=False)
    return text.replace(marker, replacement, 1)


def security_header(now: datetime | None = None, zone: ZoneInfo = SERVER_ZONE) -> str:
    """wsse:Security holding only wsu:Timestamp/wsu:Created, server-local with millis."""
    created = format_local(now or datetime.now(UTC), zone)
    return (
        f'<ns5:Security xmlns:ns5="{NS_WSSE}" xmlns:ns4="{NS_WSU}">'
        f"<ns4:Timestamp><ns4:Created>{created}</ns4:Created></ns4:Timestamp></ns5:Security>"
    )


def render_response(
    datatype: Datatype,
    rows: Sequence[Any],
    medcom_header: etree._Element | None,
    *,
    now: datetime | None = None,
    zone: ZoneInfo = SERVER_ZONE,
    distortion: Distortion | None = None,
    layout: Layout | None = None,
) -> bytes:
    """A complete successful `replicate` answer (UTF-8 bytes)."""
    now = now or datetime.now(UTC)
    doctype = distortion.doctype if distortion is not None and distortion.doctype else ""
    return (
        f'{XML_DECLARATION}{doctype}<S:Envelope xmlns:S="{NS_SOAP}"><S:Header>'
        f"{security_header(now, zone)}{echo_medcom_header(medcom_header)}</S:Header>"
        f'<S:Body><ns7:ReplicationResponse xmlns:ns7="{NS_KRS}">'
        f"{render_feed(datatype, rows, now=now, zone=zone, distortion=distortion, layout=layout)}"
        "</ns7:ReplicationResponse></S:Body></S:Envelope>"
    ).encode()


# --- faults ----------------------------------------------------------------------------------


def _soap_fault(faultcode: str, faultstring: str, detail: str = "") -> bytes:
    return (
        f'{XML_DECLARATION}<S:Envelope xmlns:S="{NS_SOAP}"><S:Body><S:Fault>'
        f"<faultcode>{faultcode}</faultcode><faultstring>{escape_text(faultstring)}</faultstring>"
        f"{detail}</S:Fault></S:Body></S:Envelope>"
    ).encode()


def _jaxws_exception(exception_class: str, message: str) -> str:
    # JAX-WS RI appends the server's stack trace to every fault's detail by default; clients
    # must ignore it, so the simulator sends one too.
    frames = (
        ("dk.nsi.stamdata.replication.webservice.StamdataReplicationImpl", "replicate"),
        ("sun.reflect.NativeMethodAccessorImpl", "invoke0"),
        ("com.sun.xml.ws.server.InvokerTube$2", "invoke"),
    )
    stack = "".join(
        f'<ns3:frame class="{cls}" line="{n * 17 + 42}" method="{method}"/>'
        for n, (cls, method) in enumerate(frames)
    )
    return (
        f'<ns3:exception xmlns:ns3="{NS_JAXWS}" class="{exception_class}"'
        ' note="To disable this feature, set com.sun.xml.ws.fault.SOAPFaultBuilder.'
        'disableCaptureStackTrace system property to false">'
        f"<message>{escape_text(message)}</message><ns3:stackTrace>{stack}</ns3:stackTrace>"
        "</ns3:exception>"
    )


def replication_fault(
    code: str, message: str | None = None, *, stack_trace: bool = True
) -> SoapFaultSpec:
    """An application fault: S:Server, faultstring, detail/ReplicationFault = the URN."""
    message = message or REPLICATION_FAULT_MESSAGES.get(code, "An unhandled error occurred.")
    detail = (
        f'<ns2:ReplicationFault xmlns:ns2="{NS_KRS}">{escape_text(code)}</ns2:ReplicationFault>'
    )
    if stack_trace:
        detail += _jaxws_exception(
            "dk.nsi.stamdata.replication.webservice.ReplicationFault", message
        )
    return SoapFaultSpec(500, _soap_fault("S:Server", message, f"<detail>{detail}</detail>"))


def client_fault(message: str) -> SoapFaultSpec:
    """A plain SOAP fault (schema validation, unparseable request): S:Client, no detail."""
    return SoapFaultSpec(500, _soap_fault("S:Client", message))


def server_fault(message: str, faultcode: str = "S:Server") -> SoapFaultSpec:
    return SoapFaultSpec(500, _soap_fault(faultcode, message))


def _nonce() -> str:
    return base64.b64encode(os.urandom(20)).decode()


def dgws_fault(
    code: str,
    message: str | None = None,
    *,
    flow_id: str | None = None,
    in_response_to: str | None = None,
    now: datetime | None = None,
) -> SoapFaultSpec:
    """A DGWS error reply as SEAL writes it (docs/reference/krs-protocol.md §5.3): faultcode
    "Server", detail/medcom:FaultCode, faultstring after detail, FlowID/InResponseToMessageID
    "0" unless given (SEAL echoes them only for invalid_signature)."""
    message = message or DGWS_FAULT_MESSAGES.get(code, "An exception was caught.")
    created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP}" xmlns:medcom="{NS_MEDCOM}"'
        f' xmlns:wsse="{NS_WSSE}" xmlns:wsu="{NS_WSU}" id="Envelope"><soapenv:Header>'
        f"<wsse:Security><wsu:Timestamp><wsu:Created>{created}</wsu:Created></wsu:Timestamp>"
        "</wsse:Security><medcom:Header><medcom:SecurityLevel>1</medcom:SecurityLevel>"
        f"<medcom:Linking><medcom:FlowID>{escape_text(flow_id or '0')}</medcom:FlowID>"
        f"<medcom:MessageID>{_nonce()}</medcom:MessageID>"
        f"<medcom:InResponseToMessageID>{escape_text(in_response_to or '0')}"
        "</medcom:InResponseToMessageID></medcom:Linking></medcom:Header></soapenv:Header>"
        "<soapenv:Body><soapenv:Fault><faultcode>Server</faultcode>"
        f"<detail><medcom:FaultCode>{escape_text(code)}</medcom:FaultCode></detail>"
        f"<faultstring>{escape_text(message)}</faultstring></soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()
    return SoapFaultSpec(500, body, "text/xml")
