"""The one retry policy: is an error worth trying again unchanged, later?

Everything that retries asks `is_transient` — the scheduler (a failed run), the sync engine (a
datatype's failure, recorded in `krs.sync_run` and reported by `SyncFailed.transient`) and the
file export download. The errors sorsync raises on purpose (`KrsError`, `StsError`,
`ExportError`, the engine's feed errors) say so in `.transient`; which HTTP statuses count is
`sorsync.krs.errors.TRANSIENT_HTTP_STATUS`. Of the rest, a lost database connection or network
trouble is worth retrying, and anything else (a bug, a refused statement) is not.
"""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """Worth retrying unchanged? Errors with a `.transient` flag say so themselves; a lost
    database connection, a refused or reset socket and a timeout are; nothing else is (nor a
    held lock or a stop: the caller handles those)."""
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, OperationalError | psycopg.OperationalError):
        return True  # connection refused, reset, server restarting
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, ConnectionError | TimeoutError)
