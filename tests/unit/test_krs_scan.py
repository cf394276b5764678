"""The tree-less read of whole-record pages (`_pgrows.scan_documents`) against today's path (lxml's
parse, then `encode_documents` or records.py): on every answer it takes it writes the same COPY
stream byte for byte where the tree walk wrote one (else the same rows), with the same tokens,
namespace and profile; every answer it does not take goes to lxml's path, so errors are today's.
Real captures, the demo's SOR2 pages, random awkward records and random corruptions of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sorsync.datatypes import SOR2_DATATYPES, Datatype, lookup
from sorsync.krs import _pgrows, feed, wire
from sorsync.krs.errors import KrsError
from sorsync.krs.feed import NATIVE_WALK, Page, parse_feed, parse_response
from sorsync.simulator.render import render_response
from sorsync.simulator.sor2 import RecordShape
from sorsync.simulator.store import Store
from tests.fixtures.simulator import RECORD_SHAPES
from tests.unit.test_krs_copy_rows import decode
from tests.unit.test_krs_document_rows import expected

pytestmark = pytest.mark.skipif(not NATIVE_WALK, reason="the compiled page walk is not installed")
CAPTURES = Path(__file__).parent.parent / "data" / "krs-captures"
ENTITY = lookup(SOR2_DATATYPES[0])
DDV = lookup("ddv/diseases/v1")  # not in the registry: a document datatype
DOSAGE = lookup("doseringsforslag/dosageunit/v1")


def scanned(body: bytes, envelope: bool, offset: str | None = None) -> bool:
    after = feed._native_after(offset)
    assert after is not None
    return (
        _pgrows.scan_documents(
            body, envelope, feed._ATOM, feed._SOAP, feed._KRS, after, wire.MAX_RECORDS, 25
        )
        is not None
    )


def read(body: bytes, dt: Datatype, envelope: bool, offset: str | None) -> Page | str:
    try:
        if envelope:
            return parse_response(body, 200, dt, offset=offset, copy_rows=True)
        return parse_feed(body, dt, offset=offset, copy_rows=True)
    except KrsError as exc:
        return f"{type(exc).__name__}: {exc}"


def both_ways(
    body: bytes, dt: Datatype = ENTITY, *, envelope: bool = True, offset: str | None = None
) -> bool:
    """Read `body` with and without the scan; assert they agree; True when the scan took it."""
    took = scanned(body, envelope, offset)
    new = read(body, dt, envelope, offset)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feed, "_scan_documents", lambda *_args, **_kw: None)
        old = read(body, dt, envelope, offset)
    if not took or isinstance(old, str):
        assert not took, f"the scan took an answer today's path refuses: {old}"
        assert new == old  # the same page, or the same error
        return False
    assert isinstance(new, Page)
    assert new.copy_rows is not None
    assert new.profile is not None
    assert old.profile is not None
    if old.copy_rows is not None:
        assert new.copy_rows == old.copy_rows  # byte for byte
        assert new.profile == old.profile
    else:
        assert decode(new.copy_rows, dt) == expected(old)
        assert new.last_token == old.last_token
        assert new.profile.records == old.profile.records
        assert new.profile.namespaces == old.profile.namespaces
        assert {k: v.count for k, v in new.profile.fields.items()} == {
            k: v.count for k, v in old.profile.fields.items()
        }
    return True


def test_real_captures_are_scanned() -> None:
    raw = (CAPTURES / "response_raw_ddv.xml").read_bytes()
    assert both_ways(raw, DDV)
    assert both_ways(raw, DDV, offset="13766544320000000009")
    assert not both_ways(raw, DDV, offset="13766544330000000001")  # not after the offset
    assert both_ways((CAPTURES / "response_body_ddv.xml").read_bytes(), DDV, envelope=False)
    body = (CAPTURES / "response_body_doseringsforslag_dosageunit.xml").read_bytes()
    assert both_ways(body, DOSAGE, envelope=False)


@pytest.mark.parametrize("key", SOR2_DATATYPES)
@RECORD_SHAPES
def test_the_demo_is_scanned(demo_snapshot: Store, key: str, shape: RecordShape) -> None:
    dt = lookup(key)
    rows = demo_snapshot.table(key).page((0, 0), wire.MAX_RECORDS)
    body = render_response(dt, rows, None, layout=shape.layout(key))
    assert both_ways(body, dt)
    assert both_ways(body, dt, offset=wire.make_token(rows[0].modified - 1, 0))


ATOM = wire.NS_ATOM


def _answer(records: list[str], *, atom: str = "atom", head: str = "", gap: str = "") -> bytes:
    """A SOAP answer with one entry per record; `atom` the feed's prefix ("" for default)."""
    a = f"{atom}:" if atom else ""
    declare = f' xmlns:{atom}="{ATOM}"' if atom else f' xmlns="{ATOM}"'
    entries = "".join(
        f"<{a}entry>{gap}<{a}id>tag:x/{1700000000:010d}{pid:010d}</{a}id>{gap}<{a}title/>"
        f"<{a}updated>2024-01-01T00:00:00.000+01:00</{a}updated>{gap}"
        f'<{a}content type="application/xml">{record}</{a}content>{gap}</{a}entry>'
        for pid, record in enumerate(records, start=1)
    )
    return (
        f"{head}<S:Envelope xmlns:S=\"{wire.NS_SOAP}\"><S:Header><h:x xmlns:h='urn:h'>1</h:x>"
        f'</S:Header><S:Body><k:ReplicationResponse xmlns:k="{wire.NS_KRS}">'
        f"<{a}feed{declare}><{a}id>tag:nsi.dk,2011:x</{a}id>{gap}{entries}</{a}feed>"
        "</k:ReplicationResponse></S:Body></S:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    ("records", "taken"),
    [
        (['<r xmlns="urn:x"><A>1</A><B/><C>a&amp;"\\ æ\t</C></r>'], True),
        (["<r><A>1</A></r>"], True),
        (['<p:r xmlns:p="urn:x"><p:A>&lt;&#233;&#x1F600;&gt;</p:A><p:B></p:B></p:r>'], True),
        (['<r xmlns="urn:x"><A><![CDATA[<&>]]>&apos;x<![CDATA[]]]]></A></r>'], True),
        (['<r xmlns="urn:x"><A>1</A><!-- c --><B>2</B></r>'], True),
        (["<r xmlns =\n 'urn:x' ><A>1</A></r>"], True),  # space around an attribute's =
        (['<r xmlns="urn:x"><A>a\r\nb\rc&#13;</A></r>'], True),
        (['<r xmlns="urn:x"><A>   </A>\n  <B>\n</B></r>'], True),
        (['<r xmlns="urn:x"><A>1</A><A>2</A></r>'], False),  # a repeat becomes a list
        (['<r xmlns="urn:x" xmlns:i="urn:i"><A i:nil="true"/></r>'], False),  # an attribute
        (['<r xmlns="urn:x"><A><B>1</B></A></r>'], False),
        (['<r xmlns="urn:x">text<A>1</A></r>'], False),
        (['<r xmlns="urn:x"><A>a<!-- c -->b</A></r>'], False),  # lxml's .text stops there
        (['<r xmlns="urn:x"><A>x&#133;y</A></r>'], False),  # refused by the Python walk
        (['<r xmlns="urn:x"><A>&nbsp;</A></r>'], False),  # an undefined entity
        (['<r xmlns="urn:x"><A>a]]>b</A></r>'], False),  # not well-formed
        (['<r xmlns="urn:x"><A>1</B></r>'], False),
        (['<r xmlns="urn:x"><q:A>1</q:A></r>'], False),  # an undeclared prefix
        (['<r xmlns="http://a:b/"><A>1</A></r>'], False),  # "not a valid URI" for libxml2
        (['<r xmlns="urn:x"><A>1</A></r>', '<s xmlns="urn:x"><A>1</A></s>'], False),
    ],
)
def test_records_scanned_or_left_to_lxml(records: list[str], taken: bool) -> None:
    assert both_ways(_answer(records)) is taken
    assert both_ways(_answer(records, atom="", gap="\n  ")) is taken


def test_keys_are_written_in_jsonb_order() -> None:
    # PostgreSQL sorts an object's keys (shorter first, then bytewise) and checks first whether
    # they already are: the walks write them so, the tree's byte for byte as the scan's.
    records = [
        "<r><Bb>1</Bb><A>2</A><Ab>3</Ab><Aa/></r>",
        "<r><Bb>4</Bb><A>5</A><Ab>6</Ab><Aa/></r>",  # the same fields: the order is reused
        "<r><A>7</A><Ccc>8</Ccc><Bb>9</Bb></r>",
        "<r/>",
        "<r><Z>0</Z></r>",
    ]
    body = _answer(records)
    assert both_ways(body)
    page = parse_response(body, 200, ENTITY, copy_rows=True)
    assert page.copy_rows is not None
    stored = [row[-1] for row in decode(page.copy_rows, ENTITY)]
    assert [list(record.items()) for record in stored if isinstance(record, dict)] == [
        [("A", "2"), ("Aa", ""), ("Ab", "3"), ("Bb", "1")],
        [("A", "5"), ("Aa", ""), ("Ab", "6"), ("Bb", "4")],
        [("A", "7"), ("Bb", "9"), ("Ccc", "8")],
        [],
        [("Z", "0")],
    ]


@pytest.mark.parametrize(
    "head",
    [
        "<?xml version='1.0' encoding='UTF-8'?>",
        '<?xml version="1.0"?>\n<!-- before -->\n',
        '<?xml version="1.0" encoding="utf-8" standalone="yes"?>',
        "<?xml version = '1.0'\tencoding =\"UTF-8\" ?>",
    ],
)
def test_declarations_scanned(head: str) -> None:
    assert both_ways(_answer(["<r><A>1</A></r>"], head=head))


@pytest.mark.parametrize(
    "head",
    [
        '<!DOCTYPE S:Envelope [<!ENTITY x "boom">]>',  # never expanded: lxml's path refuses it
        "<?xml version='1.0' encoding='ISO-8859-1'?>",
        "\ufeff",
        "<?pi x?>",
        " <?xml version='1.0'?>",
        "<?xml version=1.0?>",  # not well-formed: lxml's path gives the error
        "<?xml version='1.0' encoding ?>",
    ],
)
def test_declarations_left_to_lxml(head: str) -> None:
    assert not both_ways(_answer(["<r><A>1</A></r>"], head=head))


def test_faults_and_cut_answers_left_to_lxml() -> None:
    fault = (
        f'<S:Envelope xmlns:S="{wire.NS_SOAP}"><S:Body><S:Fault><faultcode>S:Server</faultcode>'
        "<faultstring>x</faultstring></S:Fault></S:Body></S:Envelope>"
    ).encode()
    assert not both_ways(fault)
    whole = _answer(["<r><A>1</A></r>"])
    for cut in (len(whole) - 1, len(whole) // 2, 10):
        assert not both_ways(whole[:cut])


# --- random records ----------------------------------------------------------------------------

_GOOD = [*"abcæøåÆ ü€\t\n\r<>&'\"]\\;#x", "\U0001f600", "\u2028", "\ufffd"]
_BAD = ["\x85", "\x7f"]  # what no column holds: the Python walk refuses it, so lxml's path must
_TEXT = st.text(alphabet=st.sampled_from(_GOOD), max_size=12) | st.text(
    alphabet=st.sampled_from(_GOOD + _BAD), max_size=3
)


@st.composite
def _value(draw: st.DrawFn, name: str, prefix: str) -> str:
    text = draw(_TEXT)
    form = draw(st.sampled_from(["escaped", "refs", "cdata", "empty", "selfclose", "spaces"]))
    tag = f"{prefix}{name}"
    if form == "selfclose":
        return f"<{tag}/>"
    if form == "empty":
        return f"<{tag}></{tag}>"
    if form == "spaces":
        spaces = draw(st.sampled_from([" ", "  \t", "\n", " \r\n"]))
        return f"<{tag}>{spaces}</{tag}>"
    if form == "refs":
        body = "".join(f"&#{ord(c)};" if draw(st.booleans()) else f"&#x{ord(c):X};" for c in text)
        return f"<{tag}>{body}</{tag}>"
    if form == "cdata":
        body = text.replace("]]>", "]]]]><![CDATA[>")
        return f"<{tag}><![CDATA[{body}]]></{tag}>"
    body = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = body.replace('"', draw(st.sampled_from(['"', "&quot;"])))
    return f"<{tag}>{body}</{tag}>"


_NAMESPACES = st.sampled_from(["http://nsi.dk/-/stamdata/3.0/sor", "urn:x:y", "", "rel"])


@st.composite
def _record(draw: st.DrawFn, page_namespace: str) -> str:
    # Mostly the page's namespace; now and then another (the page then goes to lxml's path).
    namespace = draw(st.sampled_from([page_namespace] * 5) | _NAMESPACES)
    prefix = draw(st.sampled_from(["", "sor:", "ns2:"]))
    names = draw(
        st.lists(
            st.sampled_from(["SorId", "EntityName", "A", "b-c", "d.e"]), max_size=5, unique=True
        )
        | st.lists(st.sampled_from(["A", "B"]), max_size=3)  # a repeat now and then
    )
    if prefix and not namespace:
        prefix = ""  # a prefix cannot be bound to no namespace
    declare = f' xmlns:{prefix[:-1]}="{namespace}"' if prefix else f' xmlns="{namespace}"'
    gap = draw(st.sampled_from(["", "\n    ", "<!-- note -->"]))
    fields = gap.join(draw(_value(name, prefix)) for name in names)
    return f"<{prefix}sorentity{declare}>{gap}{fields}{gap}</{prefix}sorentity>"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), _NAMESPACES, st.sampled_from(["atom", "", "a"]))
def test_random_records_read_alike(data: st.DataObject, namespace: str, atom: str) -> None:
    records = data.draw(st.lists(_record(namespace), min_size=1, max_size=4))
    both_ways(_answer(records, atom=atom, gap=" "))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_record("urn:x:y"), min_size=1, max_size=2),
    st.lists(
        st.tuples(
            st.floats(0, 1, exclude_max=True),
            st.sampled_from(["delete", "insert", "replace"]),
            st.sampled_from([bytes([b]) for b in b"<>&/:\"'=!?-] \x00\x01\xc3\xa6\xffx#;[\r"]),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_corrupted_answers_read_alike(
    records: list[str], edits: list[tuple[float, str, bytes]]
) -> None:
    """Whatever is broken, the scan takes only what lxml's path takes, and reads it alike."""
    body = bytearray(_answer(records))
    for where, how, byte in edits:
        at = int(where * len(body))
        if how == "delete":
            del body[at]
        elif how == "insert":
            body[at:at] = byte
        else:
            body[at : at + 1] = byte
    both_ways(bytes(body))
