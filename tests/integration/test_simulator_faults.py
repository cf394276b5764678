"""Each fault-injection kind does what it says, over real HTTP."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree

from sorsync.datatypes import SYGEHUS
from sorsync.krs.wire import NS_ATOM, NS_KRS, NS_MEDCOM, NS_SOAP
from sorsync.simulator.server import SimulatorHandle
from tests.fixtures.simulator import AddRows, krs_request

NS = {"S": NS_SOAP, "a": NS_ATOM, "k": NS_KRS, "m": NS_MEDCOM}
KEY = "sor/sygehus/v1"
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@pytest.fixture
def loaded(simulator: SimulatorHandle, sim_add_rows: AddRows) -> SimulatorHandle:
    sim_add_rows(KEY, [{"sorNummer": n, "navn": f"S{n}"} for n in range(1, 4)])
    return simulator


def post(sim: SimulatorHandle, max_records: int = 2000) -> requests.Response:
    return requests.post(sim.url, data=krs_request(max_records=max_records), timeout=10)


def entries(response: requests.Response) -> list[etree._Element]:
    doc = etree.fromstring(response.content, SAFE)
    return doc.findall("S:Body/k:ReplicationResponse/a:feed/a:entry", NS)


def test_http_status(loaded: SimulatorHandle) -> None:
    loaded.faults.next("http_status", status=502, body="Bad Gateway")
    response = post(loaded)
    assert response.status_code == 502
    assert response.text == "Bad Gateway"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert post(loaded).status_code == 200  # one-shot


def test_delay(loaded: SimulatorHandle) -> None:
    loaded.faults.next("delay", seconds=0.3)
    started = time.monotonic()
    response = post(loaded)
    assert response.status_code == 200
    assert len(entries(response)) == 3
    assert time.monotonic() - started >= 0.3
    loaded.faults.next("delay", seconds=0.5)
    with pytest.raises(requests.Timeout):
        requests.post(loaded.url, data=krs_request(), timeout=0.1)


def test_reset(loaded: SimulatorHandle) -> None:
    loaded.faults.next("reset")
    with pytest.raises(requests.ConnectionError):
        post(loaded)
    assert post(loaded).status_code == 200


def test_truncate(loaded: SimulatorHandle) -> None:
    loaded.faults.next("truncate", bytes=100)
    parts = urlsplit(loaded.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("POST", parts.path, body=krs_request())
        response = connection.getresponse()
        assert response.status == 200
        assert int(response.getheader("Content-Length") or 0) > 100
        with pytest.raises(http.client.IncompleteRead) as info:
            response.read()
        assert len(info.value.partial) == 100
    finally:
        connection.close()


def test_malformed_xml(loaded: SimulatorHandle) -> None:
    loaded.faults.next("malformed_xml")
    response = post(loaded)
    assert response.status_code == 200
    assert len(response.content) == int(response.headers["Content-Length"])
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content, SAFE)


def test_replication_fault(loaded: SimulatorHandle) -> None:
    loaded.faults.next("replication_fault", code="urn:stamdata:unauthorized-access")
    response = post(loaded)
    assert response.status_code == 500
    doc = etree.fromstring(response.content, SAFE)
    assert doc.findtext("S:Body/S:Fault/detail/k:ReplicationFault", namespaces=NS) == (
        "urn:stamdata:unauthorized-access"
    )
    loaded.faults.next("replication_fault")
    assert b"urn:stamdata:internal-error" in post(loaded).content


def test_dgws_fault(loaded: SimulatorHandle) -> None:
    loaded.faults.next("dgws_fault", code="security_level_failed")
    response = post(loaded)
    assert response.status_code == 500
    doc = etree.fromstring(response.content, SAFE)
    assert (
        doc.findtext("S:Body/S:Fault/detail/m:FaultCode", namespaces=NS) == "security_level_failed"
    )
    assert doc.findtext("S:Body/S:Fault/faultstring", namespaces=NS) == "Invalid security level."


def test_oversized_page(simulator: SimulatorHandle, sim_add_rows: AddRows) -> None:
    sim_add_rows(KEY, [{"sorNummer": n} for n in range(2300)])
    simulator.faults.next("oversized_page")
    assert len(entries(post(simulator, max_records=10))) == 2300
    assert len(entries(post(simulator, max_records=10))) == 10


def test_missing_token(loaded: SimulatorHandle) -> None:
    loaded.faults.next("missing_token", index=1)
    ids = [e.findtext("a:id", namespaces=NS) for e in entries(post(loaded))]
    assert ids[1] == "tag:nsi.dk,2011:sor/sygehus/v1"
    assert ids[0] is not None
    assert ids[0].startswith("tag:nsi.dk,2011:sor/sygehus/v1/")


def test_backwards_token(loaded: SimulatorHandle) -> None:
    loaded.faults.next("backwards_token")
    tokens = [
        (e.findtext("a:id", namespaces=NS) or "").rsplit("/", 1)[1] for e in entries(post(loaded))
    ]
    assert tokens == sorted(tokens, reverse=True)
    assert len(set(tokens)) == 3


def test_unknown_element(loaded: SimulatorHandle) -> None:
    loaded.faults.next("unknown_element", name="nytFelt", value="42")
    record = entries(post(loaded))[0].find("a:content", NS)[0]  # type: ignore[index]
    assert record[-1].tag == f"{{{SYGEHUS.namespace}}}nytFelt"
    assert record[-1].text == "42"


def test_wrong_namespace(loaded: SimulatorHandle) -> None:
    loaded.faults.next("wrong_namespace", namespace="urn:forkert")
    record = entries(post(loaded))[0].find("a:content", NS)[0]  # type: ignore[index]
    assert record.tag == "{urn:forkert}sygehus"


def test_xml_bomb_and_external_entity_are_not_expanded_by_a_safe_parser(
    loaded: SimulatorHandle,
) -> None:
    loaded.faults.next("xml_bomb").next("external_entity", system_id="file:///etc/hostname")
    bomb = post(loaded)
    assert bomb.status_code == 200
    assert b"<!DOCTYPE" in bomb.content
    assert b"&lol10;" in bomb.content
    # libxml2 refuses the amplification even with entity resolution off
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        etree.fromstring(bomb.content, SAFE)
    xxe = post(loaded)
    assert b'<!ENTITY xxe SYSTEM "file:///etc/hostname">' in xxe.content
    doc = etree.fromstring(xxe.content, SAFE)
    assert doc.findtext("S:Body/k:ReplicationResponse/a:feed/a:title", namespaces=NS) in (None, "")


def test_random_faults_hit_about_the_rate(loaded: SimulatorHandle) -> None:
    loaded.faults.random(0.5, seed=11, kinds=["http_status"])
    statuses = [post(loaded).status_code for _ in range(30)]
    assert 5 < statuses.count(503) < 25
    assert set(statuses) == {200, 503}
    assert loaded.faults.injected["http_status"] == statuses.count(503)
