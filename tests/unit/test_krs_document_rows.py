"""The native walk of whole records (`_pgrows.encode_documents`) against the definition, the
Python walk (`records.py`): for every page it takes it writes the same rows — the same JSON,
namespace, tokens and field counts — and every page it cannot read exactly so it leaves to the
Python walk, which accepts it or says what is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sorsync.datatypes import SOR2_DATATYPES, Datatype, lookup
from sorsync.krs import wire
from sorsync.krs.errors import MalformedResponse
from sorsync.krs.feed import NATIVE_WALK, Page, parse_feed
from sorsync.simulator.render import render_feed
from sorsync.simulator.sor2 import RecordShape
from sorsync.simulator.store import Store
from tests.fixtures.simulator import RECORD_SHAPES
from tests.unit.test_krs_copy_rows import PG_EPOCH, decode

pytestmark = pytest.mark.skipif(not NATIVE_WALK, reason="the compiled page walk is not installed")
ENTITY = lookup(SOR2_DATATYPES[0])


def expected(page: Page) -> list[tuple[object, ...]]:
    return [
        (
            e.pid,
            (e.modified_at - PG_EPOCH) // timedelta(microseconds=1),
            e.token,
            *e.values,
        )
        for e in page.entries
    ]


def both_ways(xml: bytes, dt: Datatype = ENTITY, offset: str | None = None) -> bool:
    """Read `xml` both ways and assert they agree; True when the native walk took the page."""
    error = ""
    try:
        slow = parse_feed(xml, dt, offset=offset)
    except MalformedResponse as exc:
        error = str(exc)
    if error:
        with pytest.raises(MalformedResponse) as refused:
            parse_feed(xml, dt, offset=offset, copy_rows=True)
        assert str(refused.value) == error
        return False
    fast = parse_feed(xml, dt, offset=offset, copy_rows=True)
    assert slow.profile is not None
    assert fast.profile is not None
    assert fast.profile.records == slow.profile.records
    assert {k: v.count for k, v in fast.profile.fields.items()} == {
        k: v.count for k, v in slow.profile.fields.items()
    }
    assert fast.profile.namespaces == slow.profile.namespaces
    if fast.copy_rows is None:
        assert fast.entries == slow.entries
        return False
    assert decode(fast.copy_rows, dt) == expected(slow)
    assert fast.last_token == slow.last_token
    return True


@pytest.mark.parametrize("key", SOR2_DATATYPES)
@RECORD_SHAPES
def test_the_demo_takes_the_native_path(demo_snapshot: Store, key: str, shape: RecordShape) -> None:
    dt = lookup(key)
    rows = demo_snapshot.table(key).page((0, 0), wire.MAX_RECORDS)
    xml = render_feed(dt, rows, layout=shape.layout(key)).encode()
    assert both_ways(xml, dt)
    assert both_ways(xml, dt, offset=wire.make_token(rows[0].modified - 1, 0))


def _feed(*records: str) -> bytes:
    entries = "".join(
        f"<atom:entry><atom:id>tag:x/{1700000000:010d}{pid:010d}</atom:id>"
        f"<atom:updated>2024-01-01T00:00:00.000+01:00</atom:updated>"
        f"<atom:content>{record}</atom:content></atom:entry>"
        for pid, record in enumerate(records, start=1)
    )
    return f'<atom:feed xmlns:atom="{wire.NS_ATOM}">{entries}</atom:feed>'.encode()


@pytest.mark.parametrize(
    ("records", "native"),
    [
        (['<r xmlns="urn:x"><A>1</A><B/><C>a&amp;"\\ æ\t</C></r>'], True),
        (["<r><A>1</A></r>"], True),  # no namespace at all
        (['<r xmlns="urn:x"><A>1</A><!-- c --><B>2</B></r>'], True),
        (['<r xmlns="urn:x"><A>1</A><A>2</A></r>'], False),  # a repeat becomes a list
        (['<r xmlns="urn:x"><A k="v">1</A></r>'], False),  # an attribute
        (['<r xmlns="urn:x" k="v"><A>1</A></r>'], False),
        (['<r xmlns="urn:x"><A><B>1</B></A></r>'], False),  # nesting
        (['<r xmlns="urn:x" xmlns:o="urn:o"><o:A>1</o:A></r>'], False),  # another namespace
        (['<r xmlns="urn:x">text<A>1</A></r>'], False),  # text beside the fields
        (['<r xmlns="urn:x"><A><![CDATA[x]]></A></r>'], True),  # the parser makes it text
        (['<r xmlns="urn:x"><A>x\u0085y</A></r>'], False),  # refused by the Python walk
        (['<r xmlns="urn:x"><A>1</A></r>', '<s xmlns="urn:x"><A>1</A></s>'], False),
        (['<r xmlns="urn:x"><A>1</A></r>', '<r xmlns="urn:y"><A>1</A></r>'], False),
    ],
)
def test_records_native_or_left_to_python(records: list[str], native: bool) -> None:
    assert both_ways(_feed(*records)) is native
