"""Every fault shape of docs/reference/krs-protocol.md §5 becomes the right typed error with an
actionable message."""

from __future__ import annotations

import pytest

from sorsync.datatypes import SYGEHUS, YDER
from sorsync.krs import wire
from sorsync.krs.errors import (
    DgwsFault,
    KrsError,
    MalformedResponse,
    ReplicationFault,
    SoapFault,
    TransportError,
)
from sorsync.krs.feed import parse_response


def replication_fault(code: str, faultstring: str, *, stack_trace: bool = True) -> bytes:
    """JAX-WS RI shape (docs/reference/krs-protocol.md §5.1): S:Server, faultstring,
    detail/krs:ReplicationFault, stack trace."""
    trace = (
        f'<ns3:exception xmlns:ns3="{wire.NS_JAXWS}" class="dk.nsi.stamdata.ReplicationFault"'
        ' note="To disable this feature, set ... system property to false">'
        '<message>boom</message><ns3:stackTrace><ns3:frame class="X" line="1"/>'
        "</ns3:stackTrace></ns3:exception>"
        if stack_trace
        else ""
    )
    return (
        f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body><S:Fault>'
        "<faultcode>S:Server</faultcode>"
        f"<faultstring>{faultstring}</faultstring>"
        "<detail>"
        f'<ns2:ReplicationFault xmlns:ns2="{wire.NS_KRS}">{code}</ns2:ReplicationFault>'
        f"{trace}</detail></S:Fault></S:Body></S:Envelope>"
    ).encode()


def dgws_fault(code: str, faultstring: str) -> bytes:
    """SEAL's DGWS error reply (docs/reference/krs-protocol.md §5.3): headers, faultcode,
    detail before faultstring."""
    return (
        f'<soapenv:Envelope xmlns:soapenv="{wire.NS_SOAP}" xmlns:medcom="{wire.NS_MEDCOM}"'
        f' xmlns:wsse="{wire.NS_WSSE}" xmlns:wsu="{wire.NS_WSU}" id="Envelope">'
        "<soapenv:Header><wsse:Security><wsu:Timestamp>"
        "<wsu:Created>2024-05-01T08:15:00Z</wsu:Created></wsu:Timestamp></wsse:Security>"
        "<medcom:Header><medcom:SecurityLevel>1</medcom:SecurityLevel><medcom:Linking>"
        "<medcom:FlowID>0</medcom:FlowID><medcom:MessageID>AAABQMRVxltKswXAIDxFy1NPU0k=</medcom:MessageID>"
        "<medcom:InResponseToMessageID>0</medcom:InResponseToMessageID></medcom:Linking>"
        "</medcom:Header></soapenv:Header>"
        "<soapenv:Body><soapenv:Fault><faultcode>Server</faultcode>"
        f"<detail><medcom:FaultCode>{code}</medcom:FaultCode></detail>"
        f"<faultstring>{faultstring}</faultstring></soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def plain_fault(faultcode: str, faultstring: str) -> bytes:
    return (
        f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body><S:Fault>'
        f"<faultcode>{faultcode}</faultcode><faultstring>{faultstring}</faultstring>"
        "</S:Fault></S:Body></S:Envelope>"
    ).encode()


# --- docs/reference/krs-protocol.md §5.1 application faults ---------------------------------------


def test_unauthorized_access() -> None:
    body = replication_fault(
        "urn:stamdata:unauthorized-access",
        "The provided cvr is not authorized to fetch this datatype.",
    )
    with pytest.raises(ReplicationFault) as info:
        parse_response(body, 500, YDER)
    fault = info.value
    assert fault.code == "urn:stamdata:unauthorized-access"
    assert fault.transient is False
    assert str(fault).startswith(
        "KRS refused datatype sor/yder/v1 for this CVR (urn:stamdata:unauthorized-access):"
        " ask NSP to whitelist the CVR for sor/yder/v1"
    )
    assert "boom" not in str(fault)  # the stack trace in detail is ignored


@pytest.mark.parametrize(
    ("code", "faultstring", "transient", "advice"),
    [
        ("urn:stamdata:invalid-history-offset", "Invalid offset in the request.", False, "--full"),
        (
            "urn:stamdata:internal-error",
            "Could not complete the request do to an error.",
            True,
            "will retry",
        ),
        (
            "urn:stamdata:unknown-view",
            "No view with identifier ...",
            False,
            "SORSYNC_KRS_DATATYPES",
        ),
        ("urn:stamdata:io-error", "A unexpected error occurred.", True, "will retry"),
        ("urn:stamdata:something-new", "Whatever", False, "not a code sorsync knows"),
    ],
)
def test_replication_fault_codes(code: str, faultstring: str, transient: bool, advice: str) -> None:
    with pytest.raises(ReplicationFault) as info:
        parse_response(replication_fault(code, faultstring), 500, SYGEHUS, offset="abc")
    assert info.value.code == code
    assert info.value.transient is transient
    assert code in str(info.value)
    assert "sor/sygehus/v1" in str(info.value)
    assert advice in str(info.value)
    assert info.value.faultstring == faultstring


def test_replication_fault_without_stack_trace() -> None:
    body = replication_fault("urn:stamdata:internal-error", "x", stack_trace=False)
    with pytest.raises(ReplicationFault, match="internal error"):
        parse_response(body, 500, SYGEHUS)


def test_invalid_offset_message_names_the_offset() -> None:
    body = replication_fault("urn:stamdata:invalid-history-offset", "Invalid offset")
    with pytest.raises(ReplicationFault, match="'12ab'"):
        parse_response(body, 500, SYGEHUS, offset="12ab")


# --- docs/reference/krs-protocol.md §5.2 plain SOAP faults ----------------------------------------


def test_schema_validation_fault_is_a_soap_fault() -> None:
    body = plain_fault(
        "S:Client",
        "cvc-complex-type.2.4.a: Invalid content was found starting with element 'offset'.",
    )
    with pytest.raises(SoapFault) as info:
        parse_response(body, 500, SYGEHUS)
    assert info.value.faultcode == "S:Client"
    assert info.value.transient is False
    assert "cvc-complex-type" in str(info.value)
    assert "schema error" in str(info.value)


def test_server_exception_is_a_soap_fault() -> None:
    with pytest.raises(SoapFault, match="failed to handle") as info:
        parse_response(plain_fault("S:Server", "java.lang.IllegalStateException"), 500, SYGEHUS)
    assert not isinstance(info.value, ReplicationFault | DgwsFault)


# --- docs/reference/krs-protocol.md §5.3 DGWS faults ----------------------------------------------


@pytest.mark.parametrize(
    ("code", "faultstring", "advice"),
    [
        ("expired_idcard", "IDCard expired.", "clock"),
        ("security_level_failed", "Invalid security level.", "level 3"),
        (
            "invalid_signature",
            "The signature used to sign the message was incorrectly signed or no longer valid",
            "STS",
        ),
        ("processing_problem", "An exception was caught: Unparseable date", "clock"),
        ("invalid_certificate", "x", "certificate"),
        ("not_authorized", "x", "CVR"),
        ("some_future_code", "x", "report it"),
    ],
)
def test_dgws_faults(code: str, faultstring: str, advice: str) -> None:
    with pytest.raises(DgwsFault) as info:
        parse_response(dgws_fault(code, faultstring), 500, SYGEHUS)
    assert info.value.code == code
    assert info.value.transient is False
    assert f"DGWS fault {code}" in str(info.value)
    assert advice in str(info.value)
    assert isinstance(info.value, KrsError)


def test_a_fault_with_http_200_is_still_a_fault() -> None:
    with pytest.raises(DgwsFault):
        parse_response(dgws_fault("expired_idcard", "IDCard expired."), 200, SYGEHUS)


# --- HTTP errors without a SOAP answer ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "transient"),
    [
        (503, b"", True),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", True),
        (504, b"Gateway Timeout", True),
        (500, b"Internal Server Error", True),
        (429, b"", True),
        (404, b"<html>Not Found</html>", False),
        (403, b"Forbidden", False),
        (400, b"", False),
    ],
)
def test_http_errors_without_soap(status: int, body: bytes, transient: bool) -> None:
    with pytest.raises(TransportError) as info:
        parse_response(body, status, SYGEHUS)
    assert info.value.status == status
    assert info.value.transient is transient
    assert f"HTTP {status}" in str(info.value)


def test_http_404_points_at_the_url_setting() -> None:
    with pytest.raises(TransportError, match="SORSYNC_KRS_URL"):
        parse_response(b"", 404, SYGEHUS)


def test_http_error_with_a_soap_envelope_but_no_fault() -> None:
    body = f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body/></S:Envelope>'.encode()
    with pytest.raises(TransportError):
        parse_response(body, 503, SYGEHUS)


def test_malformed_responses_are_krs_errors() -> None:
    with pytest.raises(KrsError):
        parse_response(b"<x", 200, SYGEHUS)
    assert issubclass(MalformedResponse, KrsError)
