"""SOR2 from the simulator over real HTTP on 127.0.0.1: `registerVersion` selects the view as
NSP does, unknown register versions and datatypes answer `unauthorized-access`, v1 requests
are answered as before, and the record shape can be changed through /admin/shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from lxml import etree

from sorsync.datatypes import SOR_NAMESPACE
from sorsync.krs.wire import NS_ATOM, NS_KRS, NS_SOAP, SOAP_ACTION, START_TOKEN
from sorsync.simulator.render import SoapFaultSpec
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.store import Store
from tests.fixtures.simulator import krs_request, serving_generated

NS = {"S": NS_SOAP, "a": NS_ATOM, "k": NS_KRS}
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION}
UNAUTHORIZED = b"<ns2:ReplicationFault xmlns:ns2"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with serving_generated(200, seed=2) as handle:
        yield handle


def call(sim: SimulatorHandle, raw: bytes) -> requests.Response:
    return requests.post(sim.url, data=raw, headers=HEADERS, timeout=10)


def feed(response: requests.Response) -> etree._Element:
    assert response.status_code == 200, response.text[:500]
    doc = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False))
    found = doc.find("S:Body/k:ReplicationResponse/a:feed", NS)
    assert found is not None
    return found


def records(response: requests.Response) -> list[etree._Element]:
    return [e.find("a:content", NS)[0] for e in feed(response).findall("a:entry", NS)]  # type: ignore[index]


def fault_code(response: requests.Response) -> str:
    assert response.status_code == 500
    doc = etree.fromstring(response.content)
    return doc.findtext(".//{*}ReplicationFault") or ""


@pytest.mark.parametrize("datatype", ["sorentity", "shaksormap", "sorreplacedentity"])
def test_register_version_2_serves_the_sor2_views(sim: SimulatorHandle, datatype: str) -> None:
    response = call(sim, krs_request("sor", datatype, 1, register_version=2, max_records=50))
    found = feed(response)
    assert found.findtext("a:id", namespaces=NS) == f"tag:nsi.dk,2011:sor/v2/{datatype}/v1"
    entries = found.findall("a:entry", NS)
    assert len(entries) == min(50, len(sim.store.table(f"sor/v2/{datatype}/v1"))) > 0
    for entry in entries:
        entry_id = entry.findtext("a:id", namespaces=NS) or ""
        assert entry_id.startswith(f"tag:nsi.dk,2011:sor/v2/{datatype}/v1/")
        record = entry.find("a:content", NS)[0]  # type: ignore[index]
        assert record.tag == f"{{{SOR_NAMESPACE}}}{datatype}"
        assert record.findtext(f"{{{SOR_NAMESPACE}}}SorId")


def test_sor2_pages_follow_the_token(sim: SimulatorHandle) -> None:
    first = feed(call(sim, krs_request("sor", "sorentity", register_version=2, max_records=7)))
    last = first.findall("a:entry", NS)[-1].findtext("a:id", namespaces=NS) or ""
    token = last.rsplit("/", 1)[1]
    second = feed(
        call(sim, krs_request("sor", "sorentity", offset=token, register_version=2, max_records=7))
    )
    tokens = [
        (e.findtext("a:id", namespaces=NS) or "")[-20:] for e in second.findall("a:entry", NS)
    ]
    assert len(tokens) == 7
    assert all(t > token for t in tokens)


@pytest.mark.parametrize(
    ("datatype", "register_version"),
    [
        ("sorentity", None),  # SOR2 without registerVersion: NSP looks up sor/sorentity/v1
        ("sorentity", 1),
        ("sorentity", 3),  # an unknown register version
        ("sygehus", 2),  # a v1 view asked for under register version 2
        ("nosuchtype", 2),  # an unknown datatype
    ],
)
def test_unknown_views_answer_unauthorized_access(
    sim: SimulatorHandle, datatype: str, register_version: int | None
) -> None:
    response = call(sim, krs_request("sor", datatype, register_version=register_version))
    assert UNAUTHORIZED in response.content
    assert fault_code(response) == "urn:stamdata:unauthorized-access"


def test_v1_requests_are_answered_as_before(sim: SimulatorHandle) -> None:
    plain = call(sim, krs_request("sor", "sygehusafdeling", max_records=20))
    explicit = call(sim, krs_request("sor", "sygehusafdeling", max_records=20, register_version=1))
    a, b = feed(plain), feed(explicit)
    assert a.findtext("a:id", namespaces=NS) == "tag:nsi.dk,2011:sor/sygehusafdeling/v1"
    entries_a = [etree.tostring(e) for e in a.findall("a:entry", NS)]
    entries_b = [etree.tostring(e) for e in b.findall("a:entry", NS)]
    assert entries_a == entries_b
    assert len(entries_a) == 20
    record = a.find("a:entry/a:content", NS)[0]  # type: ignore[index]
    assert record.tag == "{http://nsi.dk/-/stamdata/3.0/sor}sygehusafdeling"
    assert record.findtext("{http://nsi.dk/-/stamdata/3.0/sor}sorNummer")


def test_register_version_after_offset_is_a_schema_error(sim: SimulatorHandle) -> None:
    body = (
        "<register>sor</register><datatype>sorentity</datatype><version>1</version>"
        f"<offset>{START_TOKEN}</offset><registerVersion>2</registerVersion>"
    )
    response = call(sim, krs_request(body=body))
    assert response.status_code == 500
    assert b"<faultcode>S:Client</faultcode>" in response.content
    assert b"registerVersion" in response.content


def test_security_hook_sees_the_sor2_view() -> None:
    seen: list[str] = []

    def enforce(envelope: etree._Element, raw: bytes, view: str) -> SoapFaultSpec | None:
        seen.append(view)
        return None

    handle = serve_in_thread(Store(), enforce=enforce)
    try:
        assert call(handle, krs_request("sor", "sorentity", register_version=2)).ok
        assert call(handle, krs_request("sor", "sygehus", register_version=1)).ok
        assert seen == ["sor/v2/sorentity/v1", "sor/sygehus/v1"]
    finally:
        handle.stop()


def test_admin_shape_changes_the_next_page(sim: SimulatorHandle) -> None:
    admin = sim.base_url + "/admin/shape"
    default = requests.get(admin, timeout=10).json()
    assert default == {"namespace": SOR_NAMESPACE, "dates": "mixed", "datatypes": {}}
    shape = {
        "namespace": "urn:example:sor2",
        "dates": "date",
        "datatypes": {
            "sorentity": {
                "rename": {"EntityName": "Name"},
                "drop": ["SorType"],
                "add": {"Extra": "x"},
            }
        },
    }
    try:
        answer = requests.post(admin, json=shape, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == shape
        ns = "urn:example:sor2"
        for record in records(call(sim, krs_request("sor", "sorentity", register_version=2))):
            assert record.tag == f"{{{ns}}}sorentity"
            assert record.find(f"{{{ns}}}EntityName") is None
            assert record.findtext(f"{{{ns}}}Name")
            assert record.find(f"{{{ns}}}SorType") is None
            assert record.findtext(f"{{{ns}}}Extra") == "x"
            assert len(record.findtext(f"{{{ns}}}FromDate") or "") == 10
        bad = requests.post(
            admin, json={"datatypes": {"sorentity": {"drop": ["Nope"]}}}, timeout=10
        )
        assert bad.status_code == 400
        assert "Nope" in bad.json()["error"]
        assert requests.get(admin, timeout=10).json() == shape  # a refused shape changes nothing
    finally:
        assert requests.delete(admin, timeout=10).json() == default
    record = records(call(sim, krs_request("sor", "sorentity", register_version=2)))[0]
    assert record.tag == f"{{{SOR_NAMESPACE}}}sorentity"
    assert record.findtext(f"{{{SOR_NAMESPACE}}}EntityName")
