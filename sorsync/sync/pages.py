"""The page loop on the KRS side: ask for pages after a token until one comes back empty.

`fetch_pages` may fetch the next page in a background thread while the caller stores the
current one, so the database and the network overlap. Pages are handed over strictly in order
and at most two are held at a time (one waiting, one being fetched), whatever the feed's size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Protocol

from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.krs.feed import Page


class PageSource(Protocol):
    """Anything that answers KRS `replicate` calls: the KRS client, or a test double."""

    def replicate(self, datatype: Datatype, offset: str, max_records: int) -> Page: ...


class FeedError(Exception):
    """The feed broke a paging rule sorsync relies on (the message says what to do)."""


def check_page(dt: Datatype, offset: str, page: Page, max_records: int) -> None:
    """Refuse a page that would make the loop go wrong: too long, or not moving forward.

    Tokens must strictly increase in (ModifiedDate, PID) order; a server that answers the same
    page again would otherwise be asked forever.
    """
    if len(page.entries) > max_records:
        raise FeedError(
            f"KRS sent {len(page.entries)} records for {dt.key} where at most {max_records} were"
            " asked for; the server does not follow the KRS paging rules — report it"
        )
    previous = offset.strip().rjust(20, "0")
    for entry in page.entries:
        token = entry.token
        # Fast path: equal-length digit strings order like the numbers they spell.
        if len(token) == len(previous) == 20:
            ahead = token > previous
        else:
            ahead = wire.split_token(token) > wire.split_token(previous)
        if not ahead:
            raise FeedError(
                f"KRS sent {dt.key} token {token} after {previous}; tokens must increase, so"
                " the feed cannot be followed safely — report it to the KRS operator (a full"
                " sync may work around it)"
            )
        previous = token


def _fetch_all(source: PageSource, dt: Datatype, offset: str, page_size: int) -> Iterator[Page]:
    token = offset
    while True:
        page = source.replicate(dt, token, page_size)
        check_page(dt, token, page, page_size)
        if not page.entries:
            return
        yield page
        token = page.entries[-1].token


_END = object()


class _Prefetcher:
    def __init__(self, pages: Iterator[Page]) -> None:
        self._pages = pages
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sorsync-fetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for page in self._pages:
                if not self._put(page):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Page]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Page)
            yield item

    def close(self) -> None:
        self._stop.set()
        # A fetch in flight ends within the client's timeout; the daemon thread is not waited
        # for beyond a moment, and its result is dropped.
        self._thread.join(timeout=2)


class PageStream:
    """Iterate the non-empty pages after `offset`; use as a context manager."""

    def __init__(
        self,
        source: PageSource,
        dt: Datatype,
        offset: str,
        page_size: int,
        *,
        prefetch: bool = True,
    ) -> None:
        if not 1 <= page_size <= wire.MAX_RECORDS:
            raise ValueError(f"page_size must be 1..{wire.MAX_RECORDS}, not {page_size}")
        pages = _fetch_all(source, dt, offset, page_size)
        self._prefetcher = _Prefetcher(pages) if prefetch else None
        self._pages: Iterator[Page] = iter(self._prefetcher) if self._prefetcher else pages

    def __iter__(self) -> Iterator[Page]:
        return self._pages

    def __enter__(self) -> PageStream:
        return self

    def __exit__(self, *_: object) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
