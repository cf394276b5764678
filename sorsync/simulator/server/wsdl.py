"""The service's contract as served on `GET <SERVICE_PATH>?wsdl` and `?xsd=<file>`: the client's
own WSDL and schema files (sorsync/krs/wsdl/) with their addresses pointed at this server, or a
minimal inline WSDL when those files are absent.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from sorsync.krs import wire
from sorsync.krs.wire import NS_KRS, SERVICE_PATH
from sorsync.simulator.server.requests import is_markup
from sorsync.xmlsafe import safe_parser

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
        if is_markup(element):
            continue
        location = element.get("schemaLocation")
        if location is not None and location in files:
            element.set("schemaLocation", f"{service_url}?xsd={location}")
        if etree.QName(element).localname == "address" and element.get("location") is not None:
            element.set("location", service_url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
