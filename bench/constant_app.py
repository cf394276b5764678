"""The framework's ceiling: a bare FastAPI app with one endpoint returning a constant, served by
the benchmark with the same uvicorn settings as `sorsync serve` (factory, workers, no access log)
and, like sorsync's app, FastAPI's native OpenTelemetry off.

    uvicorn --factory bench.constant_app:create_app
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import ORJSONResponse

_BODY = {"status": "ok"}


def create_app() -> FastAPI:
    app = FastAPI(
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    @app.get("/constant", response_class=ORJSONResponse)
    async def constant() -> ORJSONResponse:
        return ORJSONResponse(_BODY)

    return app
