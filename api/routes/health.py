"""Liveness, readiness and Prometheus metrics (not in the OpenAPI document)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from api.caching import json_response
from api.deps import DbDep, MetricsDep
from api.problems import PROBLEM_TYPES, problem_response
from sorsync.db import migrate
from sorsync.db.replication import replication
from sorsync.logs import get_logger

router = APIRouter(include_in_schema=False)
log = get_logger(__name__)


@router.get("/livez")
async def livez() -> Response:
    """The process is up; nothing else is checked (a database outage must not restart it)."""
    return json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz")
def readyz(request: Request, db: DbDep) -> Response:
    """Ready when the database answers and its schema is at the migration head. A dead pooled
    connection is retried on a fresh one (`Database.run`), so this recovers by itself when the
    database is back."""
    try:
        at_head = db.run(migrate.revision_of) == migrate.head_revision()
    except DBAPIError as exc:
        log.warning("not ready: database unreachable", error=type(exc).__name__)
        return problem_response(
            request,
            PROBLEM_TYPES["not-ready"],
            "The database cannot be reached; lookups would fail. Check SORSYNC_DATABASE_URL "
            "and that PostgreSQL is running.",
            headers={"Retry-After": "5"},
        )
    if not at_head:
        return problem_response(
            request,
            PROBLEM_TYPES["not-ready"],
            f"The database schema is not at revision {migrate.head_revision()}; "
            "run `sorsync db upgrade`.",
        )
    return json_response({"status": "ready"}, headers={"Cache-Control": "no-store"})


@router.get("/metrics")
def metrics_endpoint(db: DbDep, metrics: MetricsDep) -> Response:
    """Prometheus text format; refreshes the data-age gauge from the database first."""
    try:
        age, repl = db.run(
            lambda conn: (
                db.data_version(conn).age_seconds(),
                replication(conn, conn.execute(text("SELECT now()")).scalar_one()),
            )
        )
        if age is not None:
            metrics.data_age.set(age)
        lag = 0.0 if repl.role == "primary" else repl.lag_seconds
        metrics.replication_lag.set(-1 if lag is None else lag)
    except DBAPIError:
        pass  # scrape the rest anyway; the request counters show the outage
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
