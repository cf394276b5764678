"""Answering one `replicate` request from the store, in NSP's processing order: the envelope,
the security hook, the schema, the view, the offset token, then a page of
`min(maxRecords, 2000)` rows after the token rendered under the store's lock; and the injected
faults (faults.py) that replace or distort that answer. Returns a `Reply`; no I/O besides a
requested delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from sorsync.krs.wire import MAX_RECORDS, NS_KRS, NS_MEDCOM, NS_SOAP
from sorsync.simulator import render
from sorsync.simulator.faults import Fault
from sorsync.simulator.render import CONTENT_TYPE, Distortion, SoapFaultSpec
from sorsync.simulator.server.requests import (
    RequestError,
    SchemaError,
    body_payload,
    parse_envelope,
    read_request,
    requested_view,
    split_offset,
)
from sorsync.simulator.store import Store

# Called with the parsed envelope, the raw request and the `register/datatype/vN` asked for
# ("" when the body does not say); a returned spec is sent instead of the answer.
Enforce = Callable[[etree._Element, bytes, str], SoapFaultSpec | None]


@dataclass(slots=True)
class Reply:
    """What http.py sends for one replicate call, and the facts for its log line."""

    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    reset: bool = False  # close with a TCP reset, send nothing
    send_bytes: int | None = None  # send only this many body bytes, then close
    summary: dict[str, Any] = field(default_factory=dict)  # for the log line

    @classmethod
    def of(cls, spec: SoapFaultSpec, **summary: Any) -> Reply:
        return cls(spec.status, spec.body, spec.content_type, summary=summary)


def _bomb_doctype(depth: int) -> tuple[str, str]:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)
    ]
    return f"<!DOCTYPE S:Envelope [{''.join(entities)}]>", f"&lol{depth};"


def _distortion(fault: Fault | None) -> Distortion | None:
    if fault is None:
        return None
    kind = fault.kind
    if kind == "missing_token":
        return Distortion(drop_token_at=int(fault["index"]))
    if kind == "backwards_token":
        return Distortion(reverse=True)
    if kind == "unknown_element":
        return Distortion(extra_element=(str(fault["name"]), str(fault["value"])))
    if kind == "wrong_namespace":
        return Distortion(record_namespace=str(fault["namespace"]))
    if kind == "xml_bomb":
        doctype, reference = _bomb_doctype(int(fault["depth"]))
        return Distortion(doctype=doctype, feed_title=reference)
    if kind == "external_entity":
        system_id = render.escape_attr(str(fault["system_id"]))
        doctype = f'<!DOCTYPE S:Envelope [<!ENTITY xxe SYSTEM "{system_id}">]>'
        return Distortion(doctype=doctype, feed_title="&xxe;")
    return None


def _answer(
    store: Store,
    raw: bytes,
    enforce: Enforce | None,
    fault: Fault | None,
    now: datetime | None,
) -> Reply:
    try:
        envelope = parse_envelope(raw, enforced=enforce is not None)
    except RequestError as exc:
        return Reply.of(exc.spec, outcome="unparseable")
    if enforce is not None:
        denied = enforce(envelope, raw, requested_view(envelope))
        if denied is not None:
            return Reply.of(denied, outcome="security")
    payload = body_payload(envelope)
    if payload is None or payload.tag != f"{{{NS_KRS}}}ReplicationRequest":
        found = "nothing" if payload is None else f"{{{etree.QName(payload).namespace or ''}}}"
        if payload is not None:
            found += etree.QName(payload).localname
        return Reply.of(
            render.client_fault(f"Cannot find dispatch method for {found}"), outcome="dispatch"
        )
    try:
        request = read_request(payload)
    except SchemaError as exc:
        return Reply.of(render.client_fault(str(exc)), outcome="schema")
    view = request.view
    table = store.tables.get(view)
    if table is None:
        return Reply.of(
            render.replication_fault("urn:stamdata:unauthorized-access"),
            view=view,
            outcome="unauthorized",
        )
    try:
        after = split_offset(request.offset)
    except RequestError as exc:
        return Reply.of(exc.spec, view=view, offset=request.offset, outcome="bad-offset")
    limit = MAX_RECORDS if request.max_records is None else min(request.max_records, MAX_RECORDS)
    if fault is not None and fault.kind == "oversized_page":
        limit = int(fault["records"])
    header = envelope.find(f"{{{NS_SOAP}}}Header/{{{NS_MEDCOM}}}Header")
    # Rendered under the lock: an import running meanwhile cannot change rows under our feet.
    with store.lock:
        rows = table.page(after, limit) if limit > 0 else []
        datatype = table.datatype
        layout = store.shape.layout(datatype.key) if datatype.is_document else None
        body = render.render_response(
            datatype, rows, header, now=now, distortion=_distortion(fault), layout=layout
        )
    return Reply(200, body, summary={"view": view, "offset": request.offset, "rows": len(rows)})


def replicate(
    store: Store,
    raw: bytes,
    *,
    enforce: Enforce | None = None,
    fault: Fault | None = None,
    now: datetime | None = None,
) -> Reply:
    """Answer one `replicate` request (no I/O besides a requested delay)."""
    if fault is not None:
        kind = fault.kind
        if kind == "http_status":
            return Reply(
                int(fault["status"]),
                str(fault["body"]).encode(),
                "text/plain; charset=utf-8",
                summary={"fault": kind},
            )
        if kind == "reset":
            return Reply(0, b"", reset=True, summary={"fault": kind})
        if kind == "replication_fault":
            return Reply.of(
                render.replication_fault(str(fault["code"]), fault["message"]), fault=kind
            )
        if kind == "dgws_fault":
            return Reply.of(render.dgws_fault(str(fault["code"]), fault["message"]), fault=kind)
        if kind == "delay":
            time.sleep(float(fault["seconds"]))
    reply = _answer(store, raw, enforce, fault, now)
    if fault is not None:
        reply.summary["fault"] = fault.kind
        if fault.kind == "truncate":
            wanted = fault["bytes"]
            cut = len(reply.body) // 2 if wanted is None else int(wanted)
            reply.send_bytes = max(0, min(cut, len(reply.body) - 1))
        elif fault.kind == "malformed_xml":
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
    return reply
