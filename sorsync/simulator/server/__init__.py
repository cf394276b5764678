"""The simulator's SOAP server: NSP's KopiRegisterService over HTTP, serving a `Store`.

`POST <SERVICE_PATH>` answers `replicate` in NSP's processing order
(docs/reference/krs-protocol.md §3.5):

1. parse the envelope (lxml, no entities, no network, DOCTYPE rejected);
2. the optional security hook (`enforce`, plugged in by sorsync.testing) — DGWS faults;
3. the body against the request schema — plain `S:Client` fault with the schema error;
4. `register/datatype/vN` served (`register/vR/datatype/vN` with a `registerVersion` above 1,
   e.g. `sor/v2/sorentity/v1`)? — else `urn:stamdata:unauthorized-access` (NSP checks the
   client's permission before it looks the view up, so unknown views and unknown register
   versions answer like this too);
5. the offset token — `invalid-history-offset` (seconds part) / `internal-error` (PID part);
6. a page of `min(maxRecords, 2000)` rows after the token, in (ModifiedDate, PID) order.

`GET <SERVICE_PATH>?wsdl` serves the WSDL. Admin endpoints (tests and demos only; no
authentication, so keep the server on loopback): `POST /admin/snapshot` (load a SorTree XML
snapshot, answer the import report as JSON), `GET /admin/state`, `GET|POST|DELETE
/admin/faults` (see faults.py) and `GET|POST|DELETE /admin/shape` (how SOR2 records are
rendered: namespace, date style, renamed/dropped/added elements; see sor2.RecordShape).

The parts, imports flowing down: `http` (the server, routing, reading and sending) →
`replicate` (the steps in order, the page, injected faults), `admin` (the admin answers),
`wsdl` (the served contract) → `requests` (the envelope, body and offset read and checked, each
failure as NSP's fault). This package keeps the names the rest of sorsync, the tests and the
benchmarks import.
"""

from sorsync.simulator.render import SoapFaultSpec
from sorsync.simulator.server.admin import jsonable
from sorsync.simulator.server.http import (
    MAX_REQUEST_BYTES,
    SimulatorHandle,
    SimulatorServer,
    serve,
    serve_in_thread,
)
from sorsync.simulator.server.replicate import Enforce, Reply, replicate
from sorsync.simulator.server.requests import (
    ReplicationRequest,
    RequestError,
    SchemaError,
    parse_envelope,
    read_request,
    requested_view,
    split_offset,
)
from sorsync.simulator.server.wsdl import wsdl_document

__all__ = [
    "MAX_REQUEST_BYTES",
    "Enforce",
    "ReplicationRequest",
    "Reply",
    "RequestError",
    "SchemaError",
    "SimulatorHandle",
    "SimulatorServer",
    "SoapFaultSpec",
    "jsonable",
    "parse_envelope",
    "read_request",
    "replicate",
    "requested_view",
    "serve",
    "serve_in_thread",
    "split_offset",
    "wsdl_document",
]
