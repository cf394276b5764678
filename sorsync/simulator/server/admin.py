"""The admin endpoints' answers (tests and demos only; no authentication, so the server stays
on loopback): `GET /admin/state` (rows and last token per view), `/admin/faults` (the fault
plan, faults.py), `/admin/shape` (how SOR2 records are rendered, sor2.RecordShape) and
`POST /admin/snapshot` (load a SorTree snapshot, answer the import report). Each returns an
`AdminAnswer` (HTTP status, JSON payload); reading the request and sending are http.py's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, BinaryIO

from lxml import etree

from sorsync.krs import wire
from sorsync.logs import get_logger
from sorsync.simulator.faults import FaultPlan
from sorsync.simulator.sor2 import DEFAULT_SHAPE, RecordShape
from sorsync.simulator.store import Store

log = get_logger("sorsync.simulator")


@dataclass(frozen=True, slots=True)
class AdminAnswer:
    status: int
    payload: Any  # sent as JSON


def jsonable(report: Any) -> Any:
    """`report` as plain JSON-able data (its own as_dict/to_json/model_dump, else its fields)."""
    for method in ("as_dict", "to_json", "model_dump"):
        if callable(getattr(report, method, None)):
            return getattr(report, method)()
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return dataclasses.asdict(report)
    if hasattr(report, "__dict__"):
        return dict(vars(report))
    return report


def state(store: Store, faults: FaultPlan, url: str) -> dict[str, Any]:
    """`GET /admin/state`: the service URL, rows and last change per view, the fault plan."""
    datatypes: dict[str, Any] = {}
    with store.lock:
        for key, table in store.tables.items():
            last = table.last()
            datatypes[key] = {
                "rows": len(table),
                "last_modified": (
                    datetime.fromtimestamp(last.modified, UTC).isoformat() if last else None
                ),
                "last_token": wire.make_token(last.modified, last.pid) if last else None,
            }
    return {"url": url, "datatypes": datatypes, "faults": faults.to_json()}


def set_faults(faults: FaultPlan, raw: bytes) -> AdminAnswer:
    """`POST /admin/faults`: queue faults or set random mode (FaultPlan.apply_json)."""
    try:
        faults.apply_json(json.loads(raw or b"{}"))
    except (ValueError, TypeError) as exc:
        return AdminAnswer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
    return AdminAnswer(HTTPStatus.OK, faults.to_json())


def clear_faults(faults: FaultPlan) -> AdminAnswer:
    """`DELETE /admin/faults`: no queued faults, random mode off."""
    faults.clear()
    return AdminAnswer(HTTPStatus.OK, faults.to_json())


def set_shape(store: Store, raw: bytes) -> AdminAnswer:
    """`POST /admin/shape`: render SOR2 records in the given shape from the next page on."""
    try:
        shape = RecordShape.from_json(json.loads(raw or b"{}"))
    except (ValueError, TypeError) as exc:  # ShapeError is a ValueError
        return AdminAnswer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
    store.shape = shape  # one attribute swap: the next page uses it
    return AdminAnswer(HTTPStatus.OK, shape.to_json())


def reset_shape(store: Store) -> AdminAnswer:
    """`DELETE /admin/shape`: back to the default SOR2 record shape."""
    store.shape = DEFAULT_SHAPE
    return AdminAnswer(HTTPStatus.OK, DEFAULT_SHAPE.to_json())


def import_snapshot(store: Store, stream: BinaryIO) -> AdminAnswer:
    """`POST /admin/snapshot`: import the SorTree snapshot read from `stream` as one run; the
    import report, or the importer's error (400 for a bad snapshot, 500 otherwise)."""
    from sorsync.simulator.importer import load_snapshot  # built in parallel; import late

    try:
        report = load_snapshot(store, stream)
    except Exception as exc:  # the importer's errors are for the caller to read
        log.warning("snapshot rejected", error=str(exc))
        status = (
            HTTPStatus.BAD_REQUEST
            if isinstance(exc, ValueError | etree.XMLSyntaxError)
            else HTTPStatus.INTERNAL_SERVER_ERROR
        )
        return AdminAnswer(status, {"error": f"snapshot not loaded: {exc}"})
    return AdminAnswer(HTTPStatus.OK, jsonable(report))
