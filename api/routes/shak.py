"""SHAK → SOR: one code, or up to 10 000 codes in one request."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api.caching import JSON, CachedLookup
from api.deps import DateQuery, app_state, parse_date
from api.problems import ProblemError, identifier_problem, require_valid
from api.routes.common import LOOKUP_ERRORS, SHAK_PATTERN, not_found, problem_responses
from api.schemas import ResolveRequest, ResolveResponse, ShakResponse, unit_json
from sorsync import identifiers, lookup
from sorsync.lookup.aio import AsyncConn, arun

router = APIRouter(prefix="/v1", tags=["SHAK"])
# GET /v1/shak/{shak} answers through it, and so does api.caching.CachedLookups before routing.
CACHED = CachedLookup("shak")

MAX_CODES = 10_000


@router.get(
    "/shak/{shak}",
    operation_id="getShak",
    summary="Units carrying a SHAK code on a date",
    response_model=ShakResponse,
    responses=LOOKUP_ERRORS,
)
async def get_shak(
    request: Request,
    shak: Annotated[
        str,
        Path(
            description="SHAK code: 4, 6 or 7 characters of 0-9 and A-Z (a-z is read as A-Z).",
            json_schema_extra={"pattern": SHAK_PATTERN},
            examples=["1575"],
        ),
    ],
    date: DateQuery = None,
) -> Response:
    """The unit(s) the SHAK code means on the date, by the back-mapping rules that POST
    /v1/resolve and sor.resolve follow (a unit that inherits the code from its parent is left
    out; several units left: all of them). 404 if none."""
    shak = identifiers.normalise_shak(shak)
    require_valid(shak, identifiers.shak_problem, "invalid-shak", "a SHAK code")
    day = parse_date(date)
    metrics = app_state(request)[1]

    async def compute(conn: AsyncConn) -> dict[str, Any]:
        units = await arun(conn, lookup.resolved("shak", shak, day))
        metrics.lookup("shak", "found" if units else "not_found")
        if not units:
            raise not_found(f"No unit carries SHAK code {shak} on {day}.")
        return {"shak": shak, "date": day, "units": [unit_json(u) for u in units]}

    return await CACHED.answer(request, day, compute)


@router.get("/shak/{shak:path}", include_in_schema=False)
async def get_shak_with_slash(request: Request, shak: str) -> Response:
    """`/v1/shak/25%2F29`: the server decodes %2F before routing, so such a code arrives as two
    path segments that `/shak/{shak}` does not match. It is one malformed code (422 with the
    SHAK rule), not an unknown route; a path with a real slash (`/v1/shak/8001/x`) still is."""
    raw = request.scope.get("raw_path")
    segment = raw.rpartition(b"/shak/")[2] if isinstance(raw, bytes) else b"/"
    if b"/" in segment or not segment:
        raise HTTPException(status_code=404)
    require_valid(shak, identifiers.shak_problem, "invalid-shak", "a SHAK code")
    raise AssertionError("unreachable: no SHAK code contains '/'")


@router.post(
    "/shak/resolve",
    operation_id="resolveShak",
    summary="Resolve many SHAK codes at once",
    response_model=ResolveResponse,
    responses=problem_responses(400, 413, 422, 503),
)
def resolve_shak(request: Request, body: ResolveRequest) -> Response:
    """One result per code, in the order given: `found` (with the unit(s) the code means on
    the date, as GET /v1/shak/{shak} answers), `not_found` or `invalid` (with `detail`).
    Up to 10 000 codes; more → 413. One database round trip whatever the number of codes."""
    if len(body.codes) > MAX_CODES:
        raise ProblemError(
            "too-many-codes",
            f"{len(body.codes)} codes sent; at most {MAX_CODES} per request. Split the batch.",
        )
    day = parse_date(body.date)
    db, metrics = app_state(request)
    # A valid code is answered as normalised (`157501n` → `157501N`); an invalid one is echoed
    # as sent.
    normalised = {code: identifiers.normalise_shak(code) for code in dict.fromkeys(body.codes)}
    codes = [
        norm if identifiers.shak_problem(norm) is None else code
        for code, norm in ((c, normalised[c]) for c in body.codes)
    ]
    problems = {
        code: identifier_problem(code, identifiers.shak_problem) for code in dict.fromkeys(codes)
    }
    valid = [code for code, problem in problems.items() if problem is None]
    found = db.run(lambda conn: lookup.run_steps(conn, lookup.resolve_shak_json(valid, day)))
    # The units arrive as JSON text from PostgreSQL: splice them in rather than parse them.
    # Valid codes are [0-9A-Z] only, so they go into the JSON as they are.
    parts: list[bytes] = []
    counts = {"found": 0, "not_found": 0, "invalid": 0}
    for code in codes:
        problem = problems[code]
        if problem is not None:
            result = {"shak": code, "status": "invalid", "units": [], "detail": problem}
            # The standard library, not orjson: it escapes a lone surrogate ("\ud800", which
            # JSON input may carry) instead of refusing it, so the code is echoed as sent.
            parts.append(json.dumps(result).encode())
            counts["invalid"] += 1
        elif (units := found.get(code)) is not None:
            parts.append(
                b'{"shak":"%s","status":"found","units":%s}' % (code.encode(), units.encode())
            )
            counts["found"] += 1
        else:
            parts.append(b'{"shak":"%s","status":"not_found","units":[]}' % code.encode())
            counts["not_found"] += 1
    for result_kind, n in counts.items():
        if n:
            metrics.lookup("resolve", result_kind, n)
    content = b'{"date":"%s","results":[%s]}' % (day.isoformat().encode(), b",".join(parts))
    return Response(content, media_type=JSON, headers={"Cache-Control": "no-store"})
