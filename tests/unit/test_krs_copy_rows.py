"""The native walk (`copy_rows=True`, sorsync/krs/_pgrows.pyx) against the Python walk.

The Python walk is the definition of a valid page; the native one must give exactly its rows
(decoded here from the COPY BINARY stream) or give up and leave the page to it. Every input is
therefore read both ways and compared.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sorsync.datatypes import DATATYPES, SYGEHUSAFDELING, Datatype
from sorsync.krs import wire
from sorsync.krs.errors import MalformedResponse
from sorsync.krs.feed import NATIVE_WALK, CopyRows, Page, parse_feed, parse_response
from sorsync.simulator.demo import load_demo
from sorsync.simulator.render import escape_text, render_feed
from sorsync.simulator.store import Store
from sorsync.sync import sql
from tests.unit.test_krs_feed import DISEASES, DOSAGEUNIT

CAPTURES = Path(__file__).parent.parent / "data" / "krs-captures"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
pytestmark = pytest.mark.skipif(not NATIVE_WALK, reason="the compiled page walk is not installed")


def decode(rows: CopyRows, dt: Datatype) -> list[tuple[object, ...]]:
    """A COPY BINARY stream back into Python values (by `sql.copy_types`); timestamps as
    microseconds since 2000-01-01 UTC, as PostgreSQL holds them (`micros`)."""
    types = sql.copy_types(dt)
    data = rows.data
    assert data.startswith(SIGNATURE)
    at = len(SIGNATURE)
    out: list[tuple[object, ...]] = []
    while True:
        (width,) = struct.unpack_from(">h", data, at)
        at += 2
        if width == -1:
            break
        assert width == len(types)
        row: list[object] = []
        for kind in types:
            (size,) = struct.unpack_from(">i", data, at)
            at += 4
            if size == -1:
                row.append(None)
                continue
            raw = data[at : at + size]
            at += size
            if kind in ("int8", "timestamptz"):
                row.append(int.from_bytes(raw, "big", signed=True))
            elif kind == "text":
                row.append(raw.decode("utf-8"))
            elif kind == "jsonb" and dt.is_document:
                assert raw[0] == 1  # jsonb's binary format version
                row.append(json.loads(raw[1:]))
            else:
                raise AssertionError(f"the native walk wrote a {kind} value")
        out.append(tuple(row))
    assert at == len(data), "bytes after the trailer"
    assert len(out) == rows.count
    return out


def micros(value: object) -> object:
    if isinstance(value, datetime):  # an aware datetime may lie before year 1 in UTC
        return (value - PG_EPOCH) // timedelta(microseconds=1)
    return value


def expected_rows(page: Page) -> list[tuple[object, ...]]:
    """The rows the engine writes for the page's entries, timestamps as `decode` gives them."""
    return [
        tuple(micros(v) for v in (e.pid, e.modified_at, e.token, *e.values, e.extra))
        for e in page.entries
    ]


def both_ways(xml: bytes, dt: Datatype, offset: str | None = None) -> bool:
    """Read `xml` both ways, assert they agree; True when the native walk took the page."""
    slow: Page | None = None
    error = ""
    try:
        slow = parse_feed(xml, dt, offset=offset)
    except MalformedResponse as exc:
        error = str(exc)
    if slow is None:
        with pytest.raises(MalformedResponse) as fast_error:
            parse_feed(xml, dt, offset=offset, copy_rows=True)
        assert str(fast_error.value) == error
        return False
    fast = parse_feed(xml, dt, offset=offset, copy_rows=True)
    if fast.copy_rows is None:
        assert fast == slow
        return False
    assert fast.entries == []
    assert decode(fast.copy_rows, dt) == expected_rows(slow)
    assert fast.copy_rows.first_token == slow.entries[0].token
    assert fast.last_token == slow.last_token
    assert len(fast) == len(slow)
    return True


def test_real_captures_take_the_native_path() -> None:
    ddv = (CAPTURES / "response_body_ddv.xml").read_bytes()
    assert both_ways(ddv, DISEASES)
    assert both_ways(ddv, DISEASES, offset="13766544320000000009")
    dosage = (CAPTURES / "response_body_doseringsforslag_dosageunit.xml").read_bytes()
    assert both_ways(dosage, DOSAGEUNIT)


def test_a_full_soap_answer_takes_the_native_path() -> None:
    raw = (CAPTURES / "response_raw_ddv.xml").read_bytes()
    slow = parse_response(raw, 200, DISEASES)
    fast = parse_response(raw, 200, DISEASES, copy_rows=True)
    assert fast.copy_rows is not None
    assert decode(fast.copy_rows, DISEASES) == expected_rows(slow)


@pytest.fixture(scope="module")
def demo() -> Store:
    store = Store()
    load_demo(store)
    return store


@pytest.mark.parametrize("key", sorted(DATATYPES))
def test_every_sor_datatype_of_the_demo_takes_the_native_path(demo: Store, key: str) -> None:
    dt = DATATYPES[key]
    rows = demo.table(key).page((0, 0), wire.MAX_RECORDS)
    assert rows
    assert both_ways(render_feed(dt, rows).encode(), dt)


def _feed(dt: Datatype, records: list[str], first_pid: int = 1, stamp: str | None = None) -> bytes:
    fid = wire.feed_id(dt.register, dt.datatype)
    name = dt.datatype
    entries = "".join(
        f"<a:entry><a:id>{fid}/{1700000000:010d}{first_pid + i:010d}</a:id>"
        f"<a:updated>{stamp or '2024-01-01T00:00:00.000Z'}</a:updated>"
        f'<a:content><r:{name} xmlns:r="{dt.namespace}" xmlns="{dt.namespace}">{body}'
        f"</r:{name}></a:content></a:entry>"
        for i, body in enumerate(records)
    )
    return f'<a:feed xmlns:a="{wire.NS_ATOM}"><a:id>{fid}</a:id>{entries}</a:feed>'.encode()


VALID = "<sorNummer>1</sorNummer><navn>A</navn>"


@pytest.mark.parametrize(
    ("record", "native"),
    [
        (VALID, True),
        # NULLs: an omitted element, an empty number or date
        ("<navn>A</navn>", True),
        (f"{VALID}<afdelingTypeKode/><validFrom></validFrom>", True),
        # text: escapes, control characters COPY would otherwise mangle, non-ASCII
        ("<navn>a\tb\nc\\d &amp; &lt;x&gt; &#13; Ærø 😀</navn>", True),
        ("<navn/>", True),
        # numbers
        ("<sorNummer>-42</sorNummer><afdelingTypeKode>007</afdelingTypeKode>", True),
        ("<sorNummer>999999999999999999</sorNummer>", True),
        ("<sorNummer>9223372036854775807</sorNummer>", False),  # 19 digits: Python decides
        ("<sorNummer>+5</sorNummer>", False),
        ("<sorNummer> 5 </sorNummer>", False),
        ("<sorNummer>   </sorNummer>", False),
        ("<sorNummer>1x</sorNummer>", False),
        # dates and times
        ("<validFrom>2024-02-29T00:00:00.000+01:00</validFrom>", True),
        ("<validFrom>2024-02-29T23:59:59-03:30</validFrom>", True),
        # before year 1 / after year 9999 once in UTC: refused (issue 23), so Python decides
        ("<validFrom>0001-01-01T00:00:00.5+14:00</validFrom>", False),
        ("<validFrom>9999-12-31T23:59:59-14:00</validFrom>", False),
        ("<validTo>9999-12-31T23:59:59-14:00</validTo>", False),
        ("<validFrom>0001-01-01T14:00:00+14:00</validFrom>", True),
        ("<validFrom>9999-12-31T23:59:59.999999Z</validFrom>", True),
        ("<navn>A\u0085B</navn>", False),  # a C1 control: refused
        ("<navn>A&#x7f;B</navn>", False),
        ("<navn>\u00e6\u00f8\u00e5\u00a0</navn>", True),  # C2 A0 is not a control
        ("<validFrom>2024-01-01T00:00:00.123456Z</validFrom>", True),
        ("<validFrom>2024-01-01T00:00:00.1234567Z</validFrom>", False),
        ("<validFrom>2024-01-01 00:00:00Z</validFrom>", False),
        ("<validFrom>2024-01-01T00:00:00+0100</validFrom>", False),
        ("<validFrom>2024-01-01T00:00:00</validFrom>", False),  # no offset: an error
        ("<validFrom>2023-02-29T00:00:00Z</validFrom>", False),  # no such day: an error
        ("<validFrom>2024-01-01T24:00:00Z</validFrom>", False),
        ("<validFrom>2024-01-01T00:00:00.Z</validFrom>", False),
        ("<validTo>2999-12-31T00:00:00.000+01:00</validTo>", True),  # open-ended: NULL
        ("<validTo>9999-12-31T23:59:59Z</validTo>", True),
        ("<validTo>2998-12-31T23:59:59Z</validTo>", True),
        # shapes the Python walk judges
        (f"{VALID}<nyt>x</nyt>", False),  # unknown element: kept in extra
        ("<navn>A</navn><navn>B</navn>", False),
        ("<navn>A<!-- c --></navn>", False),
        ("<navn><![CDATA[A]]></navn>", True),  # the parser turns CDATA into text
        ("<navn>A<b/></navn>", False),
        (f"<!-- c -->{VALID}<?pi x?>", True),
        ('<x:navn xmlns:x="urn:other">A</x:navn>', False),
    ],
)
def test_values_native_or_left_to_python(record: str, native: bool) -> None:
    xml = _feed(SYGEHUSAFDELING, [record, VALID], first_pid=7)
    assert both_ways(xml, SYGEHUSAFDELING) is native


@pytest.mark.parametrize(
    "stamp",
    ["2024-01-01T00:00:00Z", "2024-06-01T02:00:00.000+02:00", "2024-01-01T00:00:00"],
)
def test_atom_updated_both_ways(stamp: str) -> None:
    both_ways(_feed(SYGEHUSAFDELING, [VALID], stamp=stamp), SYGEHUSAFDELING)


@pytest.mark.parametrize(
    ("offset", "native"),
    [
        (None, True),
        (wire.START_TOKEN, True),
        ("17000000000000000006", True),
        ("17000000000000000007", False),  # the first entry does not come after it: an error
        ("1", True),  # short offsets are padded like NSP does
        ("not a token", True),  # ignored by the Python walk too
        ("160000000012345678901", False),  # a PID beyond ten digits: Python decides
    ],
)
def test_offset(offset: str | None, native: bool) -> None:
    xml = _feed(SYGEHUSAFDELING, [VALID, VALID], first_pid=7)
    assert both_ways(xml, SYGEHUSAFDELING, offset=offset) is native


def test_tokens_out_of_order_are_an_error_either_way() -> None:
    fid = wire.feed_id(SYGEHUSAFDELING.register, SYGEHUSAFDELING.datatype)
    xml = _feed(SYGEHUSAFDELING, [VALID, VALID], first_pid=7)
    swapped = xml.replace(b"/17000000000000000008<", b"/17000000000000000006<")
    assert not both_ways(swapped, SYGEHUSAFDELING)
    long_token = xml.replace(f"{fid}/1700".encode(), f"{fid}/01700".encode())
    assert not both_ways(long_token, SYGEHUSAFDELING)  # 21 digits: Python decides
    assert not both_ways(xml.replace(b"/17000000000000000008<", b"<"), SYGEHUSAFDELING)


def test_entry_shapes_left_to_python() -> None:
    xml = _feed(SYGEHUSAFDELING, [VALID])
    other = xml.replace(b"<r:sygehusafdeling ", b"<r:sygehus ").replace(
        b"</r:sygehusafdeling>", b"</r:sygehus>"
    )
    assert not both_ways(other, SYGEHUSAFDELING)  # another register's record: an error
    twice = xml.replace(b"<a:updated>", b"<a:updated>2024-01-01T00:00:00Z</a:updated><a:updated>")
    assert not both_ways(twice, SYGEHUSAFDELING)
    # What precedes the record inside atom:content is passed over both ways.
    assert both_ways(xml.replace(b"<a:content>", b"<a:content><!-- c -->x"), SYGEHUSAFDELING)
    empty = _feed(SYGEHUSAFDELING, [])
    assert not both_ways(empty, SYGEHUSAFDELING)  # nothing to encode
    assert parse_feed(empty, SYGEHUSAFDELING, copy_rows=True) == Page([])


_TEXTS = st.text(st.characters(codec="utf-8"), max_size=12)


def _xml_text(value: str) -> str:
    # XML 1.0 cannot carry most control characters even escaped; keep the rest.
    return escape_text("".join(c for c in value if c >= " " or c in "\t\n"))


@st.composite
def _stamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9998, 12, 30)))
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "auto"])))
    offset = draw(st.sampled_from(["Z", "+01:00", "-03:30", "+14:00", "+0100", "", "+24:00"]))
    return text + offset


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.text("0123456789+- ", max_size=4),
            _TEXTS,
            _stamps(),
            _stamps() | st.just("2999-12-31T00:00:00.000+01:00"),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_random_values_agree(values: list[tuple[int | str, str, str, str]]) -> None:
    records = [
        f"<sorNummer>{number}</sorNummer><navn>{_xml_text(name)}</navn>"
        f"<validFrom>{start}</validFrom><validTo>{end}</validTo>"
        for number, name, start, end in values
    ]
    both_ways(_feed(SYGEHUSAFDELING, records), SYGEHUSAFDELING)
