"""SHAK → SOR: one code, or up to 10 000 codes in one request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from api.caching import cached_lookup, json_response
from api.deps import DateQuery, app_state, parse_date
from api.problems import ProblemError, identifier_problem, require_valid
from api.routes.common import LOOKUP_ERRORS, SHAK_PATTERN, not_found, problem_responses
from api.schemas import ResolveRequest, ResolveResponse, ShakResponse, unit_json
from sorsync import identifiers, lookup

router = APIRouter(prefix="/v1", tags=["SHAK"])

MAX_CODES = 10_000


@router.get(
    "/shak/{shak}",
    operation_id="getShak",
    summary="Units carrying a SHAK code on a date",
    response_model=ShakResponse,
    responses=LOOKUP_ERRORS,
)
def get_shak(
    request: Request,
    shak: Annotated[
        str,
        Path(
            description="SHAK code: 4, 6 or 7 characters of 0-9 and A-Z.",
            json_schema_extra={"pattern": SHAK_PATTERN},
            examples=["8001"],
        ),
    ],
    date: DateQuery = None,
) -> Response:
    """All units that carry the SHAK code on the date (SHAK → SOR is 1:N). 404 if none."""
    require_valid(shak, identifiers.shak_problem, "invalid-shak", "a SHAK code")
    day = parse_date(date)
    db, metrics = app_state(request)

    def compute(conn: Any) -> dict[str, Any]:
        units = lookup.by_shak(conn, shak, day)
        metrics.lookup("shak", "found" if units else "not_found")
        if not units:
            raise not_found(f"No unit carries SHAK code {shak} on {day}.")
        return {"shak": shak, "date": day, "units": [unit_json(u) for u in units]}

    return cached_lookup(request, db, day, compute)


@router.post(
    "/shak/resolve",
    operation_id="resolveShak",
    summary="Resolve many SHAK codes at once",
    response_model=ResolveResponse,
    responses=problem_responses(400, 413, 422, 503),
)
def resolve_shak(request: Request, body: ResolveRequest) -> Response:
    """One result per code, in the order given: `found` (with the units valid on the date),
    `not_found` or `invalid` (with `detail`). Up to 10 000 codes; more → 413. One database
    round trip whatever the number of codes."""
    if len(body.codes) > MAX_CODES:
        raise ProblemError(
            "too-many-codes",
            f"{len(body.codes)} codes sent; at most {MAX_CODES} per request. Split the batch.",
        )
    day = parse_date(body.date)
    db, metrics = app_state(request)
    problems = {
        code: identifier_problem(code, identifiers.shak_problem)
        for code in dict.fromkeys(body.codes)
    }
    valid = [code for code, problem in problems.items() if problem is None]
    found = db.run(lambda conn: lookup.resolve_shak(conn, valid, day))
    rendered = {code: [unit_json(u) for u in units] for code, units in found.items()}
    results: list[dict[str, Any]] = []
    counts = {"found": 0, "not_found": 0, "invalid": 0}
    for code in body.codes:
        problem = problems[code]
        if problem is not None:
            results.append({"shak": code, "status": "invalid", "units": [], "detail": problem})
            counts["invalid"] += 1
        elif code in rendered:
            results.append({"shak": code, "status": "found", "units": rendered[code]})
            counts["found"] += 1
        else:
            results.append({"shak": code, "status": "not_found", "units": []})
            counts["not_found"] += 1
    for result, n in counts.items():
        if n:
            metrics.lookup("resolve", result, n)
    return json_response({"date": day, "results": results}, headers={"Cache-Control": "no-store"})
