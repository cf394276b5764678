"""Errors of the DGWS security layer."""

from __future__ import annotations

from sorsync.krs.errors import KrsError


class StsError(KrsError):
    """Obtaining an ID card from the STS failed; the message says why and what to do.

    `transient` is True when trying again later may help (network, timeouts, 502/503/504).
    A KrsError, so the sync engine reports and retries it like any other KRS trouble.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message, transient=transient)
