"""`sorsync serve`: the read API only (uvicorn, app factory `api.app:create_app`)."""

from __future__ import annotations

import os
import shutil
import tempfile

import typer

from sorsync.cli.app import app
from sorsync.config import get_settings
from sorsync.logs import configure, get_logger

log = get_logger("sorsync.serve")


def run_api(host: str, port: int, *, workers: int = 1, access_log: bool = False) -> None:
    """Run the API in the foreground until interrupted."""
    import uvicorn

    from sorsync.db.connect import database_url

    configure()
    # Resolve the database once here, so that N workers do not each start an embedded server,
    # and hand it to them (and to the factory) through the environment.
    os.environ["SORSYNC_DATABASE_URL"] = database_url()
    get_settings.cache_clear()
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker is its own process; prometheus-client merges their counters from files.
        metrics_dir = tempfile.mkdtemp(prefix="sorsync-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    settings = get_settings()
    log.info("API starting", host=host, port=port, workers=workers)
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,  # keep sorsync's structlog configuration
            access_log=access_log,
            proxy_headers=True,
            # Slow or many clients (api/guard.py): a header deadline, idle keep-alive, a cap.
            http="api.guard:GuardedProtocol",
            timeout_keep_alive=settings.api_keep_alive_timeout,
            limit_concurrency=settings.api_max_connections,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def serve(
    host: str | None = typer.Option(
        None, metavar="HOST", help="Bind address (default: SORSYNC_API_HOST)."
    ),
    port: int | None = typer.Option(
        None, min=0, max=65535, metavar="PORT", help="TCP port (default: SORSYNC_API_PORT)."
    ),
    workers: int = typer.Option(1, min=1, max=64, metavar="N", help="Worker processes."),
    access_log: bool = typer.Option(False, help="Log every request (metrics count them anyway)."),
) -> None:
    """Serve the read API (lookups, FHIR, /readyz, /metrics) over HTTP."""
    settings = get_settings()
    run_api(
        host or settings.api_host,
        settings.api_port if port is None else port,
        workers=workers,
        access_log=access_log,
    )
