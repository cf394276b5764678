"""The scheduler: delta syncs every few minutes, a full sync after NSP's nightly import.

Each run takes the PostgreSQL advisory lock of the sync engine, so any number of scheduler
processes on any number of machines run each sync once; the others log a skip. Transient
failures (network, timeouts, HTTP 5xx, `internal-error`, a lost database connection) are
retried with exponential backoff; permanent ones (authorisation, security faults,
configuration) are reported at once and not retried. Stopping ends a running sync at a page
boundary.

The parts: `jobs` (one tick: the run, its retries, the lock), `process` (APScheduler, signals,
the main loop) and `metrics` (the Prometheus series and what a run adds to them).
"""

from __future__ import annotations

from sorsync.scheduler.jobs import (
    FULL_SLACK,
    Outcome,
    RetryPolicy,
    Runner,
    ServiceRunner,
    SyncStopped,
    run_with_retries,
    sync_job,
)
from sorsync.scheduler.metrics import REGISTRY, set_last_success, start_metrics
from sorsync.scheduler.process import (
    TIMEZONE,
    Activity,
    build_scheduler,
    install_signal_handlers,
    run_scheduler,
)

__all__ = [
    "FULL_SLACK",
    "REGISTRY",
    "TIMEZONE",
    "Activity",
    "Outcome",
    "RetryPolicy",
    "Runner",
    "ServiceRunner",
    "SyncStopped",
    "build_scheduler",
    "install_signal_handlers",
    "run_scheduler",
    "run_with_retries",
    "set_last_success",
    "start_metrics",
    "sync_job",
]
