"""What a datatype really delivers: the fields seen in its records, and how that differs from
the mapping (`sorsync.mapping`).

`sorsync krs describe` prints a profile of the first pages; every sync of a document datatype
builds one from the pages it stores and records the difference in `krs.sync_state.drift`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sorsync.mapping import Expected

_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_DECIMAL = re.compile(r"^-?[0-9]+[.,][0-9]+$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
SAMPLE_CHARS = 80
TYPED_VALUES = 50  # values per field whose type is guessed: enough to tell, cheap on big feeds


def looks_like(value: object) -> str:
    """The type a stored value looks like: integer, decimal, date, date-time, boolean, text,
    empty, null, object or list."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    text = str(value).strip()
    if not text:
        return "empty"
    if _INTEGER.match(text):
        return "integer"
    if _DECIMAL.match(text):
        return "decimal"
    if _DATE.match(text):
        return "date"
    if _DATETIME.match(text):
        return "date-time"
    if text.lower() in ("true", "false"):
        return "boolean"
    return "text"


@dataclass(slots=True)
class FieldSeen:
    count: int = 0
    sample: str | None = None  # the first non-empty value (cut to SAMPLE_CHARS)
    types: dict[str, int] = field(default_factory=dict)  # of the first TYPED_VALUES values

    @property
    def looks_like(self) -> str:
        """The most frequent non-empty type, else "empty"."""
        filled = {t: n for t, n in self.types.items() if t not in ("empty", "null")}
        if not filled:
            return "empty"
        return max(sorted(filled), key=lambda t: filled[t])


@dataclass(slots=True)
class Profile:
    records: int = 0
    namespaces: dict[str, int] = field(default_factory=dict)
    record_names: dict[str, int] = field(default_factory=dict)
    fields: dict[str, FieldSeen] = field(default_factory=dict)

    def add(self, namespace: str, name: str, record: Mapping[str, Any]) -> None:
        self.records += 1
        self.namespaces[namespace] = self.namespaces.get(namespace, 0) + 1
        self.record_names[name] = self.record_names.get(name, 0) + 1
        fields = self.fields
        for key, value in record.items():
            seen = fields.get(key)
            if seen is None:
                seen = fields[key] = FieldSeen()
            seen.count += 1
            if seen.count > TYPED_VALUES:
                continue
            kind = looks_like(value)
            seen.types[kind] = seen.types.get(kind, 0) + 1
            if seen.sample is None and kind not in ("empty", "null"):
                text = value if isinstance(value, str) else repr(value)
                seen.sample = text[:SAMPLE_CHARS]

    def merge(self, other: Profile) -> None:
        self.records += other.records
        for ns, n in other.namespaces.items():
            self.namespaces[ns] = self.namespaces.get(ns, 0) + n
        for name, n in other.record_names.items():
            self.record_names[name] = self.record_names.get(name, 0) + n
        for key, theirs in other.fields.items():
            ours = self.fields.get(key)
            if ours is None:
                self.fields[key] = FieldSeen(theirs.count, theirs.sample, dict(theirs.types))
                continue
            ours.count += theirs.count
            ours.sample = ours.sample or theirs.sample
            for kind, n in theirs.types.items():
                ours.types[kind] = ours.types.get(kind, 0) + n

    @property
    def namespace(self) -> str | None:
        """The record namespace seen most often (None before any record)."""
        if not self.namespaces:
            return None
        return max(sorted(self.namespaces), key=lambda ns: self.namespaces[ns])

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "record_namespaces": dict(self.namespaces),
            "record_elements": dict(self.record_names),
            "fields": {
                name: {
                    "count": seen.count,
                    "sample": seen.sample,
                    "looks_like": seen.looks_like,
                }
                for name, seen in sorted(self.fields.items())
            },
        }


@dataclass(frozen=True, slots=True)
class Drift:
    """How the fields seen differ from the mapping's elements."""

    missing: tuple[str, ...]  # mapped, but never seen
    unmapped: tuple[str, ...]  # seen, but not mapped (kept in `record`, queryable)

    @property
    def differs(self) -> bool:
        return bool(self.missing or self.unmapped)

    def to_dict(self) -> dict[str, list[str]]:
        return {"mapped_not_seen": list(self.missing), "seen_not_mapped": list(self.unmapped)}

    def summary(self, limit: int = 10) -> str:
        parts = []
        for label, names in (("mapped but not seen", self.missing), ("not mapped", self.unmapped)):
            if names:
                shown = ", ".join(names[:limit])
                more = f" and {len(names) - limit} more" if len(names) > limit else ""
                parts.append(f"{label}: {shown}{more}")
        return "; ".join(parts) if parts else "fields as mapped"


def compare(profile: Profile, expected: Expected) -> Drift:
    """The difference between the fields of `profile` and what is `expected`."""
    seen = set(profile.fields)
    return Drift(tuple(sorted(expected.required - seen)), tuple(sorted(seen - expected.known)))
