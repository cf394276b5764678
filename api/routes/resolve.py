"""POST /v1/resolve: (code, kind, date) items in bulk, as JSON or streamed as CSV or NDJSON.

The rules are the SQL function sor.resolve's (sorsync/lookup/resolve.py, docs/back-mapping.md).
A JSON request holds up to MAX_ITEMS items and gets one JSON answer. A CSV or NDJSON request may
hold any number: it is read, answered and written CHUNK items at a time (`_Chunks`: two chunks on
the database while the next is read), so memory stays bounded whatever its size. Its answer
starts before the whole body is read; a problem after that (a body cut off, bytes that are not
UTF-8, the database gone) is the answer's last row or line (docs/back-mapping.md, "Streams").
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import datetime as dt
import io
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.caching import JSON
from api.database import Database
from api.deps import app_state, parse_date
from api.metrics import Metrics
from api.problems import ProblemError
from api.routes.common import problem_responses
from api.schemas import BulkResolveRequest, BulkResolveResponse
from sorsync.logs import get_logger
from sorsync.lookup import aio
from sorsync.lookup import resolve as rs

router = APIRouter(prefix="/v1", tags=["SHAK"])
log = get_logger(__name__)

MAX_ITEMS = 10_000
# A JSON batch of at least 2 × MIN_PART distinct items is asked in JSON_PARTS queries at once
# (`_resolved`); a smaller one in one query, where a second round trip would cost more. On the
# two-core host 10 000 items took p50 162-235 ms in 2 parts against 217-317 ms in one, and 4
# parts were slower than 2 (docs/performance.md).
JSON_PARTS = 2
MIN_PART = 1_000
CSV_TYPE = "text/csv"
NDJSON_TYPE = "application/x-ndjson"
STREAMED = (CSV_TYPE, NDJSON_TYPE)
MAX_LINE = 1 << 20  # one CSV record or NDJSON line; a longer one is an error, not buffered
# The codes whose timelines a stream keeps (rs.TimelineCache). Each costs about 1 KB: 136 000 of
# them took a worker to 279 MB on bench/resolve_bench.py's stream, so 150 000 stays in 300 MB.
STREAM_CACHE = 150_000
# Chunks of one stream on the database at once, each on a connection of its own, so that
# PostgreSQL answers a stream on two cores, as it does a JSON batch in JSON_PARTS.
IN_FLIGHT = 2
INPUT_COLUMNS = ("code", "kind", "date")
_TEXT = {"schema": {"type": "string"}}

OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": "#/components/schemas/BulkResolveRequest"}},
            CSV_TYPE: {
                **_TEXT,
                "example": "code,kind,date\n800110,shak,2021-06-01\n5790000000012,ean,\n",
            },
            NDJSON_TYPE: {**_TEXT, "example": '{"code": "800110", "date": "2021-06-01"}\n'},
        },
    }
}


def schema_components() -> dict[str, Any]:
    """The JSON request's schema and the models it refers to, for the OpenAPI components (the
    body is read by hand, so FastAPI does not add them itself)."""
    schema = BulkResolveRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})
    return {"BulkResolveRequest": schema, **defs}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", JSON).split(";")[0].strip().lower() or JSON


@router.post(
    "/resolve",
    operation_id="resolve",
    summary="Back-map many (code, kind, date) items: JSON, or CSV / NDJSON streamed",
    response_model=BulkResolveResponse,
    responses={
        200: {"content": {CSV_TYPE: _TEXT, NDJSON_TYPE: _TEXT}},
        **problem_responses(400, 413, 415, 422, 503),
    },
    openapi_extra=OPENAPI_BODY,
)
async def resolve(request: Request) -> Response:
    """One answer per item, in order: `found` (the unit), `ambiguous` (several units and no
    rule picks one), `not_found` or `invalid` (with the single lookup's `detail`). Kinds:
    `shak` (default), `sor`, `ean`, `ydernummer`; the date defaults to the request's `date`,
    else today. JSON: up to 10 000 items (more → 413). `text/csv` (columns code, kind, date)
    and `application/x-ndjson` (one item a line): any number, answered in the same format as
    they arrive; a problem after the answer has begun is its last row or line."""
    kind = media_type(request)
    db, metrics = app_state(request)
    default_day = parse_date(request.query_params.get("date"))
    default_kind = request.query_params.get("kind")
    if kind == JSON:
        return await _json(request, db, metrics, default_day)
    if kind not in STREAMED:
        raise ProblemError(
            "unsupported-media-type",
            f"Content-Type {kind!r} is not accepted here; send application/json, {CSV_TYPE}"
            f" or {NDJSON_TYPE}.",
        )
    blocks = text_blocks(request)
    if kind == CSV_TYPE:
        body: AsyncIterator[bytes] = await csv_stream(
            blocks, db, metrics, default_kind, default_day
        )
    else:
        body = ndjson_stream(blocks, db, metrics, default_kind, default_day)
    return DuplexResponse(body, media_type=kind, headers={"Cache-Control": "no-store"})


class DuplexResponse(StreamingResponse):
    """A streamed answer whose body iterator reads the request body as it goes. Starlette's
    StreamingResponse (before ASGI 2.4) also reads `receive` itself, to notice a disconnect,
    and so would take the body's chunks from the iterator; here a disconnect reaches the
    iterator as ClientDisconnect instead (text_blocks)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


async def _json(request: Request, db: Database, metrics: Metrics, default_day: dt.date) -> Response:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProblemError(
            "malformed-json", "The request body is not valid JSON; send a JSON object."
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ProblemError(
            "invalid-body", 'The body must be a JSON object with a list "items" of items.'
        )
    given = body["items"]
    if len(given) > MAX_ITEMS:
        raise ProblemError(
            "too-many-codes",
            f"{len(given)} items sent; at most {MAX_ITEMS} in one JSON request. Split the batch,"
            f" or stream them as {CSV_TYPE} or {NDJSON_TYPE}.",
        )
    if (day := body.get("date")) is not None:
        if not isinstance(day, str):
            raise ProblemError("invalid-date", f"date {day!r} is not an ISO date YYYY-MM-DD.")
        default_day = parse_date(day)
    items = [_from_object(obj, None, default_day, n) for n, obj in enumerate(given, start=1)]
    answers = rs.answer(items, await _resolved(db, rs.distinct_keys(items)))
    _count(metrics, answers)
    content = orjson.dumps({"results": [rs.answer_json(a) for a in answers]})
    return Response(content, media_type=JSON, headers={"Cache-Control": "no-store"})


async def _resolved(db: Database, keys: list[rs.Key]) -> dict[rs.Key, rs.Answer]:
    """`keys` answered in up to JSON_PARTS queries at once, each on a connection of its own, so
    that PostgreSQL answers a large batch on more than one core; each key's answer is its own,
    so the parts give what one query would."""
    if not keys:
        return {}  # every item invalid: nothing to ask
    parts = min(JSON_PARTS, len(keys) // MIN_PART) or 1
    size = -(-len(keys) // parts)
    queries = [rs.resolve_query(keys[at : at + size]) for at in range(0, len(keys), size)]
    found: dict[rs.Key, rs.Answer] = {}
    for part in await asyncio.gather(*(db.arun(partial(aio.arun, query=q)) for q in queries)):
        found.update(part)
    return found


def _from_object(obj: Any, default_kind: str | None, default_day: dt.date, n: int) -> rs.Item:
    if not isinstance(obj, dict):
        return rs.Item("", "", None, f"item {n} is not a JSON object with a string code.")
    return rs.item(obj.get("kind", default_kind), obj.get("code"), obj.get("date"), default_day)


def _count(metrics: Metrics, answers: list[rs.Answer]) -> None:
    for status, n in rs.counts(answers).items():
        if n:
            metrics.lookup("bulk", status, n)


# --- streams ------------------------------------------------------------------------------------


class StreamError(Exception):
    """The stream cannot go on; the message says why, for the answer's last row or line."""


async def text_blocks(request: Request) -> AsyncIterator[str]:
    """The body as UTF-8 text in blocks of whole records: each block ends with a line break
    that is not inside a quoted CSV field (the last block may end without one)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    try:
        async for chunk in request.stream():
            pending += decoder.decode(chunk)
            cut = pending.rfind("\n") + 1
            # An odd number of quotes: the last line break is inside a quoted field.
            while cut and pending.count('"', 0, cut) % 2:
                cut = pending.rfind("\n", 0, cut - 1) + 1
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
            if len(pending) > MAX_LINE:
                raise StreamError(f"a record is longer than {MAX_LINE} characters")
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise StreamError(
            f"the body is not valid UTF-8 (byte 0x{exc.object[exc.start]:02X}); send UTF-8"
        ) from None
    except ClientDisconnect:
        raise StreamError(
            "the request body was cut off before its end (the client disconnected); the rows"
            " before this one were answered, the rest were not read"
        ) from None
    if pending:
        yield pending


class _Chunks:
    """A stream's chunks answered IN_FLIGHT at a time, in order: PostgreSQL answers them on its
    cores while this process parses the next chunk and writes the rows of the oldest."""

    def __init__(
        self, db: Database, metrics: Metrics, render: Callable[[list[rs.Answer]], bytes]
    ) -> None:
        self._db, self._metrics, self._render = db, metrics, render
        self._cache = rs.TimelineCache(limit=STREAM_CACHE)
        self._pending: deque[asyncio.Task[list[rs.Answer]]] = deque()

    async def _answer(self, items: list[rs.Item]) -> list[rs.Answer]:
        cache = self._cache
        answers = await self._db.arun(
            lambda conn: aio.arun_steps(conn, rs.resolve_cached(items, cache))
        )
        _count(self._metrics, answers)
        return answers

    async def send(self, items: list[rs.Item]) -> bytes:
        """Start answering `items`; the rendered answers of the oldest chunk when IN_FLIGHT
        are on the database already (rendered while the others are)."""
        done = b""
        if len(self._pending) >= IN_FLIGHT:
            done = self._render(await self._pending.popleft())
        self._pending.append(asyncio.create_task(self._answer(items)))
        return done

    async def finish(self) -> bytes:
        """The rendered answers of the chunks still on the database, in order."""
        out = []
        while self._pending:
            out.append(self._render(await self._pending.popleft()))
        return b"".join(out)

    def cancel(self) -> None:
        """The stream ends early (an error, the client gone): its chunks in flight are dropped,
        and a failure one already had is taken (asyncio would log it as never retrieved)."""
        while self._pending:
            pending = self._pending.popleft()
            pending.cancel()
            pending.add_done_callback(lambda task: task.cancelled() or task.exception())


def _sniff_delimiter(header: str) -> str:
    return max(",;\t|", key=header.count)


async def csv_stream(
    blocks: AsyncIterator[str],
    db: Database,
    metrics: Metrics,
    default_kind: str | None,
    default_day: dt.date,
) -> AsyncIterator[bytes]:
    """Read the header first (a bad one is a 422 before any answer), then stream the rest."""
    first = ""
    try:
        async for block in blocks:
            first += block
            if first.strip():
                break
    except StreamError as exc:
        raise ProblemError("invalid-body", f"{exc}.") from None
    header_line = first.lstrip().split("\n", 1)[0]
    delimiter = _sniff_delimiter(header_line)
    # Strict, as every later block: a row that breaks the quoting ends the stream with an error
    # row wherever it is, rather than being read one way in the first block and another later.
    rows = csv.reader(io.StringIO(first), delimiter=delimiter, strict=True)
    try:
        header = [name.strip().lower() for name in next(rows, [])]
    except csv.Error as exc:
        raise ProblemError("invalid-body", f"The CSV header cannot be read: {exc}.") from None
    if "code" not in header:
        raise ProblemError(
            "invalid-body",
            f"The CSV header {header_line.strip()[:200]!r} has no column 'code'; the first"
            " row names the columns: code, and optionally kind and date.",
        )
    where = {name: header.index(name) for name in INPUT_COLUMNS if name in header}
    return _csv_answers(rows, blocks, where, delimiter, db, metrics, default_kind, default_day)


async def _csv_answers(
    rest: Iterable[list[str]],
    blocks: AsyncIterator[str],
    where: dict[str, int],
    delimiter: str,
    db: Database,
    metrics: Metrics,
    default_kind: str | None,
    default_day: dt.date,
) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow([*INPUT_COLUMNS, *rs.CSV_COLUMNS])
    code_at, kind_at, date_at = where["code"], where.get("kind"), where.get("date")

    def field(row: list[str], at: int | None) -> str | None:
        return row[at] if at is not None and at < len(row) else None

    def parse(row: list[str]) -> rs.Item:
        return rs.item(
            field(row, kind_at) or default_kind, field(row, code_at), field(row, date_at),
            default_day,
        )  # fmt: skip

    def rows_of(answers: list[rs.Answer]) -> bytes:
        for a in answers:
            it = a.item
            writer.writerow([it.code, it.kind, it.date_shown or "", *rs.answer_cells(a)])
        data = out.getvalue().encode()
        out.seek(0)
        out.truncate()
        return data

    async def row_blocks() -> AsyncIterator[Iterable[list[str]]]:
        # A block's rows at a time, not a row at a time: an async generator's step per row
        # cost more than reading the row.
        yield rest
        async for block in blocks:
            yield csv.reader(io.StringIO(block), delimiter=delimiter, strict=True)

    chunks = _Chunks(db, metrics, rows_of)
    items: list[rs.Item] = []
    try:
        try:
            async for rows in row_blocks():
                try:
                    for row in rows:
                        if not "".join(row).strip():
                            continue  # a blank line
                        items.append(parse(row))
                        if len(items) >= rs.CHUNK:
                            yield await chunks.send(items)  # the header first
                            items = []
                except csv.Error as exc:
                    raise StreamError(f"the CSV cannot be read on from here: {exc}") from None
        except StreamError:
            # The rows read before the problem are answered first: the error row says
            # every row above it was answered.
            if items:
                yield await chunks.send(items)
            yield await chunks.finish()
            raise
        if items:
            yield await chunks.send(items)
        yield await chunks.finish()
    except Exception as exc:
        detail = _stream_problem(exc, "row")
        writer.writerow(["", "", "", "error", *[""] * (len(rs.CSV_COLUMNS) - 2), detail])
        yield rows_of([])
    finally:
        chunks.cancel()


def _stream_problem(exc: Exception, what: str) -> str:
    """The last row's or line's text for a problem that stops a stream (logged)."""
    if isinstance(exc, StreamError):
        log.warning("resolve stream stopped", reason=str(exc))
        return f"stopped: {exc}."
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        log.warning("resolve stream stopped: database", error=type(exc).__name__)
        return (
            f"stopped: the database cannot be reached right now; the {what}s before this one"
            " were answered. Send the rest again shortly."
        )
    log.error("resolve stream failed", exc_info=exc)
    return f"stopped: something went wrong on our side (logged); the {what}s before were answered."


# The code of a line that is not JSON, if it can be read from it (to answer that line by it).
_RAW_CODE = re.compile(r'"code"\s*:\s*"((?:[^"\\]|\\.)*)"')
NDJSON_EXAMPLE = '{"code": "800110", "kind": "shak", "date": "2021-06-01"}'


def _unreadable_line(line: str, line_no: int, what: str) -> rs.Item:
    """The answer to a line that is not a JSON object: its code as written if one can be read
    (else ""), and how to write the line."""
    match = _RAW_CODE.search(line)
    code = match.group(1) if match else ""
    return rs.Item(
        "",
        code,
        None,
        f"line {line_no} {what}; write one JSON object a line, e.g. {NDJSON_EXAMPLE}.",
    )


async def ndjson_stream(
    blocks: AsyncIterator[str],
    db: Database,
    metrics: Metrics,
    default_kind: str | None,
    default_day: dt.date,
) -> AsyncIterator[bytes]:
    dumps: Callable[[Any], bytes] = orjson.dumps
    line_no = 0

    def lines_of(answers: list[rs.Answer]) -> bytes:
        return b"".join(dumps(rs.answer_json(a)) + b"\n" for a in answers)

    chunks = _Chunks(db, metrics, lines_of)

    items: list[rs.Item] = []
    try:
        try:
            async for block in blocks:
                for line in block.splitlines():
                    line_no += 1
                    if not line.strip():
                        continue
                    try:
                        obj = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        items.append(_unreadable_line(line, line_no, f"is not JSON ({exc})"))
                    else:
                        if isinstance(obj, dict):
                            items.append(_from_object(obj, default_kind, default_day, line_no))
                        else:
                            items.append(_unreadable_line(line, line_no, "is not a JSON object"))
                    if len(items) >= rs.CHUNK:
                        yield await chunks.send(items)
                        items = []
        except StreamError:
            # As in _csv_answers: the lines read before the problem are answered first.
            if items:
                yield await chunks.send(items)
            yield await chunks.finish()
            raise
        if items:
            yield await chunks.send(items)
        yield await chunks.finish()
    except Exception as exc:
        detail = _stream_problem(exc, "line")
        yield dumps({"error": {"line": line_no + 1, "detail": detail}}) + b"\n"
    finally:
        chunks.cancel()
