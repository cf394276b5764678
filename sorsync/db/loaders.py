"""psycopg loaders that read every stored date and time, even those Python cannot represent.

PostgreSQL keeps dates from 4713 BC to 294276 AD and ±infinity; Python's datetime only years 1
to 9999. A row an older sorsync stored from a hostile source (`0001-01-01T00:00:00+14:00` is
year 1 BC in UTC) made every lookup that read it fail with "timestamp too small". These loaders
read such a value as (nearly) the nearest one Python has, a day inside years 1 and 9999, so
the API answers instead of 500. The sync refuses such values now (sorsync/krs/feed.py), so
they come only from old data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap, Buffer
from psycopg.types.datetime import (
    DateBinaryLoader,
    DateLoader,
    TimestampBinaryLoader,
    TimestampLoader,
    TimestamptzBinaryLoader,
    TimestamptzLoader,
)

# A day inside Python's range, so that converting to any time zone (the lookups show Danish
# dates) cannot overflow again.
_UTC_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
_UTC_MAX = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)


def _low(data: Buffer, binary: bool) -> bool:
    """Is the unreadable value before year 1 (else after 9999)?"""
    raw = bytes(data)
    if binary:
        return int.from_bytes(raw, "big", signed=True) < 0  # microseconds/days since 2000
    return raw.endswith(b"BC") or raw.startswith(b"-infinity")


def _tolerant(base: type[Any], low: object, high: object, binary: bool) -> type[Any]:
    class Tolerant(base):  # type: ignore[misc]
        def load(self, data: Buffer) -> Any:
            try:
                return super().load(data)
            except (psycopg.DataError, ValueError, OverflowError):
                return low if _low(data, binary) else high

    Tolerant.__name__ = f"Tolerant{base.__name__}"
    return Tolerant


def register(adapters: AdaptersMap) -> None:
    """Use the tolerant loaders for date, timestamp and timestamptz on `adapters`."""
    for oid_name, text_base, binary_base, low, high in (
        ("timestamptz", TimestamptzLoader, TimestamptzBinaryLoader, _UTC_MIN, _UTC_MAX),
        (
            "timestamp",
            TimestampLoader,
            TimestampBinaryLoader,
            _UTC_MIN.replace(tzinfo=None),
            _UTC_MAX.replace(tzinfo=None),
        ),
        ("date", DateLoader, DateBinaryLoader, dt.date.min, dt.date.max),
    ):
        adapters.register_loader(oid_name, _tolerant(text_base, low, high, binary=False))
        adapters.register_loader(oid_name, _tolerant(binary_base, low, high, binary=True))
