"""Fault injection for the simulator: make the next calls (or a random share of them) fail in
a chosen way, so the client's failure paths can be exercised end to end over real HTTP.

A `FaultPlan` holds a queue of one-shot faults; each `replicate` POST takes the first one.
When the queue is empty and random mode is on, a call fails with probability `rate`, the kind
drawn from `kinds` with a seeded generator (reproducible). Only `replicate` POSTs consume
faults; `?wsdl` and the admin endpoints never fail.

Kinds and their parameters (defaults in `KINDS`):

  http_status        HTTP `status` with a plain-text `body` (e.g. 503 from a proxy)
  delay              sleep `seconds`, then answer normally
  reset              close the connection with a TCP reset, no response
  truncate           announce the full Content-Length, send only `bytes` (default: half), close
  malformed_xml      HTTP 200, consistent Content-Length, XML cut off mid-document
  replication_fault  `code` (urn:stamdata:…) with `message` (default: NSP's text)
  dgws_fault         DGWS `code` (expired_idcard, …) with `message`
  oversized_page     ignore maxRecords and the 2000 cap: serve up to `records` rows
  missing_token      entry number `index` has an atom:id without a token
  backwards_token    entries in descending token order (needs two rows or more)
  unknown_element    every record gets an extra element `name` with text `value`
  wrong_namespace    records in `namespace` instead of the register's
  xml_bomb           a DOCTYPE with nested entities ("billion laughs") used in the feed title
  external_entity    a DOCTYPE with an external entity (`system_id`) used in the feed title
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS: Mapping[str, Mapping[str, Any]] = {
    "http_status": {"status": 503, "body": "Service Unavailable"},
    "delay": {"seconds": 1.0},
    "reset": {},
    "truncate": {"bytes": None},
    "malformed_xml": {},
    "replication_fault": {"code": "urn:stamdata:internal-error", "message": None},
    "dgws_fault": {"code": "processing_problem", "message": None},
    "oversized_page": {"records": 2500},
    "missing_token": {"index": 0},
    "backwards_token": {},
    "unknown_element": {"name": "nytFelt", "value": "ukendt"},
    "wrong_namespace": {"namespace": "http://nsi.dk/-/stamdata/3.0/forkert"},
    "xml_bomb": {"depth": 10},
    "external_entity": {"system_id": "file:///etc/passwd"},
}

# transient trouble a client is expected to ride out by retrying
DEFAULT_RANDOM_KINDS: tuple[str, ...] = ("http_status", "reset", "truncate", "delay")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}


def make_fault(kind: str, **params: Any) -> Fault:
    """A fault with defaults filled in; ValueError for an unknown kind or parameter."""
    try:
        defaults = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown fault kind {kind!r}; known kinds: {', '.join(KINDS)}") from None
    unknown = set(params) - set(defaults)
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ValueError(
            f"fault {kind!r} takes no parameter {', '.join(sorted(unknown))}; allowed: {allowed}"
        )
    return Fault(kind, {**defaults, **params})


def _fault_from(spec: str | Mapping[str, Any] | Fault) -> Fault:
    if isinstance(spec, Fault):
        return spec
    if isinstance(spec, str):
        return make_fault(spec)
    params = dict(spec)
    kind = params.pop("kind", None)
    if not isinstance(kind, str):
        raise ValueError('each fault needs a "kind", e.g. {"kind": "http_status", "status": 503}')
    return make_fault(kind, **params)


class FaultPlan:
    """Thread-safe; shared by the server's handler threads and the test that steers it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._kinds: tuple[Fault, ...] = ()
        self._random: random.Random | None = None
        self.injected: Counter[str] = Counter()  # kind → how many calls it hit

    def next(self, kind: str, **params: Any) -> FaultPlan:
        """Queue a one-shot fault for the next unfaulted call; returns the plan for chaining."""
        fault = make_fault(kind, **params)
        with self._lock:
            self._queue.append(fault)
        return self

    def random(
        self,
        rate: float,
        seed: int | None = None,
        kinds: Iterable[str | Mapping[str, Any] | Fault] = DEFAULT_RANDOM_KINDS,
    ) -> FaultPlan:
        """Fail each call with probability `rate` (0..1), the kind drawn from `kinds`."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        faults = tuple(_fault_from(k) for k in kinds)
        if rate > 0 and not faults:
            raise ValueError("random faults need at least one kind")
        with self._lock:
            self._rate = rate
            self._kinds = faults
            self._random = random.Random(seed)
        return self

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate = 0.0
            self._kinds = ()
            self._random = None

    def take(self) -> Fault | None:
        """The fault for the current call, if any (consumes a one-shot fault)."""
        with self._lock:
            fault: Fault | None = None
            if self._queue:
                fault = self._queue.popleft()
            elif self._random is not None and self._random.random() < self._rate:
                fault = self._random.choice(self._kinds)
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "next": [f.to_json() for f in self._queue],
                "random": (
                    {"rate": self._rate, "kinds": [f.to_json() for f in self._kinds]}
                    if self._random is not None
                    else None
                ),
                "injected": dict(self.injected),
            }

    def apply_json(self, spec: Any) -> None:
        """Apply an admin request: `{"kind": …}`, a list of those, or
        `{"next": [...], "random": {"rate": r, "seed": s, "kinds": [...]}}`. ValueError if bad."""
        if isinstance(spec, list) or (isinstance(spec, dict) and "kind" in spec):
            items = spec if isinstance(spec, list) else [spec]
            spec = {"next": items}
        if not isinstance(spec, dict) or not set(spec) <= {"next", "random"}:
            raise ValueError(
                'expected {"kind": ...}, a list of faults, or {"next": [...], "random": {...}}'
            )
        faults = [_fault_from(item) for item in spec.get("next") or []]
        rnd = spec.get("random")
        if rnd is not None:
            if not isinstance(rnd, dict) or "rate" not in rnd:
                raise ValueError('"random" needs {"rate": 0..1, "seed": int, "kinds": [...]}')
            self.random(
                float(rnd["rate"]), rnd.get("seed"), rnd.get("kinds") or DEFAULT_RANDOM_KINDS
            )
        with self._lock:
            self._queue.extend(faults)
