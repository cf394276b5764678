"""HTTP caching of lookups: ETag from the data version and the request, 304 on If-None-Match.

The data changes only when a sync run succeeds, so a lookup's answer is fully determined by
(last successful sync run, path, query, effective date). The effective date is part of the tag
because a request without `date=` means "today", which moves at midnight.

The hot single lookups (SHAK, SOR) also keep their recent answers in memory (`ResponseCache`):
reporting systems ask for the same few thousand codes over and over, and between two syncs the
answer cannot change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import Connection
from starlette.responses import Response

from api.database import Database
from sorsync.lookup import DataVersion
from sorsync.lookup.aio import AsyncConn

MAX_AGE_S = 300
MAX_CACHED_BODY = 64 * 1024  # a unit with thousands of children is rare: not worth the memory
# Whatever the entry count: query strings are part of the key, so a client adding junk parameters
# to the largest answers must not be able to grow a worker by more than this.
MAX_CACHE_BYTES = 64 * 1024 * 1024
CACHE_CONTROL = f"public, max-age={MAX_AGE_S}"
JSON = "application/json"


def etag_for(version: DataVersion, request: Request, day: dt.date | None) -> str:
    scope = request.scope  # raw bytes: request.url would parse the URL again
    path = scope.get("raw_path") or scope["path"].encode()
    key = b"%s?%s|%s" % (path, scope["query_string"], str(day).encode())
    digest = hashlib.blake2b(key, digest_size=8).hexdigest()
    return f'"{version.tag}-{digest}"'


def _validators(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": CACHE_CONTROL}


def matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


def json_response(
    body: Any, *, status: int = 200, media_type: str = JSON, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)


def cached_lookup(
    request: Request,
    db: Database,
    day: dt.date | None,
    compute: Callable[[Connection], Any],
    *,
    media_type: str = JSON,
) -> Response:
    """Answer 304 if the client has the current version, else run `compute` (which may raise
    ProblemError) and send its result with ETag and Cache-Control."""
    if_none_match = request.headers.get("if-none-match")

    def work(conn: Connection) -> Response:
        etag = etag_for(db.data_version(conn), request, day)
        if matches(if_none_match, etag):
            return Response(status_code=304, headers=_validators(etag))
        return json_response(compute(conn), media_type=media_type, headers=_validators(etag))

    return db.run(work)


class ResponseCache:
    """The bodies of recent 200 answers by ETag, for one data version at a time (LRU).

    Only answers of a successful sync run are kept: data loaded some other way has no version
    to tell when it changes. A new version empties the cache. Used from the event loop only,
    so it needs no lock.
    """

    def __init__(self, entries: int, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._version: DataVersion | None = None
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, version: DataVersion, etag: str) -> bytes | None:
        if version != self._version:
            return None
        body = self._bodies.get(etag)
        if body is not None:
            self._bodies.move_to_end(etag)
        return body

    def put(self, version: DataVersion, etag: str, body: bytes) -> None:
        if self.entries <= 0 or version.run_id is None or len(body) > MAX_CACHED_BODY:
            return
        if version != self._version:
            self._bodies.clear()
            self._bytes = 0
            self._version = version
        if (old := self._bodies.pop(etag, None)) is not None:
            self._bytes -= len(old)
        self._bodies[etag] = body
        self._bytes += len(body)
        while len(self._bodies) > self.entries or self._bytes > self.max_bytes:
            self._bytes -= len(self._bodies.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._bodies)


async def acached_lookup(
    request: Request,
    db: Database,
    day: dt.date,
    compute: Callable[[AsyncConn], Awaitable[Any]],
    *,
    hit: Callable[[], None],
) -> Response:
    """`cached_lookup` for the hot async routes (on the event loop, no worker thread), with
    answers kept in the app's ResponseCache. `hit` records a lookup answered from the cache
    (`compute` records its own)."""
    if_none_match = request.headers.get("if-none-match")
    cache: ResponseCache = request.app.state.responses

    def known(version: DataVersion, etag: str) -> Response | None:
        """304, or the cached answer, or None when the lookup has to run."""
        if matches(if_none_match, etag):
            return Response(status_code=304, headers=_validators(etag))
        body = cache.get(version, etag)
        if body is None:
            return None
        hit()
        return Response(body, media_type=JSON, headers=_validators(etag))

    # Within the version's TTL a repeated lookup needs no database connection at all.
    version = db.fresh_version()
    if version is not None:
        early = known(version, etag_for(version, request, day))
        if early is not None:
            return early

    async def work(conn: AsyncConn) -> Response:
        version = await db.adata_version(conn)
        etag = etag_for(version, request, day)
        answer = known(version, etag)
        if answer is None:
            body = orjson.dumps(await compute(conn))
            cache.put(version, etag, body)
            answer = Response(body, media_type=JSON, headers=_validators(etag))
        return answer

    return await db.arun(work)
