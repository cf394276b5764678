"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

import sorsync
from api import docs, problems
from api.caching import CachedLookups, ResponseCache
from api.database import Database
from api.methods import AllowedMethods
from api.metrics import MetricsMiddleware, make_metrics
from api.problems import FHIR_JSON, PROBLEM_JSON
from api.routes import fhir, health, resolve, shak, sor, status, units
from api.schemas import Problem
from api.ui import router as ui_router
from sorsync.config import Settings, get_settings
from sorsync.logs import configure
from sorsync.lookup import resolve as rs

DESCRIPTION = """\
Lookups in the SOR replica (the Danish healthcare organisation register) **as of a date**:
SHAK → SOR, SOR unit with parent chain, ydernummer, EAN/GLN, search, batch resolution, and
FHIR R4 Organization (DK Core).

* `date` is ISO `YYYY-MM-DD`, default today in Europe/Copenhagen. Validity is half-open: a
  version is valid on D when `valid_from <= D < valid_to` (`valid_to` null = open).
* SOR ids, GLNs, ydernumre and SHAK codes are JSON strings.
* Errors are RFC 9457 `application/problem+json` with `type` under
  `https://sorsync.dev/problems/` (FHIR routes answer `OperationOutcome`).
* GET lookups carry an `ETag` (data version + request) and `Cache-Control: public,
  max-age=300`; send `If-None-Match` to get `304 Not Modified`.
"""

OPENAPI_TAGS = [
    {"name": "SHAK", "description": "SHAK code → SOR units (1:N on a date), single or batch."},
    {"name": "SOR", "description": "A SOR unit on a date with ancestors and children; history."},
    {"name": "Units", "description": "Ydernummer and EAN/GLN lookups; search."},
    {"name": "Status", "description": "Replica status and data age."},
    {"name": "FHIR", "description": "HL7 FHIR R4 Organization, DK Core profile."},
]

_OPERATION_OUTCOME_SCHEMA = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1, "items": {"type": "object"}},
    },
}


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Point every error response at the shape the handlers really send: Problem under
    application/problem+json, OperationOutcome under application/fhir+json. FastAPI's own 422
    entry (HTTPValidationError as application/json) is replaced the same way."""
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in schema.get("paths", {}).items():
        fhir_path = path.startswith("/fhir")
        for operation in item.values():
            for code, response in operation.get("responses", {}).items():
                if code[0] not in "45":
                    continue
                if fhir_path:
                    response["content"] = {FHIR_JSON: {"schema": _OPERATION_OUTCOME_SCHEMA}}
                else:
                    response["content"] = {PROBLEM_JSON: {"schema": problem_ref}}
                if code == "422":
                    response["description"] = "Malformed input (see `type`)."
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in components["Problem"].pop("$defs", {}).items():
        components[name] = sub
    return schema


def _route(router: APIRouter, endpoint: Callable[..., Any]) -> APIRoute:
    return next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is endpoint)


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    version_ttl: float = 1.0,
    cache_entries: int | None = None,
) -> FastAPI:
    """Build the API. The database is `database_url`, else `settings.database_url`, else
    `sorsync.db.connect.database_url()` (settings from the environment, or embedded).
    `version_ttl` is how long the data version (ETag basis) is cached, in seconds;
    `cache_entries` how many lookup answers are kept (default SORSYNC_API_CACHE_ENTRIES)."""
    if not logging.getLogger().handlers:
        configure()  # a uvicorn worker process: nobody has set up logging yet
    # /readyz asks Alembic for the schema revision; its per-call INFO lines are noise here.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    url = database_url or (settings.database_url if settings else None)
    db = Database(url, version_ttl=version_ttl)
    metrics = make_metrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Create the engine (and start an embedded server if that is the configuration) before
        # the first request; connecting is left to the pools, so a database that is down at
        # start-up only makes /readyz say so.
        await anyio.to_thread.run_sync(lambda: db.engine)
        await db.aopen()  # the async lookups' pool, on the loop that serves them
        # Start-up objects (modules, routes, schemas) never die, and bulk answers allocate a
        # lot: keep the former out of every collection, and collect young objects less often.
        rs.collect_less_often()
        try:
            yield
        finally:
            await db.aclose()
            db.dispose()

    app = FastAPI(
        title="sorsync",
        version=getattr(sorsync, "__version__", "0.1.0"),
        summary="SOR lookups as of a date: SHAK → SOR, units, ydernumre, GLNs, FHIR.",
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        # sorsync reports through Prometheus (/metrics) and its logs. FastAPI's native
        # OpenTelemetry would otherwise look for configured providers on every request
        # (~4 % of a cached lookup's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served from local assets by api.docs, not FastAPI's CDN-linked pages.
        docs_url=None,
        redoc_url=None,
    )
    docs.install(app)
    app.state.db = db
    app.state.settings = settings
    app.state.metrics = metrics
    if cache_entries is None:
        cache_entries = (settings or get_settings()).api_cache_entries
    app.state.responses = ResponseCache(cache_entries)
    problems.install(app)
    for module in (shak, resolve, sor, units, status, fhir, health):
        app.include_router(module.router)
    app.include_router(ui_router)  # the web UI at / (api/ui), outside the OpenAPI document
    if cache_entries > 0:
        hot = [
            (_route(shak.router, shak.get_shak), shak.CACHED),
            (_route(sor.router, sor.get_sor), sor.CACHED),
        ]
        app.add_middleware(
            CachedLookups, db=db, cache=app.state.responses, metrics=metrics, routes=hot
        )
    # 405 with the path's own Allow (a literal path wins over a {param} one), before the cache.
    app.add_middleware(AllowedMethods, schema=lambda: app.openapi())
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, sees hits too

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(resolve.schema_components())
            app.openapi_schema = _document_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
