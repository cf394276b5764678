"""What a sync run reports: its kind, progress, each datatype's result and the run's result.

Shared by every run mode (sorsync.sync.delta, .full, .initial), the run record
(sorsync.sync.run) and every caller of `sorsync.sync.engine.sync`; nothing here touches the
database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sorsync.krs.profile import Drift, Profile
from sorsync.sync.reconcile import Reconciliation

Kind = Literal["delta", "full"]
Phase = Literal["load", "swap", "done", "failed"]


class SwapRefused(Exception):
    """A full sync's result looks wrong enough that it is not applied."""


# Said by every shrink refusal, so the scheduler can tell it from other failures and alert.
SHRINK_REFUSED = "shrink guard"
DEFAULT_MAX_SHRINK = 0.2  # SORSYNC_FULL_MAX_SHRINK


@dataclass(frozen=True, slots=True)
class Progress:
    """Reported after each stored page and at each phase change.

    A delta's page is committed (rows and token) before it is reported. A full's pages go to
    shadow tables (or, for the first full, into the one transaction that fills the empty
    replica) and become visible only at the end. A run is stopped through its `Cancellation`
    (sorsync.sync.cancel), not from here; a callback that raises all the same (a
    BaseException like KeyboardInterrupt) gets what a cancelled run gets, except that the
    exception propagates.
    """

    key: str  # register/datatype/vN
    phase: Phase
    pages: int
    records: int


@dataclass(slots=True)
class DatatypeResult:
    key: str
    status: Literal["pending", "ok", "failed", "skipped"] = "pending"
    pages: int = 0
    records: int = 0  # records received
    inserted: int = 0  # rows added to the replica
    updated: int = 0  # rows whose content changed
    deleted: int = 0  # full only: rows the source no longer has
    seconds: float = 0.0  # loading: fetching and storing pages
    store_seconds: float = 0.0  # of which storing (COPY + merge + commit); the rest is KRS
    apply_seconds: float = 0.0  # full only: the swap transaction (for all datatypes at once)
    token: str | None = None  # the committed token after the run
    error: str | None = None
    transient: bool | None = None  # of the error: would retrying the run likely help?
    unknown_elements: list[str] = field(default_factory=list)
    reconciliation: Reconciliation | None = None
    profile: Profile | None = None  # document datatypes: the fields the records had
    drift: Drift | None = None  # ... compared with the mapping (None: nothing to compare)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datatype": self.key,
            "status": self.status,
            "pages": self.pages,
            "records": self.records,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "seconds": round(self.seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
            "apply_seconds": round(self.apply_seconds, 3),
            "token": self.token,
            "error": self.error,
            "unknown_elements": self.unknown_elements,
            "record_namespace": self.profile.namespace if self.profile else None,
            "drift": self.drift.to_dict() if self.drift else None,
            "reconciliation": self.reconciliation.to_dict() if self.reconciliation else None,
        }


@dataclass(slots=True)
class RunResult:
    run_id: int
    kind: Kind
    status: Literal["ok", "failed"]
    started_at: datetime
    seconds: float
    datatypes: list[DatatypeResult]
    error: str | None = None  # one line: the first failure (with its datatype)
    export: dict[str, Any] | None = None  # a file import (sorsync.files): what was fetched
    interrupted: bool = False  # stopped through its Cancellation (sorsync.sync.cancel)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def pages(self) -> int:
        return sum(d.pages for d in self.datatypes)

    @property
    def records(self) -> int:
        return sum(d.records for d in self.datatypes)

    @property
    def transient(self) -> bool:
        """True when every failure was of a kind that a later retry may well cure."""
        failures = [d for d in self.datatypes if d.status == "failed"]
        return bool(failures) and all(d.transient for d in failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "pages": self.pages,
            "records": self.records,
            "error": self.error,
            "transient": self.transient if self.status == "failed" else None,
            "datatypes": [d.to_dict() for d in self.datatypes],
            **({"export": self.export} if self.export is not None else {}),
        }


ProgressCallback = Callable[[Progress], None]
