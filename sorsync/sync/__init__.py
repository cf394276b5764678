"""The sync engine: KRS pages into the PostgreSQL replica (see `engine` for the guarantees)."""

from __future__ import annotations

from sorsync.sync.engine import (
    LOCK_NAME,
    DatatypeResult,
    Kind,
    Progress,
    RunResult,
    SwapRefused,
    describe_error,
    sync,
)
from sorsync.sync.pages import FeedError, PageSource
from sorsync.sync.reconcile import Reconciliation
from sorsync.sync.status import DatatypeStatus, RunSummary, StatusReport, status

__all__ = [
    "LOCK_NAME",
    "DatatypeResult",
    "DatatypeStatus",
    "FeedError",
    "Kind",
    "PageSource",
    "Progress",
    "Reconciliation",
    "RunResult",
    "RunSummary",
    "StatusReport",
    "SwapRefused",
    "describe_error",
    "status",
    "sync",
]
