"""The sync engine: KRS pages into the PostgreSQL replica (see `engine` for the guarantees)."""

from __future__ import annotations

from sorsync.sync.engine import sync
from sorsync.sync.pages import FeedError, PageSource
from sorsync.sync.reconcile import Reconciliation
from sorsync.sync.results import DatatypeResult, Kind, Progress, RunResult, SwapRefused
from sorsync.sync.run import LOCK_NAME, describe_error
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
