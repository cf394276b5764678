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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from sqlalchemy import Connection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.database import Database
from api.deps import app_state, parse_date
from api.metrics import Metrics
from sorsync.lookup import DataVersion
from sorsync.lookup.aio import AsyncConn

MAX_AGE_S = 300
MAX_CACHED_BODY = 64 * 1024  # a unit with thousands of children is rare: not worth the memory
# Whatever the entry count: query strings are part of the key, so a client adding junk parameters
# to the largest answers must not be able to grow a worker by more than this.
MAX_CACHE_BYTES = 64 * 1024 * 1024
CACHE_CONTROL = f"public, max-age={MAX_AGE_S}"
JSON = "application/json"


def etag_for(version: DataVersion, scope: Scope, day: dt.date | None) -> str:
    # raw bytes from the ASGI scope: request.url would parse the URL again
    path = scope.get("raw_path") or scope["path"].encode()
    key = b"%s?%s|%s" % (path, scope["query_string"], str(day).encode())
    digest = hashlib.blake2b(key, digest_size=8).hexdigest()
    return f'"{version.tag}-{digest}"'


def _validators(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": CACHE_CONTROL}


def _not_modified(etag: str) -> Response:
    return Response(status_code=304, headers=_validators(etag))


def _answer(body: bytes, etag: str) -> Response:
    return Response(body, media_type=JSON, headers=_validators(etag))


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


def if_none_match_of(scope: Scope) -> str | None:
    """The request's If-None-Match, straight from the ASGI scope (no Headers object built)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"if-none-match":
            return value.decode("latin-1")
    return None


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
    if_none_match = if_none_match_of(request.scope)

    def work(conn: Connection) -> Response:
        etag = etag_for(db.data_version(conn), request.scope, day)
        if matches(if_none_match, etag):
            return _not_modified(etag)
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


@dataclass(frozen=True, slots=True)
class CachedLookup:
    """A hot single lookup (`GET /prefix/{param}[?date=…]`) whose 200 answers are kept in the
    app's ResponseCache. Its route answers through `answer`, and CachedLookups (the middleware)
    through `before_routing`: the ETag, the day and the 304 / cached answer are derived here
    once for both, so a body the middleware serves is the one the route would send.
    """

    kind: str  # the lookup's label in sorsync_lookups_total

    def known(
        self,
        metrics: Metrics,
        cache: ResponseCache,
        version: DataVersion,
        etag: str,
        scope: Scope,
        *,
        routed: bool = True,
    ) -> Response | None:
        """304 if the client has `etag`, else the cached answer, else None (the lookup has to
        run). Before routing (`routed` False) only a request whose answer is cached is known to
        be one the route accepts, so without a body it is the route's to answer."""
        body = cache.get(version, etag)
        if body is None and not routed:
            return None
        if matches(if_none_match_of(scope), etag):
            return _not_modified(etag)
        if body is None:
            return None
        metrics.lookup(self.kind, "found")
        return _answer(body, etag)

    def before_routing(
        self, scope: Scope, db: Database, metrics: Metrics, cache: ResponseCache
    ) -> Response | None:
        """The answer to a request without query string when it needs no route: the cached
        body (or 304) for its path on the default day, while the data version is fresh."""
        version = db.fresh_version()
        if version is None:
            return None
        # The route's day for a request without date=: today.
        etag = etag_for(version, scope, parse_date(None))
        return self.known(metrics, cache, version, etag, scope, routed=False)

    async def answer(
        self, request: Request, day: dt.date, compute: Callable[[AsyncConn], Awaitable[Any]]
    ) -> Response:
        """`cached_lookup` for the hot async routes (on the event loop, no worker thread), with
        answers kept in the ResponseCache. `compute` (which may raise ProblemError) records its
        own lookup metric; an answer from the cache is recorded here."""
        db, metrics = app_state(request)
        cache: ResponseCache = request.app.state.responses
        scope = request.scope
        # Within the version's TTL a repeated lookup needs no database connection at all.
        version = db.fresh_version()
        if version is not None:
            early = self.known(metrics, cache, version, etag_for(version, scope, day), scope)
            if early is not None:
                return early

        async def work(conn: AsyncConn) -> Response:
            version = await db.adata_version(conn)
            etag = etag_for(version, scope, day)
            answer = self.known(metrics, cache, version, etag, scope)
            if answer is None:
                body = orjson.dumps(await compute(conn))
                cache.put(version, etag, body)
                answer = _answer(body, etag)
            return answer

        return await db.arun(work)


class CachedLookups:
    """ASGI middleware that answers a repeated single lookup from the ResponseCache before
    routing.

    On a cache hit, FastAPI's routing and parameter handling would be about half of the
    request's cost (py-spy, cached SOR lookups). Only plain requests are answered here: GET, no
    query string, and a data version within its TTL; how is the route's own CachedLookup's
    (`before_routing`). Everything else, and every miss, goes through the routes, which
    validate the request and fill the cache. So a body found here was built by the same route
    for the same raw path and day.

    `routes` are the cacheable routes (`/prefix/{param}`) with the CachedLookup each answers
    through. A hit puts its route in the scope, so MetricsMiddleware (added after this one, so
    outside it) labels the request as the route would.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        db: Database,
        cache: ResponseCache,
        metrics: Metrics,
        routes: Sequence[tuple[APIRoute, CachedLookup]],
    ) -> None:
        self.app = app
        self.db = db
        self.cache = cache
        self.metrics = metrics
        self.routes: dict[str, tuple[APIRoute, CachedLookup]] = {}
        for route, lookup in routes:
            prefix, _, last = route.path.rpartition("/")
            if not (last.startswith("{") and last.endswith("}")):
                raise ValueError(f"{route.path} does not end in a path parameter")
            self.routes[prefix] = (route, lookup)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            response = self._hit(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _hit(self, scope: Scope) -> Response | None:
        prefix, _, value = scope["path"].rpartition("/")
        target = self.routes.get(prefix)
        if target is None or not value:
            return None
        route, lookup = target
        response = lookup.before_routing(scope, self.db, self.metrics, self.cache)
        if response is not None:
            scope["route"] = route
        return response
