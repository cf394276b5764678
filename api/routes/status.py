"""Replica status for reporting systems: per datatype token, last success, rows; data age."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.caching import json_response
from api.deps import DbDep
from api.routes.common import problem_responses
from api.schemas import StatusResponse
from sorsync.config import Settings, get_settings

router = APIRouter(prefix="/v1", tags=["Status"])


@router.get(
    "/status",
    operation_id="getStatus",
    summary="Replica status and data age",
    response_model=StatusResponse,
    responses=problem_responses(503),
)
def get_status(request: Request, db: DbDep) -> Response:
    """Per replicated datatype: the stored token, when it last synced successfully, how many
    rows it holds and its last error; the data age, and the last (successful) sync run. The
    same report as `sorsync status --json`, plus `data_version`."""
    # Imported on first use: sorsync.sync pulls in the SOAP client, which lookups never need.
    from sorsync.sync.status import status_on

    settings: Settings = request.app.state.settings or get_settings()
    report = db.run(lambda conn: status_on(conn, settings))
    body: dict[str, Any] = report.to_dict()
    ok_run = report.last_ok_run
    body = {"data_version": None if ok_run is None else str(ok_run.id), **body}
    return json_response(body, headers={"Cache-Control": "no-store"})
