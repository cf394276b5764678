"""Ydernummer and EAN/GLN lookups, and unit search with keyset pagination."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from api.caching import cached_lookup
from api.deps import DateQuery, app_state, parse_date
from api.problems import ProblemError, require_valid
from api.routes.common import GLN_PATTERN, LOOKUP_ERRORS, YDER_PATTERN, not_found
from api.schemas import EanResponse, Kind, UnitsPage, YderResponse, unit_json
from sorsync import identifiers, lookup

router = APIRouter(prefix="/v1", tags=["Units"])

MAX_LIMIT = 1000


@router.get(
    "/yder/{ydernummer}",
    operation_id="getYder",
    summary="Units carrying a ydernummer on a date",
    response_model=YderResponse,
    responses=LOOKUP_ERRORS,
)
def get_yder(
    request: Request,
    ydernummer: Annotated[
        str,
        Path(
            description="Ydernummer, 1-9 digits; matched with and without leading zeros.",
            json_schema_extra={"pattern": YDER_PATTERN},
            examples=["002001"],
        ),
    ],
    date: DateQuery = None,
) -> Response:
    """The unit(s) the ydernummer means on the date (`019062` and `19062` are the same number;
    one ydernummer may belong to several units), by the rules of POST /v1/resolve. 404 if
    none."""
    require_valid(ydernummer, identifiers.ydernummer_problem, "invalid-ydernummer", "a ydernummer")
    day = parse_date(date)
    return _units_by(
        request,
        day,
        ("yder", "ydernummer", ydernummer),
        lookup.resolved("ydernummer", ydernummer, day),
        f"No unit carries ydernummer {ydernummer} on {day}.",
    )


@router.get(
    "/ean/{gln}",
    operation_id="getEan",
    summary="Units with an EAN/GLN location number on a date",
    response_model=EanResponse,
    responses=LOOKUP_ERRORS,
)
def get_ean(
    request: Request,
    gln: Annotated[
        str,
        Path(
            description="GLN (EAN location number): 13 digits with a GS1 check digit.",
            json_schema_extra={"pattern": GLN_PATTERN},
            examples=["5790001003432"],
        ),
    ],
    date: DateQuery = None,
) -> Response:
    """The unit(s) the GLN means on the date, by the rules of POST /v1/resolve: a child that
    inherits its parent's EAN is left out, the parent is the answer. 404 if none."""
    require_valid(gln, identifiers.gln_problem, "invalid-gln", "a GLN")
    day = parse_date(date)
    return _units_by(
        request,
        day,
        ("ean", "gln", gln),
        lookup.resolved("ean", gln, day),
        f"No unit has GLN {gln} on {day}.",
    )


@router.get(
    "/units",
    operation_id="searchUnits",
    summary="Search units valid on a date",
    response_model=UnitsPage,
    responses=LOOKUP_ERRORS,
)
def search_units(
    request: Request,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="Case-insensitive substring of the name.",
            examples=["sygehus"],
        ),
    ] = None,
    kind: Annotated[Kind | None, Query(description="Only units of this kind.")] = None,
    postcode: Annotated[
        str | None,
        Query(min_length=1, max_length=10, description="Only units with this postcode."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, 1-1000.")] = 100,
    after: Annotated[
        str | None,
        Query(
            description="Keyset cursor: the `next` value of the previous page (a SOR id).",
            json_schema_extra={"pattern": r"^[0-9]{1,18}$"},
        ),
    ] = None,
    date: DateQuery = None,
) -> Response:
    """Units valid on the date matching all filters, ordered by SOR id (one version each).
    Page with `after` = the previous page's `next` until `next` is null."""
    if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise ProblemError("invalid-parameter", f"after {after!r} must be a `next` value (digits).")
    for name, value in (("q", q), ("postcode", postcode)):
        if value is not None and not value.isprintable():
            raise ProblemError("invalid-parameter", f"{name} must not contain control characters.")
    day = parse_date(date)
    db, _ = app_state(request)
    cursor = None if after is None else int(after)
    query = lookup.search(day=day, q=q, kind=kind, postcode=postcode, limit=limit, after=cursor)

    def compute(conn: Any) -> dict[str, Any]:
        page = lookup.run(conn, query)
        return {
            "items": [unit_json(u) for u in page.items],
            "next": None if page.next_after is None else str(page.next_after),
        }

    return cached_lookup(request, db, day, compute)


def _units_by(
    request: Request,
    day: dt.date,
    what: tuple[str, str, str],
    query: lookup.Query[list[lookup.Unit]],
    none_found: str,
) -> Response:
    """A cached number → units lookup: (metric kind, response key, the number as given)."""
    kind, key, value = what
    db, metrics = app_state(request)

    def compute(conn: Any) -> dict[str, Any]:
        units = lookup.run(conn, query)
        metrics.lookup(kind, "found" if units else "not_found")
        if not units:
            raise not_found(none_found)
        return {key: value, "date": day, "units": [unit_json(u) for u in units]}

    return cached_lookup(request, db, day, compute)
