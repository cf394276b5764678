"""The page loop (no database): order checks, the end of the feed, prefetching, errors."""

from __future__ import annotations

import threading

import pytest

from sorsync.datatypes import SYGEHUS
from sorsync.krs import wire
from sorsync.krs.errors import TransportError
from sorsync.krs.feed import Page
from sorsync.sync.pages import FeedError, PageStream, check_page
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
