"""The simulator over real HTTP on 127.0.0.1: paging, faults, schema checks, WSDL, admin."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from lxml import etree

from sorsync.datatypes import SYGEHUS
from sorsync.krs.wire import NS_ATOM, NS_KRS, NS_MEDCOM, NS_SOAP, SOAP_ACTION, START_TOKEN
from sorsync.simulator.render import SoapFaultSpec, dgws_fault
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.store import Store
from tests.fixtures.simulator import AddRows, krs_request

CPH = ZoneInfo("Europe/Copenhagen")
NS = {"S": NS_SOAP, "a": NS_ATOM, "k": NS_KRS, "m": NS_MEDCOM}
KEY = "sor/sygehus/v1"
CAPTURE = Path(__file__).parents[1] / "data" / "simulator" / "request_raw_ddv.xml"
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION}


def unit(n: int, **extra: Any) -> dict[str, object]:
    return {
        "sorNummer": 1000 + n,
        "navn": f"Sygehus {n}",
        "validFrom": datetime(2003, 1, 1, tzinfo=CPH),
        "validTo": datetime(2999, 12, 31, tzinfo=CPH),
        **extra,
    }


def call(sim: SimulatorHandle, raw: bytes) -> requests.Response:
    return requests.post(sim.url, data=raw, headers=HEADERS, timeout=10)


def parse(response: requests.Response) -> etree._Element:
    return etree.fromstring(
        response.content, etree.XMLParser(resolve_entities=False, no_network=True)
    )


def page(
    sim: SimulatorHandle, offset: str = START_TOKEN, max_records: int | None = 2000, key: str = KEY
) -> list[tuple[str, etree._Element]]:
    register, datatype, version = key.split("/")
    response = call(sim, krs_request(register, datatype, version[1:], offset, max_records))
    assert response.status_code == 200, response.text
    doc = parse(response)
    feed = doc.find("S:Body/k:ReplicationResponse/a:feed", NS)
    assert feed is not None
    out = []
    for entry in feed.findall("a:entry", NS):
        token = (entry.findtext("a:id", namespaces=NS) or "").rsplit("/", 1)[1]
        out.append((token, entry.find("a:content", NS)[0]))  # type: ignore[index]
    return out


def fault_code(response: requests.Response) -> tuple[str, str | None]:
    assert response.status_code == 500
    fault = parse(response).find("S:Body/S:Fault", NS)
    assert fault is not None
    return fault.findtext("faultcode") or "", fault.findtext(
        "detail/k:ReplicationFault", namespaces=NS
    )


def field(record: etree._Element, name: str) -> str | None:
    return record.findtext(f"{{{SYGEHUS.namespace}}}{name}")


def test_paging_continues_exactly_after_the_last_token(
    simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    sim_add_rows(KEY, [unit(n) for n in range(5)], at=datetime(2024, 1, 10, tzinfo=UTC))
    sim_add_rows(KEY, [unit(n) for n in range(5, 8)], at=datetime(2024, 1, 11, tzinfo=UTC))
    first = page(simulator, max_records=3)
    assert [field(r, "sorNummer") for _, r in first] == ["1000", "1001", "1002"]
    second = page(simulator, first[-1][0], max_records=3)
    third = page(simulator, second[-1][0], max_records=3)
    rest = page(simulator, third[-1][0], max_records=3)
    tokens = [t for t, _ in first + second + third]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 8
    assert all(len(t) == 20 for t in tokens)
    assert [field(r, "sorNummer") for _, r in second + third] == [
        str(1000 + n) for n in range(3, 8)
    ]
    assert rest == []
    # the token carries ModifiedDate in seconds and the PID
    assert first[0][0] == f"{int(datetime(2024, 1, 10, tzinfo=UTC).timestamp()):010d}{1:010d}"


def test_updated_rows_are_redelivered_with_same_pid_and_newer_token(
    simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    rows = sim_add_rows(KEY, [unit(n) for n in range(3)], at=datetime(2024, 1, 10, tzinfo=UTC))
    everything = page(simulator)
    last = everything[-1][0]
    sim_add_rows(
        KEY,
        [],
        update={rows[1].pid: unit(1, navn="Nyt navn")},
        at=datetime(2024, 1, 11, tzinfo=UTC),
    )
    delta = page(simulator, last)
    assert len(delta) == 1
    token, record = delta[0]
    assert token > last
    assert int(token[10:]) == rows[1].pid
    assert field(record, "navn") == "Nyt navn"
    # a full replay delivers each row once, the updated one last
    assert [int(t[10:]) for t, _ in page(simulator)] == [rows[0].pid, rows[2].pid, rows[1].pid]


def test_page_size_cap_and_max_records(simulator: SimulatorHandle, sim_add_rows: AddRows) -> None:
    sim_add_rows(KEY, [unit(n) for n in range(2100)])
    assert len(page(simulator, max_records=5000)) == 2000
    assert len(page(simulator, max_records=None)) == 2000  # absent → 2000
    assert page(simulator, max_records=0) == []  # 0 → empty page
    assert len(page(simulator, max_records=7)) == 7


def test_records_omit_nulls_and_use_local_offsets(
    simulator: SimulatorHandle, sim_add_rows: AddRows
) -> None:
    sim_add_rows(
        KEY,
        [
            unit(1, validFrom=datetime(2010, 1, 15, tzinfo=CPH)),
            unit(
                2,
                validFrom=datetime(2010, 7, 15, tzinfo=CPH),
                validTo=datetime(2011, 3, 1, tzinfo=CPH),
                telefon="12345678",
                email=None,
            ),
        ],
    )
    (_, winter), (_, summer) = page(simulator)
    assert field(winter, "validFrom") == "2010-01-15T00:00:00.000+01:00"
    assert field(winter, "validTo") == "2999-12-31T00:00:00.000+01:00"
    assert field(summer, "validFrom") == "2010-07-15T00:00:00.000+02:00"
    assert field(summer, "validTo") == "2011-03-01T00:00:00.000+01:00"
    assert [etree.QName(c).localname for c in summer] == [
        "sorNummer",
        "navn",
        "telefon",
        "validFrom",
        "validTo",
    ]
    assert field(summer, "email") is None
    assert field(winter, "telefon") is None


def test_medcom_header_is_echoed_with_flow_status(simulator: SimulatorHandle) -> None:
    response = call(simulator, krs_request(message_id="m-42", flow_id="f-7"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    header = parse(response).find("S:Header/m:Header", NS)
    assert header is not None
    assert [etree.QName(c).localname for c in header] == [
        "SecurityLevel",
        "Linking",
        "FlowStatus",
        "RequireNonRepudiationReceipt",
    ]
    assert header.findtext("m:Linking/m:MessageID", namespaces=NS) == "m-42"
    assert header.findtext("m:Linking/m:FlowID", namespaces=NS) == "f-7"
    assert (
        b'<FlowStatus xmlns="http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd">flow_finalized_succesfully</FlowStatus>'
        in response.content
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (krs_request("sor", "nosuch"), "urn:stamdata:unauthorized-access"),
        (krs_request("sor", "sygehus", 2), "urn:stamdata:unauthorized-access"),
        (krs_request(offset="abc00000000000000000"), "urn:stamdata:invalid-history-offset"),
        (krs_request(offset="0000000000000000000x"), "urn:stamdata:internal-error"),
    ],
)
def test_replication_faults(simulator: SimulatorHandle, raw: bytes, code: str) -> None:
    assert fault_code(call(simulator, raw)) == ("S:Server", code)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            f'<k:register xmlns:k="{NS_KRS}">sor</k:register><datatype>sygehus</datatype>'
            "<version>1</version><offset>0</offset>",
            "One of '{register}' is expected",
        ),
        (
            "<datatype>sygehus</datatype><version>1</version><offset>0</offset>",
            "One of '{register}' is expected",
        ),
        (
            "<register>sor</register><datatype>sygehus</datatype><version>x</version><offset>0</offset>",
            "'x' is not a valid value for 'integer'",
        ),
        (
            "<register>sor</register><datatype>sygehus</datatype><version>1</version><offset>0</offset><maxRecords>-5</maxRecords>",
            "cvc-minInclusive-valid",
        ),
    ],
)
def test_schema_faults(simulator: SimulatorHandle, body: str, text: str) -> None:
    response = call(simulator, krs_request(body=body))
    code, detail = fault_code(response)
    assert code == "S:Client"
    assert detail is None
    assert text in (parse(response).findtext("S:Body/S:Fault/faultstring", namespaces=NS) or "")


def test_not_a_soap_request(simulator: SimulatorHandle) -> None:
    assert fault_code(call(simulator, b"<<<"))[0] == "S:Client"
    other = krs_request().replace(b"krs:ReplicationRequest", b"krs:Other")
    assert "Cannot find dispatch method" in call(simulator, other).text


def test_real_nsp_request_is_accepted(simulator: SimulatorHandle) -> None:
    """NSP's captured request (register ddv, with an STS-signed ID card) gets past parsing and
    schema validation; ddv is not served, so the answer is a clean unauthorized-access."""
    raw = CAPTURE.read_bytes()
    assert fault_code(call(simulator, raw)) == ("S:Server", "urn:stamdata:unauthorized-access")
    # the same request for a served datatype gets a feed and its medcom:Header echoed back
    served = raw.replace(b"<register>ddv</register>", b"<register>sor</register>")
    served = served.replace(b"<datatype>diseases</datatype>", b"<datatype>sygehus</datatype>")
    response = call(simulator, served)
    assert response.status_code == 200
    assert parse(response).findtext("S:Header/m:Header/m:Linking/m:MessageID", namespaces=NS) == (
        "AAABQMRVxltKswXAIDxFy1NPU0k="
    )


def test_wsdl(simulator: SimulatorHandle) -> None:
    response = requests.get(simulator.url + "?wsdl", timeout=10)
    assert response.status_code == 200
    wsdl = etree.fromstring(response.content)
    assert wsdl.get("targetNamespace") == NS_KRS
    address = wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None
    assert address.get("location") == simulator.url
    for element in wsdl.iter():
        location = element.get("schemaLocation") if isinstance(element.tag, str) else None
        if location:
            assert location.startswith(simulator.url + "?xsd=")
            assert requests.get(location, timeout=10).status_code == 200
    assert requests.get(simulator.url + "?xsd=../../etc/passwd", timeout=10).status_code == 404


def test_security_hook_runs_first() -> None:
    seen: list[str] = []

    def enforce(envelope: etree._Element, raw: bytes, view: str) -> SoapFaultSpec | None:
        seen.append(view)
        return dgws_fault("expired_idcard") if "apotek" in view else None

    handle = serve_in_thread(Store(), enforce=enforce)
    try:
        denied = call(handle, krs_request("sor", "apotek", offset="garbage"))
        assert denied.status_code == 500
        assert b"<medcom:FaultCode>expired_idcard<" in denied.content
        assert call(handle, krs_request()).status_code == 200
        assert seen == ["sor/apotek/v1", "sor/sygehus/v1"]
    finally:
        handle.stop()


def test_admin_state_and_keep_alive(simulator: SimulatorHandle, sim_add_rows: AddRows) -> None:
    sim_add_rows(KEY, [unit(1), unit(2)], at=datetime(2024, 3, 1, 12, tzinfo=UTC))
    with requests.Session() as session:
        for _ in range(3):  # one connection, several calls
            assert session.post(simulator.url, data=krs_request(), timeout=10).status_code == 200
        state = session.get(simulator.base_url + "/admin/state", timeout=10).json()
    assert state["datatypes"][KEY]["rows"] == 2
    assert state["datatypes"][KEY]["last_modified"] == "2024-03-01T12:00:00+00:00"
    assert state["datatypes"][KEY]["last_token"].endswith("0000000002")
    assert state["datatypes"]["sor/apotek/v1"] == {
        "rows": 0,
        "last_modified": None,
        "last_token": None,
    }


def test_admin_faults_over_http(simulator: SimulatorHandle) -> None:
    admin = simulator.base_url + "/admin/faults"
    answer = requests.post(admin, json={"kind": "http_status", "status": 503}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["next"][0]["status"] == 503
    bad = requests.post(admin, json={"kind": "nope"}, timeout=10)
    assert bad.status_code == 400
    assert "unknown fault kind" in bad.json()["error"]
    assert call(simulator, krs_request()).status_code == 503
    assert call(simulator, krs_request()).status_code == 200
    requests.post(
        admin, json={"random": {"rate": 1.0, "seed": 1, "kinds": ["http_status"]}}, timeout=10
    )
    assert call(simulator, krs_request()).status_code == 503
    assert requests.delete(admin, timeout=10).json()["random"] is None
    assert call(simulator, krs_request()).status_code == 200
    assert requests.get(simulator.url + "?wsdl", timeout=10).status_code == 200  # never faulted


def test_unknown_routes(simulator: SimulatorHandle) -> None:
    assert requests.get(simulator.base_url + "/nope", timeout=10).status_code == 404
    assert requests.post(simulator.base_url + "/nope", data=b"x", timeout=10).status_code == 404
    assert requests.get(simulator.url, timeout=10).status_code == 200
