"""Request validation of the simulator: schema check, offsets, envelope parsing
(docs/reference/krs-protocol.md §3.4–§3.5)."""

from __future__ import annotations

import pytest
from lxml import etree

from sorsync.krs.wire import NS_KRS
from sorsync.simulator.server import (
    ReplicationRequest,
    RequestError,
    SchemaError,
    parse_envelope,
    read_request,
    requested_view,
    split_offset,
)
from tests.fixtures.simulator import krs_request


def payload(children: str, attrs: str = "") -> etree._Element:
    return etree.fromstring(
        f'<k:ReplicationRequest xmlns:k="{NS_KRS}"{attrs}>{children}</k:ReplicationRequest>'
    )


BASE = "<register>sor</register><datatype>sygehus</datatype><version>1</version>"


def test_valid_request_with_and_without_optionals() -> None:
    assert read_request(payload(BASE + "<offset>0</offset>")) == ReplicationRequest(
        "sor", "sygehus", 1, "0"
    )
    request = read_request(
        payload(
            BASE
            + "<registerVersion>2</registerVersion><offset>12</offset><maxRecords> 50 </maxRecords>"
        )
    )
    assert request.max_records == 50
    assert request.register_version == 2
    assert request.view == "sor/v2/sygehus/v1"
    assert read_request(payload(BASE + "<!-- c --><offset/>")).offset == ""


@pytest.mark.parametrize(
    ("children", "message"),
    [
        (
            "",
            "cvc-complex-type.2.4.b: The content of element 'k:ReplicationRequest' is not"
            " complete. One of '{register}' is expected.",
        ),
        (
            "<datatype>sygehus</datatype>",
            "cvc-complex-type.2.4.a: Invalid content was found starting with element"
            " 'datatype'. One of '{register}' is expected.",
        ),
        (
            f'<k:register xmlns:k="{NS_KRS}">sor</k:register>',
            "starting with element 'k:register'. One of '{register}' is expected.",
        ),
        (BASE, "is not complete. One of '{registerVersion, offset}' is expected."),
        (
            "<register>sor</register><datatype>x</datatype><version>x</version><offset>0</offset>",
            "cvc-datatype-valid.1.2.1: 'x' is not a valid value for 'integer'.",
        ),
        (
            "<register>sor</register><datatype>x</datatype><version>-1</version><offset>0</offset>",
            "cvc-minInclusive-valid",
        ),
        (BASE + "<offset>0</offset><maxRecords>4294967296</maxRecords>", "cvc-maxInclusive-valid"),
        (
            BASE + "<offset>0</offset><maxRecords>1</maxRecords><extra/>",
            "cvc-complex-type.2.4.d: Invalid content was found starting with element 'extra'."
            " No child element is expected at this point.",
        ),
        ("<register>sor</register><version>1</version>", "One of '{datatype}' is expected."),
        (
            BASE + "<maxRecords>1</maxRecords><offset>0</offset>",
            "starting with element 'maxRecords'. One of '{registerVersion, offset}' is expected.",
        ),
        ("<register><x/></register>", "cvc-type.3.1.2"),
        ("text" + BASE, "cvc-complex-type.2.3"),
    ],
)
def test_schema_violations(children: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        read_request(payload(children))
    assert message in str(info.value)


def test_offsets_like_nsp() -> None:
    assert split_offset("") == (0, 0)
    assert split_offset("0") == (0, 0)
    assert split_offset("13766544330000000001") == (1376654433, 1)
    assert split_offset(" 42 ") == (0, 42)  # left-padded: short tokens are PIDs
    assert split_offset("1376654433000000000000012") == (1376654433, 12)  # long PIDs work
    with pytest.raises(RequestError) as info:
        split_offset("x" * 20)
    assert b"urn:stamdata:invalid-history-offset" in info.value.spec.body
    with pytest.raises(RequestError) as info:
        split_offset("1376654433000000000x")
    assert b"urn:stamdata:internal-error" in info.value.spec.body
    with pytest.raises(RequestError):
        split_offset("1376654433000000000\u0661")  # non-ASCII digits are not digits here


def test_envelope_parsing_rejects_bad_input() -> None:
    assert requested_view(parse_envelope(krs_request())) == "sor/sygehus/v1"
    for raw, code in [
        (b"not xml", b"S:Client"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]>' + krs_request(), b"DOCTYPE is not allowed"),
        (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"/>', b"S:VersionMismatch"),
    ]:
        with pytest.raises(RequestError) as info:
            parse_envelope(raw)
        assert code in info.value.spec.body
    with pytest.raises(RequestError) as info:
        parse_envelope(b"not xml", enforced=True)
    assert b"processing_problem" in info.value.spec.body
