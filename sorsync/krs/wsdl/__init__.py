"""The KRS service contract as package data: WSDL, the request/response XSD, DGWS header XSDs.

Written for sorsync from the published contract (docs/reference/krs-protocol.md §2–§3, §5.1).
The client loads the WSDL locally (never from the server); the simulator serves
`wsdl_bytes(its_url)` on `GET …?wsdl`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.resources
from pathlib import Path

from lxml import etree

from sorsync.xmlsafe import safe_parser

WSDL_FILE = "stamdata_krs.wsdl"
XSD_FILE = "stamdata_krs_request_response.xsd"
HEADER_XSD_FILES = ("dgws_wsse.xsd", "dgws_wsu.xsd", "dgws_medcom.xsd")

_NS_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_NS_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
_NS_XS = "http://www.w3.org/2001/XMLSchema"

_files = contextlib.ExitStack()
atexit.register(_files.close)


@functools.cache
def _directory() -> Path:
    # A plain directory for a normal install; extracted once if the package lives in a zip.
    package = importlib.resources.files(__name__)
    return Path(_files.enter_context(importlib.resources.as_file(package)))


def data_path(name: str) -> Path:
    """Path of one contract file shipped with sorsync."""
    path = _directory() / name
    if not path.is_file():
        raise FileNotFoundError(f"sorsync package data {name!r} is missing from {path.parent}")
    return path


def wsdl_path() -> Path:
    """The packaged WSDL; its XSD import resolves next to it."""
    return data_path(WSDL_FILE)


def xsd_bytes() -> bytes:
    """The request/response schema as shipped (what a server serves on `?xsd=1`)."""
    return data_path(XSD_FILE).read_bytes()


def wsdl_bytes(location_url: str, *, inline_schema: bool = True) -> bytes:
    """The WSDL to serve on `GET …?wsdl`, with `soap:address` = `location_url`.

    With `inline_schema` (default) the XSD is embedded, so the document stands alone; without it
    the import points at `location_url?xsd=1` as JAX-WS does (serve `xsd_bytes()` there).
    """
    doc = etree.parse(str(wsdl_path()), safe_parser())
    for address in doc.iter(f"{{{_NS_WSDL_SOAP}}}address"):
        address.set("location", location_url)
    types = doc.find(f"{{{_NS_WSDL}}}types")
    if types is None:  # pragma: no cover - the shipped file has one
        raise RuntimeError("packaged WSDL has no wsdl:types")
    for schema in list(types):
        imp = schema.find(f"{{{_NS_XS}}}import")
        if imp is None or imp.get("schemaLocation") != XSD_FILE:
            continue
        if inline_schema:
            inline = etree.fromstring(xsd_bytes(), safe_parser())
            types.replace(schema, inline)
        else:
            imp.set("schemaLocation", f"{location_url}?xsd=1")
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


@functools.cache
def request_schema() -> etree.XMLSchema:
    """Validates a `krs:ReplicationRequest` element (the body we send)."""
    return etree.XMLSchema(etree.parse(str(data_path(XSD_FILE)), safe_parser()))


@functools.cache
def header_schema() -> etree.XMLSchema:
    """Validates `wsse:Security` and `medcom:Header` elements of a DGWS 1.0.1 request."""
    directory = _directory()
    imports = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{name}"/>'
        for ns, name in (
            (
                "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
                "dgws_wsse.xsd",
            ),
            ("http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd", "dgws_medcom.xsd"),
        )
    )
    wrapper = (
        f'<xs:schema xmlns:xs="{_NS_XS}" targetNamespace="urn:sorsync:dgws-headers">'
        f"{imports}</xs:schema>"
    )
    # base_url makes the relative schemaLocations resolve to the packaged files.
    root = etree.fromstring(
        wrapper.encode(), safe_parser(), base_url=str(directory / "headers.xsd")
    )
    return etree.XMLSchema(root)
