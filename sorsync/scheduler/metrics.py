"""The scheduler's Prometheus metrics: its own registry, the series, and what a run adds to them.

`record` turns a finished run into counters, gauges and one log line per datatype (with the
shrink guard's ALERT); `set_last_success` seeds the data-age gauges from the database at start;
`start_metrics` serves the registry on SORSYNC_METRICS_PORT.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine

from sorsync.config import Settings
from sorsync.logs import get_logger
from sorsync.sync.results import SHRINK_REFUSED, RunResult
from sorsync.sync.service import SyncFailed

# Our own registry: the scheduler exports only its own series (no process/GC collectors that
# would clash with the API's names if both were scraped into one job).
REGISTRY = CollectorRegistry()
RUNS = Counter(
    "sorsync_sync_runs_total",
    "Scheduled sync runs by kind and outcome (ok, failed, skipped: another process held the"
    " lock, stopped: the scheduler was stopping).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "sorsync_sync_failures_total",
    "Failed sync attempts by kind and whether the error was transient (retried).",
    ["kind", "transient"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "sorsync_sync_run_duration_seconds",
    "Wall time of sync runs that ran (including retries).",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
RECORDS = Counter(
    "sorsync_sync_records_total",
    "Records received from KRS, by datatype.",
    ["datatype"],
    registry=REGISTRY,
)
ROWS = Counter(
    "sorsync_sync_rows_total",
    "Rows applied to the replica, by datatype and operation (inserted, updated, deleted).",
    ["datatype", "op"],
    registry=REGISTRY,
)
DRIFT = Gauge(
    "sorsync_feed_field_drift",
    "Fields of a document datatype (SOR2) that differ from the mapping in the last sync that"
    " received records: 'missing' = mapped but not seen, 'unmapped' = seen but not mapped (alert"
    " on missing > 0: a view column is empty; compare with `sorsync krs describe`).",
    ["datatype", "kind"],
    registry=REGISTRY,
)
SHRINK_REFUSALS = Counter(
    "sorsync_sync_shrink_refused_total",
    "Full syncs refused by the shrink guard (the result would remove more than"
    " SORSYNC_FULL_MAX_SHRINK of a datatype's rows), by datatype: alert on any; a person decides"
    " (sorsync sync --full --allow-shrink). The scheduler never allows it by itself.",
    ["datatype"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "sorsync_sync_last_success_timestamp_seconds",
    "Unix time of the last successful sync of a datatype (alert when older than 2 × the delta"
    " interval).",
    ["datatype"],
    registry=REGISTRY,
)


def _log() -> Any:
    # A fresh proxy per call: a module-level logger would keep the configuration of its first
    # use (cache_logger_on_first_use), which tests and `configure()` may change later.
    return get_logger("sorsync.scheduler")


def record(result: RunResult) -> None:
    """Metrics and one log line per datatype of a run that ran (ok or failed)."""
    now = time.time()
    for d in result.datatypes:
        RECORDS.labels(d.key).inc(d.records)
        for op, n in (("inserted", d.inserted), ("updated", d.updated), ("deleted", d.deleted)):
            ROWS.labels(d.key, op).inc(n)
        if d.status == "ok":
            LAST_SUCCESS.labels(d.key).set(now)
        if d.drift is not None:
            DRIFT.labels(d.key, "missing").set(len(d.drift.missing))
            DRIFT.labels(d.key, "unmapped").set(len(d.drift.unmapped))
        if d.status == "failed" and SHRINK_REFUSED in (d.error or ""):
            SHRINK_REFUSALS.labels(d.key).inc()
            _log().error(
                "ALERT: the nightly full was refused by the shrink guard; the replica is"
                " unchanged and stays so until a person decides",
                datatype=d.key,
                error=d.error,
            )
        if d.status == "ok" and d.records == 0 and result.kind == "delta":
            continue  # the usual quiet delta: the run's own line says enough
        _log().info(
            "datatype synced" if d.status == "ok" else "datatype not synced",
            run_id=result.run_id,
            kind=result.kind,
            datatype=d.key,
            status=d.status,
            pages=d.pages,
            records=d.records,
            inserted=d.inserted,
            updated=d.updated,
            deleted=d.deleted,
            duration_s=round(d.seconds + d.apply_seconds, 3),
            token=d.token,
            error=d.error,
        )


def record_partial(exc: BaseException | None) -> None:
    # A failed run may still have synced some datatypes (a fault concerning one datatype).
    if isinstance(exc, SyncFailed):
        record(exc.result)


def set_last_success(engine: Engine, settings: Settings) -> None:
    """Seed the last-success gauges from the database, so a restarted scheduler exports the
    real data age before its first run."""
    from sorsync.sync.status import status

    for d in status(engine, settings).datatypes:
        if d.last_success_at is not None:
            LAST_SUCCESS.labels(d.key).set(d.last_success_at.timestamp())


def start_metrics(settings: Settings) -> None:
    if settings.metrics_port == 0:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(settings.metrics_port, addr=settings.api_host, registry=REGISTRY)
    except OSError as exc:
        # Syncing matters more than metrics: keep going, but say how to fix it.
        _log().warning(
            "cannot serve scheduler metrics; set SORSYNC_METRICS_PORT to a free port (0 = off)",
            host=settings.api_host,
            port=settings.metrics_port,
            error=str(exc),
        )
        return
    _log().info(
        "scheduler metrics", url=f"http://{settings.api_host}:{settings.metrics_port}/metrics"
    )
