"""A `replicate` request as NSP reads it: the SOAP envelope parsed safely, the body validated
against the request schema the way JAX-WS @SchemaValidation does, the offset token split, and
each failure as the fault NSP answers (`SchemaError` for the schema, `RequestError` carrying the
fault to send). No store, no HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from sorsync.krs.wire import NS_SOAP
from sorsync.simulator import render
from sorsync.simulator.render import SoapFaultSpec
from sorsync.xmlsafe import safe_parser

_UNSIGNED_INT_MAX = 4_294_967_295
_UNSIGNED_INT = re.compile(r"[+]?[0-9]+")  # xs:unsignedInt lexical form, after whitespace collapse


def is_markup(node: etree._Element) -> bool:
    """Comments, processing instructions and entity references: not element content."""
    return isinstance(node, etree._Comment | etree._ProcessingInstruction | etree._Entity)


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
        if is_markup(child):
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
        if any(not is_markup(grandchild) for grandchild in child):
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


def body_payload(envelope: etree._Element) -> etree._Element | None:
    """The first element in the SOAP Body (the operation's payload), or None."""
    body = envelope.find(f"{{{NS_SOAP}}}Body")
    if body is None:
        return None
    for child in body:
        if not is_markup(child):
            return child
    return None


def requested_view(envelope: etree._Element) -> str:
    """Best-effort `register/datatype/vN` for the security hook (before schema validation)."""
    payload = body_payload(envelope)
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
