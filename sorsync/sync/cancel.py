"""Stopping a sync run from outside it: one cancellation object, checked between pages.

Whoever wants a run to stop (a signal handler, a scheduler that is stopping, a test) calls
`Cancellation.cancel()`, which only sets an event. The run checks it between pages
(sorsync.sync.load), the KRS page loop between HTTP requests and while it waits for the next
page (sorsync.sync.pages), and the file export's download between chunks (sorsync.files.fetch).
The run then ends at that page boundary the way a stopped run always has: everything committed
stays, the page in flight and an unapplied full roll back, `krs.sync_run` records it as
`failed` with an error starting `interrupted:`, and `sync()` returns a result whose
`interrupted` is True. Nothing is raised into the caller.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


class Cancelled(BaseException):
    """Unwinds a cancelled run from the check that saw it to the run record
    (sorsync.sync.run.execute), which catches it: it never leaves `sync()`.

    A BaseException, so the modes' handling of a datatype's failure (`except Exception`) lets it
    through and every open transaction rolls back on the way out."""


@dataclass(slots=True)
class Cancellation:
    """A request to stop, shared between the run and whoever may stop it (any thread)."""

    event: threading.Event = field(default_factory=threading.Event)
    # Said after `interrupted:` in krs.sync_run; the first `cancel(reason)` sets it.
    reason: str = "stopped between pages"

    def cancel(self, reason: str | None = None) -> None:
        """Ask the run to stop at its next page boundary. Safe from a signal handler."""
        if reason is not None and not self.event.is_set():
            self.reason = reason
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` when cancelled; only the sync engine and its sources call it."""
        if self.event.is_set():
            raise Cancelled(self.reason)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less when cancelled; True when cancelled."""
        return self.event.wait(timeout)
