"""The simulator's SOAP server: NSP's KopiRegisterService over HTTP, serving a `Store`.

`POST <SERVICE_PATH>` answers `replicate` in NSP's processing order
(docs/reference/krs-protocol.md §3.5):

1. parse the envelope (lxml, no entities, no network, DOCTYPE rejected);
2. the optional security hook (`enforce`, plugged in by sorsync.dgws) — DGWS faults;
3. the body against the request schema — plain `S:Client` fault with the schema error;
4. `register/datatype/vN` served (`register/vR/datatype/vN` with a `registerVersion` above 1,
   e.g. `sor/v2/sorentity/v1`)? — else `urn:stamdata:unauthorized-access` (NSP checks the
   client's permission before it looks the view up, so unknown views and unknown register
   versions answer like this too);
5. the offset token — `invalid-history-offset` (seconds part) / `internal-error` (PID part);
6. a page of `min(maxRecords, 2000)` rows after the token, in (ModifiedDate, PID) order.

`GET <SERVICE_PATH>?wsdl` serves the WSDL. Admin endpoints (tests and demos only; no
authentication, so keep the server on loopback): `POST /admin/snapshot` (load a SorTree XML
snapshot, answer the import report as JSON), `GET /admin/state`, `GET|POST|DELETE
/admin/faults` (see faults.py) and `GET|POST|DELETE /admin/shape` (how SOR2 records are
rendered: namespace, date style, renamed/dropped/added elements; see sor2.RecordShape).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from sorsync.krs import wire
from sorsync.krs.wire import MAX_RECORDS, NS_KRS, NS_MEDCOM, NS_SOAP, SERVICE_PATH
from sorsync.logs import get_logger
from sorsync.simulator import render
from sorsync.simulator.faults import Fault, FaultPlan
from sorsync.simulator.render import CONTENT_TYPE, Distortion, SoapFaultSpec
from sorsync.simulator.sor2 import DEFAULT_SHAPE, RecordShape
from sorsync.simulator.store import Store
from sorsync.xmlsafe import safe_parser

__all__ = [
    "Enforce",
    "ReplicationRequest",
    "SchemaError",
    "SimulatorHandle",
    "SimulatorServer",
    "SoapFaultSpec",
    "replicate",
    "serve",
    "serve_in_thread",
]

log = get_logger("sorsync.simulator")

# Called with the parsed envelope, the raw request and the `register/datatype/vN` asked for
# ("" when the body does not say); a returned spec is sent instead of the answer.
Enforce = Callable[[etree._Element, bytes, str], SoapFaultSpec | None]

MAX_REQUEST_BYTES = 16 * 1024 * 1024
_UNSIGNED_INT_MAX = 4_294_967_295
_UNSIGNED_INT = re.compile(r"[+]?[0-9]+")  # xs:unsignedInt lexical form, after whitespace collapse


def _is_markup(node: etree._Element) -> bool:
    """Comments, processing instructions and entity references: not element content."""
    return isinstance(node, etree._Comment | etree._ProcessingInstruction | etree._Entity)


# --- the request -----------------------------------------------------------------------------


class SchemaError(ValueError):
    """The body violates the request schema; the text is an XML Schema (Xerces-style) error."""


class RequestError(Exception):
    """The request cannot be processed; `spec` is the fault to answer."""

    def __init__(self, spec: SoapFaultSpec) -> None:
        super().__init__(spec.body[:200])
        self.spec = spec


@dataclass(frozen=True, slots=True)
class ReplicationRequest:
    register: str
    datatype: str
    version: int
    offset: str
    max_records: int | None = None
    register_version: int | None = None

    @property
    def view(self) -> str:
        """The permission/view path NSP checks: `register/datatype/vN` (SOR2: `sor/v2/…`)."""
        if self.register_version not in (None, 1):
            return f"{self.register}/v{self.register_version}/{self.datatype}/v{self.version}"
        return f"{self.register}/{self.datatype}/v{self.version}"


# (element, optional, xs type) in schema order
_REQUEST_SEQUENCE: tuple[tuple[str, bool, str], ...] = (
    ("register", False, "string"),
    ("datatype", False, "string"),
    ("version", False, "unsignedInt"),
    ("registerVersion", True, "unsignedInt"),
    ("offset", False, "string"),
    ("maxRecords", True, "unsignedInt"),
)


def _qname_text(element: etree._Element) -> str:
    qname = etree.QName(element)
    if element.prefix:
        return f"{element.prefix}:{qname.localname}"
    return qname.localname


def _unsigned_int(text: str) -> int:
    value = " ".join(text.split())
    if not _UNSIGNED_INT.fullmatch(value):
        if re.fullmatch(r"-[0-9]+", value):
            raise SchemaError(
                f"cvc-minInclusive-valid: Value '{value}' is not facet-valid with respect to "
                "minInclusive '0' for type 'unsignedLong'."
            )
        raise SchemaError(
            f"cvc-datatype-valid.1.2.1: '{value}' is not a valid value for 'integer'."
        )
    number = int(value)
    if number > _UNSIGNED_INT_MAX:
        raise SchemaError(
            f"cvc-maxInclusive-valid: Value '{value}' is not facet-valid with respect to "
            f"maxInclusive '{_UNSIGNED_INT_MAX}' for type 'unsignedInt'."
        )
    return number


def read_request(payload: etree._Element) -> ReplicationRequest:
    """Validate a `krs:ReplicationRequest` element like JAX-WS @SchemaValidation does.

    Raises SchemaError with the first violation.
    """
    owner = _qname_text(payload)
    if payload.text and payload.text.strip():
        raise SchemaError(
            f"cvc-complex-type.2.3: Element '{owner}' cannot have character [children], "
            "because the type's content type is element-only."
        )
    values: dict[str, str] = {}
    position = 0
    for child in payload:
        if _is_markup(child):
            continue  # comments and processing instructions are allowed
        if child.tail and child.tail.strip():
            raise SchemaError(
                f"cvc-complex-type.2.3: Element '{owner}' cannot have character [children], "
                "because the type's content type is element-only."
            )
        expected: list[str] = []
        matched = None
        while position < len(_REQUEST_SEQUENCE):
            name, optional, kind = _REQUEST_SEQUENCE[position]
            position += 1
            if child.tag == name:  # unqualified: no namespace (no elementFormDefault)
                matched = (name, kind)
                break
            expected.append(name)
            if not optional:
                break
        if matched is None:
            if expected:
                raise SchemaError(
                    "cvc-complex-type.2.4.a: Invalid content was found starting with element "
                    f"'{_qname_text(child)}'. One of '{{{', '.join(expected)}}}' is expected."
                )
            raise SchemaError(
                "cvc-complex-type.2.4.d: Invalid content was found starting with element "
                f"'{_qname_text(child)}'. No child element is expected at this point."
            )
        name, kind = matched
        if any(not _is_markup(grandchild) for grandchild in child):
            raise SchemaError(
                f"cvc-type.3.1.2: Element '{name}' is a simple type, so it must have no element "
                "information item [children]."
            )
        values[name] = child.text or ""
        if kind == "unsignedInt":
            _unsigned_int(values[name])
    missing: list[str] = []
    for name, optional, _ in _REQUEST_SEQUENCE[position:]:
        missing.append(name)
        if not optional:
            raise SchemaError(
                f"cvc-complex-type.2.4.b: The content of element '{owner}' is not complete. "
                f"One of '{{{', '.join(missing)}}}' is expected."
            )
    return ReplicationRequest(
        register=values["register"],
        datatype=values["datatype"],
        version=_unsigned_int(values["version"]),
        offset=values["offset"],
        max_records=(_unsigned_int(values["maxRecords"]) if "maxRecords" in values else None),
        register_version=(
            _unsigned_int(values["registerVersion"]) if "registerVersion" in values else None
        ),
    )


def parse_envelope(raw: bytes, *, enforced: bool = False) -> etree._Element:
    """The envelope root; RequestError when the bytes are not a usable SOAP 1.1 message.

    With DGWS enforcement, SEAL parses the message first, so failures are DGWS
    `processing_problem` faults; otherwise they are what JAX-WS answers (S:Client).
    """

    def fail(message: str, faultcode: str = "S:Client") -> RequestError:
        if enforced:
            return RequestError(
                render.dgws_fault("processing_problem", f"An exception was caught: {message}")
            )
        if faultcode == "S:Client":
            return RequestError(render.client_fault(message))
        return RequestError(render.server_fault(message, faultcode))

    try:
        root = etree.fromstring(raw, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise fail(
            f"Couldn't create SOAP message due to exception: XML reader error: {exc}"
        ) from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype:
        raise fail("Couldn't create SOAP message due to exception: DOCTYPE is not allowed")
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        namespace = etree.QName(root).namespace or ""
        raise fail(
            "Couldn't create SOAP message. Expecting Envelope in namespace "
            f"{NS_SOAP}, but got {namespace}",
            "S:VersionMismatch",
        )
    return root


def _body_payload(envelope: etree._Element) -> etree._Element | None:
    body = envelope.find(f"{{{NS_SOAP}}}Body")
    if body is None:
        return None
    for child in body:
        if not _is_markup(child):
            return child
    return None


def requested_view(envelope: etree._Element) -> str:
    """Best-effort `register/datatype/vN` for the security hook (before schema validation)."""
    payload = _body_payload(envelope)
    if payload is None:
        return ""
    parts = {name: payload.findtext(name) for name in ("register", "datatype", "version")}
    if not all(parts.values()):
        return ""
    register_version = (payload.findtext("registerVersion") or "").strip()
    register = parts["register"]
    if register_version not in ("", "1"):  # the SOR2 views: `sor/v2/sorentity/v1`
        register = f"{register}/v{register_version}"
    return f"{register}/{parts['datatype']}/v{(parts['version'] or '').strip()}"


def split_offset(offset: str) -> tuple[int, int]:
    """(seconds, pid) like NSP's HistoryOffset; RequestError with NSP's fault when malformed."""
    padded = offset.strip().rjust(20, "0")
    seconds, pid = padded[:10], padded[10:]
    if not (seconds.isascii() and seconds.isdigit()):
        raise RequestError(render.replication_fault("urn:stamdata:invalid-history-offset"))
    if not (pid.isascii() and pid.isdigit()):
        raise RequestError(render.replication_fault("urn:stamdata:internal-error"))
    return int(seconds), int(pid)


# --- answering replicate ---------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    reset: bool = False  # close with a TCP reset, send nothing
    send_bytes: int | None = None  # send only this many body bytes, then close
    summary: dict[str, Any] = field(default_factory=dict)  # for the log line

    @classmethod
    def of(cls, spec: SoapFaultSpec, **summary: Any) -> Reply:
        return cls(spec.status, spec.body, spec.content_type, summary=summary)


def _bomb_doctype(depth: int) -> tuple[str, str]:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)
    ]
    return f"<!DOCTYPE S:Envelope [{''.join(entities)}]>", f"&lol{depth};"


def _distortion(fault: Fault | None) -> Distortion | None:
    if fault is None:
        return None
    kind = fault.kind
    if kind == "missing_token":
        return Distortion(drop_token_at=int(fault["index"]))
    if kind == "backwards_token":
        return Distortion(reverse=True)
    if kind == "unknown_element":
        return Distortion(extra_element=(str(fault["name"]), str(fault["value"])))
    if kind == "wrong_namespace":
        return Distortion(record_namespace=str(fault["namespace"]))
    if kind == "xml_bomb":
        doctype, reference = _bomb_doctype(int(fault["depth"]))
        return Distortion(doctype=doctype, feed_title=reference)
    if kind == "external_entity":
        system_id = render.escape_attr(str(fault["system_id"]))
        doctype = f'<!DOCTYPE S:Envelope [<!ENTITY xxe SYSTEM "{system_id}">]>'
        return Distortion(doctype=doctype, feed_title="&xxe;")
    return None


def _answer(
    store: Store,
    raw: bytes,
    enforce: Enforce | None,
    fault: Fault | None,
    now: datetime | None,
) -> Reply:
    try:
        envelope = parse_envelope(raw, enforced=enforce is not None)
    except RequestError as exc:
        return Reply.of(exc.spec, outcome="unparseable")
    if enforce is not None:
        denied = enforce(envelope, raw, requested_view(envelope))
        if denied is not None:
            return Reply.of(denied, outcome="security")
    payload = _body_payload(envelope)
    if payload is None or payload.tag != f"{{{NS_KRS}}}ReplicationRequest":
        found = "nothing" if payload is None else f"{{{etree.QName(payload).namespace or ''}}}"
        if payload is not None:
            found += etree.QName(payload).localname
        return Reply.of(
            render.client_fault(f"Cannot find dispatch method for {found}"), outcome="dispatch"
        )
    try:
        request = read_request(payload)
    except SchemaError as exc:
        return Reply.of(render.client_fault(str(exc)), outcome="schema")
    view = request.view
    table = store.tables.get(view)
    if table is None:
        return Reply.of(
            render.replication_fault("urn:stamdata:unauthorized-access"),
            view=view,
            outcome="unauthorized",
        )
    try:
        after = split_offset(request.offset)
    except RequestError as exc:
        return Reply.of(exc.spec, view=view, offset=request.offset, outcome="bad-offset")
    limit = MAX_RECORDS if request.max_records is None else min(request.max_records, MAX_RECORDS)
    if fault is not None and fault.kind == "oversized_page":
        limit = int(fault["records"])
    header = envelope.find(f"{{{NS_SOAP}}}Header/{{{NS_MEDCOM}}}Header")
    # Rendered under the lock: an import running meanwhile cannot change rows under our feet.
    with store.lock:
        rows = table.page(after, limit) if limit > 0 else []
        datatype = table.datatype
        layout = store.shape.layout(datatype.key) if datatype.is_document else None
        body = render.render_response(
            datatype, rows, header, now=now, distortion=_distortion(fault), layout=layout
        )
    return Reply(200, body, summary={"view": view, "offset": request.offset, "rows": len(rows)})


def replicate(
    store: Store,
    raw: bytes,
    *,
    enforce: Enforce | None = None,
    fault: Fault | None = None,
    now: datetime | None = None,
) -> Reply:
    """Answer one `replicate` request (no I/O besides a requested delay)."""
    if fault is not None:
        kind = fault.kind
        if kind == "http_status":
            return Reply(
                int(fault["status"]),
                str(fault["body"]).encode(),
                "text/plain; charset=utf-8",
                summary={"fault": kind},
            )
        if kind == "reset":
            return Reply(0, b"", reset=True, summary={"fault": kind})
        if kind == "replication_fault":
            return Reply.of(
                render.replication_fault(str(fault["code"]), fault["message"]), fault=kind
            )
        if kind == "dgws_fault":
            return Reply.of(render.dgws_fault(str(fault["code"]), fault["message"]), fault=kind)
        if kind == "delay":
            time.sleep(float(fault["seconds"]))
    reply = _answer(store, raw, enforce, fault, now)
    if fault is not None:
        reply.summary["fault"] = fault.kind
        if fault.kind == "truncate":
            wanted = fault["bytes"]
            cut = len(reply.body) // 2 if wanted is None else int(wanted)
            reply.send_bytes = max(0, min(cut, len(reply.body) - 1))
        elif fault.kind == "malformed_xml":
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
    return reply


# --- WSDL ------------------------------------------------------------------------------------

_WSDL_DIR = Path(wire.__file__).parent / "wsdl"
_FALLBACK_WSDL = f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
  xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
  xmlns:tns="{NS_KRS}" name="StamdataReplicationService" targetNamespace="{NS_KRS}">
  <wsdl:types>
    <xs:schema targetNamespace="{NS_KRS}">
      <xs:element name="ReplicationRequest"><xs:complexType><xs:sequence>
        <xs:element name="register" type="xs:string"/>
        <xs:element name="datatype" type="xs:string"/>
        <xs:element name="version" type="xs:unsignedInt"/>
        <xs:element name="registerVersion" type="xs:unsignedInt" minOccurs="0"/>
        <xs:element name="offset" type="xs:string"/>
        <xs:element name="maxRecords" type="xs:unsignedInt" minOccurs="0"/>
      </xs:sequence></xs:complexType></xs:element>
      <xs:element name="ReplicationResponse"><xs:complexType><xs:sequence>
        <xs:any processContents="lax" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence></xs:complexType></xs:element>
      <xs:element name="ReplicationFault" type="xs:string"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="ReplicationIn">
    <wsdl:part name="parameters" element="tns:ReplicationRequest"/>
  </wsdl:message>
  <wsdl:message name="ReplicationOut">
    <wsdl:part name="parameters" element="tns:ReplicationResponse"/>
  </wsdl:message>
  <wsdl:message name="ReplicationFault">
    <wsdl:part name="fault" element="tns:ReplicationFault"/>
  </wsdl:message>
  <wsdl:portType name="StamdataReplication"><wsdl:operation name="replicate">
    <wsdl:input message="tns:ReplicationIn"/><wsdl:output message="tns:ReplicationOut"/>
    <wsdl:fault name="ReplicationFault" message="tns:ReplicationFault"/>
  </wsdl:operation></wsdl:portType>
  <wsdl:binding name="StamdataReplicationSoap11Binding" type="tns:StamdataReplication">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="replicate">
      <soap:operation soapAction="{NS_KRS}replicate" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
      <wsdl:fault name="ReplicationFault">
        <soap:fault name="ReplicationFault" use="literal"/>
      </wsdl:fault>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="StamdataReplicationService">
    <wsdl:port name="StamdataReplication" binding="tns:StamdataReplicationSoap11Binding">
      <soap:address location="http://localhost{SERVICE_PATH}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


def _schema_files() -> dict[str, Path]:
    if not _WSDL_DIR.is_dir():
        return {}
    return {p.name: p for p in _WSDL_DIR.iterdir() if p.suffix in (".wsdl", ".xsd")}


def wsdl_document(service_url: str, xsd: str | None = None) -> bytes | None:
    """The WSDL (or one of its schema files) with addresses pointing at this server.

    Serves the client's WSDL files (sorsync/krs/wsdl/) when present, so both sides share one
    contract; otherwise a minimal inline WSDL. None for an unknown schema file name.
    """
    files = _schema_files()
    wsdl_names = [name for name in files if name.endswith(".wsdl")]
    if xsd is not None:
        path = files.get(xsd)
        text = path.read_bytes() if path is not None and path.suffix == ".xsd" else None
    elif wsdl_names:
        text = files[sorted(wsdl_names)[0]].read_bytes()
    else:
        text = _FALLBACK_WSDL.encode()
    if text is None:
        return None
    root = etree.fromstring(text, safe_parser())
    for element in root.iter():
        if _is_markup(element):
            continue
        location = element.get("schemaLocation")
        if location is not None and location in files:
            element.set("schemaLocation", f"{service_url}?xsd={location}")
        if etree.QName(element).localname == "address" and element.get("location") is not None:
            element.set("location", service_url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# --- HTTP ------------------------------------------------------------------------------------


class _BodyReader(io.RawIOBase):
    """Reads exactly Content-Length bytes of a request body, streaming."""

    def __init__(self, raw: io.BufferedIOBase, length: int) -> None:
        self._raw = raw
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.remaining)]
        data = self._raw.read(len(view))
        if not data:
            raise ConnectionError("the client closed the connection before sending the body")
        view[: len(data)] = data
        self.remaining -= len(data)
        return len(data)


def jsonable(report: Any) -> Any:
    for method in ("as_dict", "to_json", "model_dump"):
        if callable(getattr(report, method, None)):
            return getattr(report, method)()
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return dataclasses.asdict(report)
    if hasattr(report, "__dict__"):
        return dict(vars(report))
    return report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the JBoss NSP runs on
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to every small answer
    server_version = "sorsync-krs-simulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: SimulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged once, with context, by the code that answers it

    # -- plumbing --

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None or not value.strip().isdigit():
            return None
        return int(value)

    def _read_body(self, limit: int) -> bytes | None:
        length = self._content_length()
        if length is None:
            self._send_text(
                HTTPStatus.LENGTH_REQUIRED, "send the request with a Content-Length header\n"
            )
            self.close_connection = True
            return None
        if length > limit:
            self._send_text(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request larger than {limit} bytes\n"
            )
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        send_bytes: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if send_bytes is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(body if send_bytes is None else body[:send_bytes])
        if send_bytes is not None:
            self.close_connection = True

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _send_json(self, status: int, payload: Any) -> None:
        body = (json.dumps(payload, default=str, ensure_ascii=False, indent=2) + "\n").encode()
        self._send(status, body, "application/json")

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST instead of FIN, like a proxy dropping the connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    def _route(self) -> tuple[str, dict[str, list[str]], str]:
        path, _, query = self.path.partition("?")
        return path, parse_qs(query, keep_blank_values=True), query

    # -- methods --

    def do_POST(self) -> None:
        path, _, _ = self._route()
        if path == SERVICE_PATH:
            self._replicate()
        elif path == "/admin/snapshot":
            self._admin_snapshot()
        elif path == "/admin/faults":
            self._admin_faults_set()
        elif path == "/admin/shape":
            self._admin_shape_set()
        else:
            self._read_body(MAX_REQUEST_BYTES)
            self._send_text(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}\n")

    def do_GET(self) -> None:
        path, params, query = self._route()
        if path == SERVICE_PATH:
            if query.lower() == "wsdl" or "xsd" in params:
                xsd = params["xsd"][0] if "xsd" in params else None
                document = wsdl_document(self.server.url, xsd)
                if document is None:
                    self._send_text(HTTPStatus.NOT_FOUND, f"no schema file {xsd!r}\n")
                else:
                    self._send(HTTPStatus.OK, document, CONTENT_TYPE)
            else:
                self._send_text(
                    HTTPStatus.OK,
                    "KRS simulator: StamdataReplicationService (SOAP 1.1). POST replicate"
                    f" requests here; the WSDL is at {self.server.url}?wsdl\n",
                )
        elif path == "/admin/state":
            self._send_json(HTTPStatus.OK, self.server.state())
        elif path == "/admin/faults":
            self._send_json(HTTPStatus.OK, self.server.faults.to_json())
        elif path == "/admin/shape":
            self._send_json(HTTPStatus.OK, self.server.store.shape.to_json())
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {path}\n")

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        path, _, _ = self._route()
        if path == "/admin/faults":
            self.server.faults.clear()
            self._send_json(HTTPStatus.OK, self.server.faults.to_json())
        elif path == "/admin/shape":
            self.server.store.shape = DEFAULT_SHAPE
            self._send_json(HTTPStatus.OK, DEFAULT_SHAPE.to_json())
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"no such endpoint: DELETE {path}\n")

    # -- endpoints --

    def _replicate(self) -> None:
        raw = self._read_body(MAX_REQUEST_BYTES)
        if raw is None:
            return
        started = time.perf_counter()
        fault = self.server.faults.take()
        reply = replicate(self.server.store, raw, enforce=self.server.enforce, fault=fault)
        log.debug(
            "replicate",
            status=reply.status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            **reply.summary,
        )
        if reply.reset:
            self._reset()
            return
        self._send(reply.status, reply.body, reply.content_type, send_bytes=reply.send_bytes)

    def _admin_snapshot(self) -> None:
        length = self._content_length()
        if length is None:
            self._send_text(HTTPStatus.LENGTH_REQUIRED, "send the snapshot with a Content-Length\n")
            self.close_connection = True
            return
        from sorsync.simulator.importer import load_snapshot  # built in parallel; import late

        reader = _BodyReader(self.rfile, length)
        stream = io.BufferedReader(reader, buffer_size=1 << 16)
        try:
            report = load_snapshot(self.server.store, stream)
        except Exception as exc:  # the importer's errors are for the caller to read
            log.warning("snapshot rejected", error=str(exc))
            self.close_connection = True  # the rest of the body may be unread
            status = (
                HTTPStatus.BAD_REQUEST
                if isinstance(exc, ValueError | etree.XMLSyntaxError)
                else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._send_json(status, {"error": f"snapshot not loaded: {exc}"})
            return
        if reader.remaining:
            self.close_connection = True
        self._send_json(HTTPStatus.OK, jsonable(report))

    def _admin_faults_set(self) -> None:
        raw = self._read_body(1024 * 1024)
        if raw is None:
            return
        try:
            self.server.faults.apply_json(json.loads(raw or b"{}"))
        except (ValueError, TypeError) as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._send_json(HTTPStatus.OK, self.server.faults.to_json())

    def _admin_shape_set(self) -> None:
        raw = self._read_body(1024 * 1024)
        if raw is None:
            return
        try:
            shape = RecordShape.from_json(json.loads(raw or b"{}"))
        except (ValueError, TypeError) as exc:  # ShapeError is a ValueError
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self.server.store.shape = shape  # one attribute swap: the next page uses it
        self._send_json(HTTPStatus.OK, shape.to_json())


class SimulatorServer(ThreadingHTTPServer):
    """A threaded HTTP server answering KRS calls from `store`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        store: Store | None = None,
        *,
        enforce: Enforce | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.store = store if store is not None else Store()
        self.enforce = enforce
        self.faults = faults if faults is not None else FaultPlan()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + SERVICE_PATH

    def state(self) -> dict[str, Any]:
        datatypes: dict[str, Any] = {}
        with self.store.lock:
            for key, table in self.store.tables.items():
                last = table.last()
                datatypes[key] = {
                    "rows": len(table),
                    "last_modified": (
                        datetime.fromtimestamp(last.modified, UTC).isoformat() if last else None
                    ),
                    "last_token": wire.make_token(last.modified, last.pid) if last else None,
                }
        return {"url": self.url, "datatypes": datatypes, "faults": self.faults.to_json()}

    # Track open connections so stop() can end keep-alive connections instead of leaving
    # their threads blocked on a read.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def serve(
    store: Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    enforce: Enforce | None = None,
    shape: RecordShape | None = None,
) -> SimulatorServer:
    """A bound server (not yet serving): call `serve_forever()` or use `serve_in_thread`.
    `shape` replaces the store's SOR2 record shape (sor2.RecordShape)."""
    server = SimulatorServer((host, port), store, enforce=enforce)
    if shape is not None:
        server.store.shape = shape
    return server


@dataclass
class SimulatorHandle:
    """A simulator running in a background thread of this process."""

    url: str  # the full service URL
    store: Store
    faults: FaultPlan
    server: SimulatorServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def set_shape(self, shape: RecordShape | None = None) -> None:
        """Render SOR2 records in `shape` from the next page on (None: the default shape)."""
        self.store.shape = shape if shape is not None else DEFAULT_SHAPE

    def stop(self) -> None:
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(
    store: Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    enforce: Enforce | None = None,
    shape: RecordShape | None = None,
) -> SimulatorHandle:
    server = serve(store, host=host, port=port, enforce=enforce, shape=shape)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"krs-simulator-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return SimulatorHandle(server.url, server.store, server.faults, server, thread)
