"""The page loop on the KRS side: ask for pages after a token until one comes back empty.

`fetch_pages` may fetch the next page in a background thread while the caller stores the
current one, so the database and the network overlap. With the KRS client (a `SplitSource`)
the fetch thread also asks for page N+1 while page N is parsed, using the last token scanned
from N's raw bytes and kept only once the parsed page confirms it. Pages are handed over
strictly in order and at most three are held at a time (one waiting, one being parsed, one raw
answer ahead), whatever the feed's size. A run's cancellation (sorsync.sync.cancel) is checked
before each request and while the next page is awaited, so a stop does not wait for the feed.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.krs.client import Answer
from sorsync.krs.errors import DgwsFault
from sorsync.krs.feed import Page
from sorsync.sync.cancel import Cancellation

if TYPE_CHECKING:
    from psycopg.sql import Composable


class PageSource(Protocol):
    """Anything that answers KRS `replicate` calls: the KRS client, or a test double."""

    def replicate(self, datatype: Datatype, offset: str, max_records: int) -> Page: ...


@runtime_checkable
class SplitSource(Protocol):
    """A source whose calls come in halves (the KRS client): send, then parse the answer."""

    def send(self, dt: Datatype, offset: str, max_records: int) -> Answer: ...

    def parse(self, answer: Answer) -> Page: ...

    def finish(self, answer: Answer) -> Page: ...


class FeedError(Exception):
    """The feed broke a paging rule sorsync relies on (the message says what to do)."""


class SourceDataError(Exception):
    """A source's data cannot be read (a broken export file; the message names the file and
    line and says what to do). Like FeedError, nothing of the run is applied."""


@runtime_checkable
class SnapshotSource(Protocol):
    """A source that is a complete dataset, not a feed (the SOR2 file export, sorsync.files):
    it hands over every record of a datatype in pages, with PIDs and tokens of its own, and is
    only ever applied as a full sync. There is no offset to continue from."""

    def snapshot_pages(self, dt: Datatype, page_size: int) -> Iterator[Page]: ...

    def natural_key(self, dt: Datatype) -> Composable | None:
        """SQL over a row `r` that names a record for people (the reconciliation's examples)."""


def check_page(dt: Datatype, offset: str, page: Page, max_records: int) -> None:
    """Refuse a page that would make the loop go wrong: too long, or not moving forward.

    Tokens must strictly increase in (ModifiedDate, PID) order; a server that answers the same
    page again would otherwise be asked forever.
    """
    if len(page) > max_records:
        raise FeedError(
            f"KRS sent {len(page)} records for {dt.key} where at most {max_records} were"
            " asked for; the server does not follow the KRS paging rules — report it"
        )
    previous = offset.strip().rjust(20, "0")
    # COPY-ready rows were checked in order as they were made: only the first is left to check.
    tokens = [page.copy_rows.first_token] if page.copy_rows else [e.token for e in page.entries]
    for token in tokens:
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


def _check(cancel: Cancellation | None) -> None:
    if cancel is not None:
        cancel.check()


def _fetch_all(
    source: PageSource,
    dt: Datatype,
    offset: str,
    page_size: int,
    cancel: Cancellation | None = None,
) -> Iterator[Page]:
    token = offset
    while True:
        _check(cancel)
        page = source.replicate(dt, token, page_size)
        check_page(dt, token, page, page_size)
        if page.last_token is None:
            return
        yield page
        token = page.last_token


# The token in an entry's atom:id, `…/<datatype>/vN/<20+ digits>` up to the closing tag. Only the
# datatype is matched: what precedes it differs between register versions (docs/sor2.md).
_ID_TOKEN = re.compile(rb"[0-9]{1,3}/([0-9]{20,})<")


def scan_last_token(content: bytes, dt: Datatype, after: str) -> str | None:
    """The last entry's token, found in the raw answer without parsing it; None when unsure.

    Only a guess to ask for the next page early: the parsed page must confirm it.
    """
    marker = f"/{dt.datatype}/v".encode()
    at = content.rfind(marker)
    if at < 0:
        return None
    found = _ID_TOKEN.match(content, at + len(marker), at + len(marker) + 64)
    if found is None:
        return None
    token = found.group(1).decode("ascii")
    try:
        if wire.split_token(token) <= wire.split_token(after):
            return None
    except ValueError:
        return None
    return token


def _fetch_ahead(
    source: SplitSource,
    dt: Datatype,
    offset: str,
    page_size: int,
    cancel: Cancellation | None = None,
) -> Iterator[Page]:
    """Like `_fetch_all`, but page N+1 is asked for while page N is parsed.

    The early request uses the last token scanned from page N's raw bytes; it is used only when
    the parsed page N ends on that very token, and its outcome (page or error) is handed on
    exactly where the plain loop would have made that call. HTTP stays on this thread (a
    requests session is not thread-safe); only the pure parse runs on the helper thread.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sorsync-parse")
    try:
        token = offset
        _check(cancel)
        answer = source.send(dt, token, page_size)
        while True:
            guess = scan_last_token(answer.content, dt, token) if answer.status == 200 else None
            ahead: Answer | None = None
            ahead_error: Exception | None = None
            if guess is None:
                page = source.finish(answer)
            else:
                parsed: Future[Page] = pool.submit(source.parse, answer)
                try:
                    _check(cancel)
                    ahead = source.send(dt, guess, page_size)
                except Exception as exc:  # raised later, where the plain loop would meet it
                    ahead_error = exc
                try:
                    page = parsed.result()
                except DgwsFault:
                    # May need an ID card renewal, which sends: do it here, drop the guess.
                    guess = None
                    page = source.finish(answer)
            check_page(dt, token, page, page_size)
            if page.last_token is None:
                return
            yield page
            token = page.last_token
            if guess is not None and token == guess:
                if ahead_error is not None:
                    raise ahead_error
                assert ahead is not None
                answer = ahead
            else:
                _check(cancel)
                answer = source.send(dt, token, page_size)
    finally:
        pool.shutdown(wait=False)


_END = object()


class _Prefetcher:
    def __init__(self, pages: Iterator[Page], cancel: Cancellation | None = None) -> None:
        self._pages = pages
        self._cancel = cancel
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
            try:
                # Polled, so a cancelled run need not wait for the page in flight.
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                _check(self._cancel)
                continue
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
        cancel: Cancellation | None = None,
    ) -> None:
        if not 1 <= page_size <= wire.MAX_RECORDS:
            raise ValueError(f"page_size must be 1..{wire.MAX_RECORDS}, not {page_size}")
        if prefetch and isinstance(source, SplitSource):
            pages = _fetch_ahead(source, dt, offset, page_size, cancel)
        else:
            pages = _fetch_all(source, dt, offset, page_size, cancel)
        self._prefetcher = _Prefetcher(pages, cancel) if prefetch else None
        self._pages: Iterator[Page] = iter(self._prefetcher) if self._prefetcher else pages

    def __iter__(self) -> Iterator[Page]:
        return self._pages

    def __enter__(self) -> PageStream:
        return self

    def __exit__(self, *_: object) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
