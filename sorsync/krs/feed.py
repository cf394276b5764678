"""One page of a KRS Atom feed, parsed. (Parser: see `parse_feed`.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Entry:
    """One `atom:entry`: the full current content of one row (one version of a unit)."""

    token: str  # 20 digits from atom:id after the last "/"
    pid: int  # the row id at the source: the token's last 10+ digits
    modified_at: datetime  # atom:updated, timezone-aware
    # One value per field of the datatype, in registry order: int for BIGINT, str for TEXT,
    # aware datetime for TIMESTAMP; None for an omitted element and for an open validTo.
    values: tuple[object, ...]
    extra: dict[str, str] | None = None  # elements the registry does not know, by local name


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[Entry]
    unknown_elements: frozenset[str] = field(default_factory=frozenset)

    @property
    def last_token(self) -> str | None:
        return self.entries[-1].token if self.entries else None

    def __len__(self) -> int:
        return len(self.entries)
