"""The contract files ship as package data and describe the published service."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import zeep
from lxml import etree

from sorsync.krs import wire
from sorsync.krs.wsdl import wsdl_bytes, wsdl_path, xsd_bytes

URL = "http://127.0.0.1:8123" + wire.SERVICE_PATH


def test_files_are_package_data() -> None:
    names = {p.name for p in importlib.resources.files("sorsync.krs.wsdl").iterdir()}
    assert {
        "stamdata_krs.wsdl",
        "stamdata_krs_request_response.xsd",
        "dgws_wsse.xsd",
        "dgws_wsu.xsd",
        "dgws_medcom.xsd",
    } <= names
    assert wsdl_path().is_file()
    assert b"ReplicationRequest" in xsd_bytes()


def _load(tmp_path: Path, data: bytes) -> zeep.Client:
    path = tmp_path / "served.wsdl"
    path.write_bytes(data)
    return zeep.Client(str(path))  # type: ignore[no-untyped-call]


def test_served_wsdl_stands_alone_and_names_the_server(tmp_path: Path) -> None:
    served = wsdl_bytes(URL)
    assert served.startswith(b"<?xml")
    client = _load(tmp_path, served)
    service = client.wsdl.services["StamdataReplicationService"]
    port = service.ports["StamdataReplication"]
    assert port.binding.name.localname == "StamdataReplicationSoap11Binding"
    assert port.binding_options["address"] == URL
    operation = port.binding.get("replicate")
    assert operation.soapaction == wire.SOAP_ACTION.strip('"')
    assert client.wsdl.types.get_element(f"{{{wire.NS_KRS}}}ReplicationFault") is not None


def test_served_wsdl_can_point_at_xsd_1() -> None:
    doc = etree.fromstring(wsdl_bytes(URL, inline_schema=False))
    imports = doc.findall(".//{http://www.w3.org/2001/XMLSchema}import")
    assert [i.get("schemaLocation") for i in imports] == [URL + "?xsd=1"]


def test_request_children_are_unqualified(tmp_path: Path) -> None:
    client = _load(tmp_path, wsdl_bytes(URL))
    envelope = client.create_message(  # type: ignore[no-untyped-call]
        client.service,
        "replicate",
        register="sor",
        datatype="sygehus",
        version=1,
        offset=wire.START_TOKEN,
        maxRecords=2000,
    )
    request = envelope.find(f"{{{wire.NS_SOAP}}}Body")[0]
    assert request.tag == f"{{{wire.NS_KRS}}}ReplicationRequest"
    assert [child.tag for child in request] == [
        "register",
        "datatype",
        "version",
        "offset",
        "maxRecords",
    ]
