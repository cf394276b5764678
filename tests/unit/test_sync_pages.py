"""The page loop (no database): order checks, the end of the feed, prefetching, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sorsync.datatypes import SYGEHUS, Datatype, Field, FieldType
from sorsync.krs import wire
from sorsync.krs.client import Answer
from sorsync.krs.errors import TransportError
from sorsync.krs.feed import Page
from sorsync.sync.pages import FeedError, PageStream, check_page, scan_last_token
from tests.fixtures.sync import MemorySource, make_entry

T0 = 1_700_000_000


def page(*pids: int, modified: int = T0) -> Page:
    return Page([make_entry(SYGEHUS, p, modified) for p in pids])


def test_check_page_accepts_increasing_tokens() -> None:
    check_page(SYGEHUS, wire.START_TOKEN, page(1, 2, 3), 3)
    check_page(SYGEHUS, wire.make_token(T0, 3), page(4), 2000)
    check_page(SYGEHUS, wire.make_token(T0, 3), Page([]), 1)
    # PIDs beyond 10 digits make longer tokens; they still order by (seconds, pid)
    check_page(SYGEHUS, wire.make_token(T0, 9_999_999_999), page(10_000_000_000), 1)
    check_page(SYGEHUS, "", page(1), 1)  # an empty offset is token 0


@pytest.mark.parametrize(
    ("offset", "pids", "limit", "message"),
    [
        (wire.make_token(T0, 5), (5,), 10, "tokens must increase"),
        (wire.START_TOKEN, (2, 1), 10, "tokens must increase"),
        (wire.START_TOKEN, (1, 1), 10, "tokens must increase"),
        (wire.START_TOKEN, (1, 2, 3), 2, "at most 2"),
    ],
)
def test_check_page_refuses(offset: str, pids: tuple[int, ...], limit: int, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        check_page(SYGEHUS, offset, page(*pids), limit)


@pytest.mark.parametrize("prefetch", [True, False])
def test_stream_pages_until_empty(prefetch: bool) -> None:
    source = MemorySource()
    for pid in range(1, 6):
        source.put(SYGEHUS, pid, T0)
    with PageStream(source, SYGEHUS, wire.START_TOKEN, 2, prefetch=prefetch) as stream:
        got = [[e.pid for e in p.entries] for p in stream]
    assert got == [[1, 2], [3, 4], [5]]
    assert [c[1] for c in source.calls] == [
        wire.START_TOKEN,
        wire.make_token(T0, 2),
        wire.make_token(T0, 4),
        wire.make_token(T0, 5),
    ]


@pytest.mark.parametrize("prefetch", [True, False])
def test_stream_reraises_source_errors_after_earlier_pages(prefetch: bool) -> None:
    failing = TransportError("gone")

    class FailsAfterFirst:
        def replicate(self, dt: object, offset: str, max_records: int) -> Page:
            if offset == wire.START_TOKEN:
                return page(1)
            raise failing

    source = FailsAfterFirst()
    seen: list[int] = []

    def drain() -> None:
        with PageStream(source, SYGEHUS, wire.START_TOKEN, 5, prefetch=prefetch) as stream:
            for p in stream:
                seen.extend(e.pid for e in p.entries)

    with pytest.raises(TransportError) as caught:
        drain()
    assert caught.value is failing
    assert seen == [1]


def test_prefetch_holds_at_most_two_pages_and_stops_when_closed() -> None:
    fetched = 0
    release = threading.Event()

    class Endless:
        def replicate(self, dt: object, offset: str, max_records: int) -> Page:
            nonlocal fetched
            fetched += 1
            return page(fetched)

    with PageStream(Endless(), SYGEHUS, wire.START_TOKEN, 1) as stream:
        first = next(iter(stream))
        release.wait(0.3)  # let the fetch thread run ahead as far as it may
        assert first.entries[0].pid == 1
        assert fetched <= 3  # one handed out, one queued, one waiting to be queued
    done = fetched
    release.wait(0.3)
    assert fetched == done  # closed: nothing more is fetched


def test_page_size_limits() -> None:
    with pytest.raises(ValueError, match="page_size"):
        PageStream(MemorySource(), SYGEHUS, wire.START_TOKEN, 0)
    with pytest.raises(ValueError, match="page_size"):
        PageStream(MemorySource(), SYGEHUS, wire.START_TOKEN, 2001)


# --- asking for the next page while this one is parsed ---------------------------------------

CAPTURES = Path(__file__).parent.parent / "data" / "krs-captures"


def test_scan_last_token_reads_a_real_answer() -> None:
    diseases = Datatype("ddv", "diseases", 1, (Field("Id", "id", FieldType.TEXT),), "urn:x")
    raw = (CAPTURES / "response_raw_ddv.xml").read_bytes()
    assert scan_last_token(raw, diseases, wire.START_TOKEN) == "13766544330000000001"
    # not after the offset, another datatype's feed, no entries, or junk: no guess
    assert scan_last_token(raw, diseases, "13766544330000000001") is None
    assert scan_last_token(raw, SYGEHUS, wire.START_TOKEN) is None
    fid = wire.feed_id("ddv", "diseases").encode()
    assert scan_last_token(b"<atom:id>" + fid + b"</atom:id>", diseases, "0") is None
    assert scan_last_token(fid + b"/123</atom:id>", diseases, "0") is None
    assert scan_last_token(fid + b"/" + b"1" * 20, diseases, "0") is None  # cut off


class SplitMemorySource(MemorySource):
    """MemorySource in halves, with a raw answer naming `lie` (a token) as its last entry when
    set, to check the early request is only used once the parsed page confirms its token."""

    def __init__(self) -> None:
        super().__init__()
        self.lie: str | None = None
        self.ahead_fail: dict[str, Exception] = {}  # offset → raise when that page is sent

    def send(self, dt: Datatype, offset: str, max_records: int) -> Answer:
        if offset in self.ahead_fail:
            self.calls.append((dt.key, offset, max_records))
            raise self.ahead_fail.pop(offset)
        got = self.replicate(dt, offset, max_records)
        last = self.lie or got.last_token
        fid = wire.feed_id(dt.register, dt.datatype)
        content = f"<atom:id>{fid}/{last}</atom:id>".encode() if last else b"<feed/>"
        self.pages_by_offset[offset] = got
        return Answer(dt, offset, max_records, 200, content, "m", 0.0, False)

    def parse(self, answer: Answer) -> Page:
        return self.pages_by_offset[answer.offset]

    finish = parse

    pages_by_offset: dict[str, Page]


def _split_source(rows: int) -> SplitMemorySource:
    source = SplitMemorySource()
    source.pages_by_offset = {}
    for pid in range(1, rows + 1):
        source.put(SYGEHUS, pid, T0)
    return source


def _drain(source: SplitMemorySource, size: int, seen: list[int]) -> None:
    with PageStream(source, SYGEHUS, wire.START_TOKEN, size) as stream:
        for p in stream:
            seen.extend(e.pid for e in p.entries)


def test_early_request_makes_the_same_calls() -> None:
    source = _split_source(5)
    seen: list[int] = []
    _drain(source, 2, seen)
    assert seen == [1, 2, 3, 4, 5]
    assert [c[1] for c in source.calls] == [
        wire.START_TOKEN,
        wire.make_token(T0, 2),
        wire.make_token(T0, 4),
        wire.make_token(T0, 5),
    ]


def test_a_wrong_guess_is_dropped_and_asked_again() -> None:
    source = _split_source(3)
    source.lie = wire.make_token(T0, 9)
    seen: list[int] = []
    _drain(source, 2, seen)
    assert seen == [1, 2, 3]  # nothing after the lie was used
    offsets = [c[1] for c in source.calls]
    lie = wire.make_token(T0, 9)
    assert lie in offsets  # asked early, then dropped: the parsed pages ended elsewhere
    assert [o for o in offsets if o != lie] == [
        wire.START_TOKEN,
        wire.make_token(T0, 2),
        wire.make_token(T0, 3),
    ]


def test_an_early_request_error_comes_after_the_page_before_it() -> None:
    source = _split_source(5)
    failing = TransportError("gone")
    source.ahead_fail[wire.make_token(T0, 2)] = failing
    seen: list[int] = []
    with pytest.raises(TransportError) as caught:
        _drain(source, 2, seen)
    assert caught.value is failing
    assert seen == [1, 2]
