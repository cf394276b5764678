"""SOR id lookups: the unit on a date with its parent chain and children; its history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.caching import CachedLookup, cached_lookup
from api.deps import DateQuery, app_state, parse_date
from api.routes.common import LOOKUP_ERRORS, SorIdPath, not_found, sor_id_int
from api.schemas import HistoryResponse, SorResponse, unit_json
from sorsync import lookup
from sorsync.lookup.aio import AsyncConn, arun

router = APIRouter(prefix="/v1", tags=["SOR"])
# GET /v1/sor/{sor_id} answers through it, and so does api.caching.CachedLookups before routing.
CACHED = CachedLookup("sor")


@router.get(
    "/sor/{sor_id}",
    operation_id="getSorUnit",
    summary="A SOR unit on a date, with ancestors and children",
    response_model=SorResponse,
    responses=LOOKUP_ERRORS,
)
async def get_sor(request: Request, sor_id: SorIdPath, date: DateQuery = None) -> Response:
    """The version of the unit valid on the date, its `ancestors` (nearest first, up to the
    hospital or practice) and the SOR ids of its `children` valid that day."""
    key = sor_id_int(sor_id)
    day = parse_date(date)
    metrics = app_state(request)[1]

    async def compute(conn: AsyncConn) -> dict[str, Any]:
        tree = await arun(conn, lookup.unit_tree(key, day))
        metrics.lookup("sor", "found" if tree else "not_found")
        if tree is None:
            if await arun(conn, lookup.sor_id_known(key)):
                raise not_found(
                    f"SOR unit {sor_id} is not valid on {day}; "
                    f"its versions are at /v1/sor/{sor_id}/history."
                )
            raise not_found(f"No SOR unit has id {sor_id}.")
        return {
            **unit_json(tree.unit),
            "date": day,
            "ancestors": [unit_json(u) for u in tree.ancestors],
            "children": [str(c) for c in tree.children],
        }

    return await CACHED.answer(request, day, compute)


@router.get(
    "/sor/{sor_id}/history",
    operation_id="getSorHistory",
    summary="Every version of a SOR unit",
    response_model=HistoryResponse,
    responses=LOOKUP_ERRORS,
)
def get_history(request: Request, sor_id: SorIdPath) -> Response:
    """Every version of the unit the replica holds, oldest first. 404 if the id is unknown."""
    key = sor_id_int(sor_id)
    db, metrics = app_state(request)

    def compute(conn: Any) -> dict[str, Any]:
        versions = lookup.run(conn, lookup.history(key))
        metrics.lookup("history", "found" if versions else "not_found")
        if not versions:
            raise not_found(f"No SOR unit has id {sor_id}.")
        return {"sor_id": sor_id, "versions": [unit_json(u) for u in versions]}

    return cached_lookup(request, db, None, compute)
