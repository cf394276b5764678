"""HTTP caching of lookups: ETag from the data version and the request, 304 on If-None-Match.

The data changes only when a sync run succeeds, so a lookup's answer is fully determined by
(last successful sync run, path, query, effective date). The effective date is part of the tag
because a request without `date=` means "today", which moves at midnight.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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
CACHE_CONTROL = f"public, max-age={MAX_AGE_S}"
JSON = "application/json"


def etag_for(version: DataVersion, request: Request, day: dt.date | None) -> str:
    scope = request.scope  # raw bytes: request.url would parse the URL again
    path = scope.get("raw_path") or scope["path"].encode()
    key = b"%s?%s|%s" % (path, scope["query_string"], str(day).encode())
    digest = hashlib.blake2b(key, digest_size=8).hexdigest()
    return f'"{version.tag}-{digest}"'


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
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        return json_response(compute(conn), media_type=media_type, headers=headers)

    return db.run(work)


async def acached_lookup(
    request: Request,
    db: Database,
    day: dt.date | None,
    compute: Callable[[AsyncConn], Awaitable[Any]],
    *,
    media_type: str = JSON,
) -> Response:
    """`cached_lookup` for async routes (on the event loop, no worker thread)."""
    if_none_match = request.headers.get("if-none-match")

    async def work(conn: AsyncConn) -> Response:
        etag = etag_for(await db.adata_version(conn), request, day)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        return json_response(await compute(conn), media_type=media_type, headers=headers)

    return await db.arun(work)
