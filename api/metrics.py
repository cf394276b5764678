"""Prometheus metrics and the ASGI middleware that records them (plus the request-size guard).

Each app gets its own registry, so several apps in one process (tests) do not collide. With
several uvicorn workers `sorsync serve` sets PROMETHEUS_MULTIPROC_DIR; /metrics then merges the
workers' files (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON, PROBLEM_TYPES

MAX_BODY_BYTES = 1 << 20  # 10 000 SHAK codes take ~110 kB of JSON


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    lookups: Counter
    data_age: Gauge
    replication_lag: Gauge

    def lookup(self, kind: str, result: str, n: int = 1) -> None:
        self.lookups.labels(kind, result).inc(n)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


def make_metrics() -> Metrics:
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        requests=Counter(
            "sorsync_http_requests_total",
            "HTTP requests by route template and status code.",
            ["route", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "sorsync_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=registry,
        ),
        lookups=Counter(
            "sorsync_lookups_total",
            "Lookups by kind (shak, resolve, sor, yder, ean, fhir) and result.",
            ["kind", "result"],
            registry=registry,
        ),
        data_age=Gauge(
            "sorsync_data_age_seconds",
            "Seconds since the last successful sync run finished (set when scraped).",
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
        replication_lag=Gauge(
            "sorsync_replication_lag_seconds",
            "How far the data of the PostgreSQL hot standby the API reads lags behind the"
            " primary (0 on the primary; set when scraped; -1 while unknown).",
            registry=registry,
            multiprocess_mode="mostrecent",
        ),
    )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not the raw path, which
    would make one series per SOR id), and refuses bodies over MAX_BODY_BYTES up front."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if _streamed(scope):
                await self.app(scope, receive, send_with_status)
            elif _declared_length(scope) > MAX_BODY_BYTES:
                await _too_large(scope, send_with_status)
            elif _has_header(scope, b"transfer-encoding"):
                # No length declared (chunked): count while reading, or the limit is moot.
                body, too_large = await _buffer_body(receive)
                if too_large:
                    await _too_large(scope, send_with_status)
                else:
                    await self.app(scope, _replay(body, receive), send_with_status)
            else:
                await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)


# Bodies read a chunk at a time, in bounded memory (api/routes/resolve.py): any length.
STREAMED_PATHS = frozenset({"/v1/resolve"})
STREAMED_TYPES = (b"text/csv", b"application/x-ndjson")


def _streamed(scope: Scope) -> bool:
    if scope.get("path") not in STREAMED_PATHS:
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() in STREAMED_TYPES
    return False


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _has_header(scope: Scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope.get("headers", ()))


async def _buffer_body(receive: Receive) -> tuple[bytes, bool]:
    """Read a body of undeclared length up to MAX_BODY_BYTES: (body, too_large)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app sees an empty body
        part = message.get("body", b"")
        size += len(part)
        if size > MAX_BODY_BYTES:
            return b"", True
        parts.append(part)
        if not message.get("more_body", False):
            break
    return b"".join(parts), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the buffered body over once, then defers to the server's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(scope: Scope, send: Send) -> None:
    ptype = PROBLEM_TYPES["request-too-large"]
    body = orjson.dumps(
        {
            "type": ptype.uri,
            "title": ptype.title,
            "status": ptype.status,
            "detail": f"The request body is over {MAX_BODY_BYTES} bytes; send fewer codes.",
            "instance": scope.get("path", ""),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": ptype.status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
