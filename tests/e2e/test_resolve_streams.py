"""POST /v1/resolve streamed as CSV and NDJSON against `sorsync serve` over HTTP (tracker issue
#24): 100 000 items answered in order while the body still arrives, bad rows answered on their
own row, and a body cut off mid-stream ending the answer with an error row (docs/back-mapping.md,
"Streams"). The demo data (the simulator's bundled snapshot, v1 and SOR2, plus one SHAK code
mapped to two units) is synced from the simulator over HTTP on 127.0.0.1.

The server answers while the body arrives and stops reading when its answer is not read, so
every request here sends its body from a thread while the test reads the answer.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import http.client
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx2
import orjson
import pytest
from sqlalchemy import Engine, text

from api.routes import resolve as resolve_route
from sorsync.datatypes import SOR2_DATATYPES, V1_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.db import views
from sorsync.krs.client import KrsClient
from sorsync.lookup import resolve as rs
from sorsync.mapping import default_mapping
from sorsync.simulator.server import serve_in_thread
from sorsync.sync import sync
from tests.fixtures.api import empty_replica
from tests.fixtures.db import kill_api_connections
from tests.fixtures.serve import serve_process
from tests.fixtures.simulator import AMBIGUOUS_SHAK, demo_store

TOTAL = 100_000
HOLD = 20_000  # items sent before the sender waits for the first answer bytes
PIECE = 1_000  # items a write
STATUSES = {"found", "not_found", "invalid", "ambiguous"}
CUT = "the request body was cut off before its end"


@pytest.fixture(scope="module")
def base(engine: Engine, database_url: str) -> Iterator[str]:
    """`sorsync serve` on the demo data synced from the simulator (v1 and SOR2 datatypes)."""
    store = demo_store()
    dts = [datatype(key) for key in (*V1_DATATYPES, *SOR2_DATATYPES)]
    handle = serve_in_thread(store)
    empty_replica(engine)
    try:
        with KrsClient(handle.url, timeout=60) as client:
            result = sync(engine, client, dts, kind="full")
        assert result.ok, result.error
        views.ensure(engine, default_mapping(), dts)
        with serve_process(database_url) as url:
            yield url
    finally:
        handle.stop()
        empty_replica(engine)


@pytest.fixture(scope="module")
def samples(base: str, engine: Engine) -> list[tuple[str, str, str]]:
    """(code, kind, date) items of every kind and status, codes read from the replica."""
    with engine.connect() as conn:
        sor_id = conn.execute(text("SELECT min(sor_id) FROM sor.unit")).scalar_one()
        ean = conn.execute(text("SELECT min(ean) FROM sor.unit")).scalar_one()
        yder = conn.execute(text("SELECT min(ydernummer) FROM sor.unit")).scalar_one()
        shak = conn.execute(text("SELECT min(shak) FROM sor.unit")).scalar_one()
    assert None not in (sor_id, ean, yder, shak)
    codes = [
        (str(shak), "shak"), (str(sor_id), "sor"), (str(ean), "ean"), (str(yder), "ydernummer"),
        (AMBIGUOUS_SHAK, "shak"), ("9999", "shak"), ("15x", "shak"), ("123", "sor"),
        ("5790000000013", "ean"), ("12a", "ydernummer"),
    ]  # fmt: skip
    return [(c, k, d) for c, k in codes for d in ("", "2021-06-01", "2025-06-01", "2019-03-15")]


def _item(i: int, samples: list[tuple[str, str, str]]) -> tuple[str, str, str]:
    """Item i: every seventh a distinct SHAK code (not found; it checks the order), else a
    sample in turn."""
    if i % 7 == 0:
        return (f"Q{i:06d}", "shak", "2024-01-01")
    return samples[i % len(samples)]


@dataclass
class Sent:
    """What the sender thread has sent, and when the answer's first bytes were read; `midway`
    runs once, in the sender, after HOLD items and the answer's first rows."""

    items: int = 0
    at_first_answer: int | None = None
    answered: threading.Event = field(default_factory=threading.Event)
    rows: threading.Event = field(default_factory=threading.Event)  # more than a header
    error: BaseException | None = None
    midway: Callable[[], None] | None = None


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _send(
    conn: http.client.HTTPConnection, pieces: Iterator[tuple[int, bytes]], sent: Sent
) -> None:
    """Send the body chunked; after HOLD items wait for the answer's first bytes, so the check
    that the answer starts before the body ends does not depend on socket buffer sizes."""
    try:
        for n, data in pieces:
            if sent.items >= HOLD and not sent.answered.is_set():
                sent.answered.wait(timeout=60)
            if sent.items >= HOLD and sent.midway is not None:
                midway, sent.midway = sent.midway, None
                sent.rows.wait(timeout=60)
                midway()
            conn.send(_chunk(data))
            sent.items += n
        conn.send(b"0\r\n\r\n")
    except BaseException as exc:  # reported by the reading side
        sent.error = exc


def _stream(
    base: str,
    media: str,
    pieces: Iterator[tuple[int, bytes]],
    midway: Callable[[], None] | None = None,
    *,
    whole_body: bool = True,
) -> tuple[bytes, Sent]:
    """The answer to `pieces` sent as a chunked body; `whole_body` False for an answer that
    may end before the body is sent (the sender's failure to send the rest is not one)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    conn.putrequest("POST", "/v1/resolve")
    conn.putheader("Content-Type", media)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    # Closed while the sender may still be sending (an answer that ends early): its next send
    # must fail, not open a new connection that nobody closes.
    conn.auto_open = 0
    sent = Sent(midway=midway)
    sender = threading.Thread(target=_send, args=(conn, pieces, sent), daemon=True)
    sender.start()
    try:
        response = conn.getresponse()
        assert response.status == 200, response.read()[:500]
        body = bytearray(response.read1(1 << 16))
        sent.at_first_answer = sent.items
        sent.answered.set()
        while data := response.read1(1 << 16):
            body += data
            if not sent.rows.is_set() and body.count(b"\n") > 1:
                sent.rows.set()
        if not whole_body:
            return bytes(body), sent
        sender.join(timeout=60)
        assert sent.error is None, sent.error
        return bytes(body), sent
    finally:
        sent.answered.set()
        sent.rows.set()
        if conn.sock is not None:  # wakes a sender blocked on a full socket buffer
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        sender.join(timeout=60)


def _pieces(lines: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) == PIECE:
            yield len(batch), b"".join(batch)
            batch = []
    if batch:
        yield len(batch), b"".join(batch)


def _csv_lines(items: Iterator[tuple[str, str, str]]) -> Iterator[bytes]:
    yield b"code,kind,date\n"
    for code, kind, day in items:
        yield f"{code},{kind},{day}\n".encode()


def _ndjson_lines(items: Iterator[tuple[str, str, str]]) -> Iterator[bytes]:
    for code, kind, day in items:
        yield orjson.dumps({"code": code, "kind": kind, **({"date": day} if day else {})}) + b"\n"


def _reference(base: str, samples: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    """Each sample's status by the JSON request (keyed by code, date as written)."""
    body = {"items": [{"code": c, "kind": k, **({"date": d} if d else {})} for c, k, d in samples]}
    r = httpx2.post(base + "/v1/resolve", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return {(c, d): a["status"] for (c, _, d), a in zip(samples, r.json()["results"], strict=True)}


def _check(answers: list[tuple[str, str]], samples: list[tuple[str, str, str]], base: str) -> None:
    """(code, status) answers match the items in count, order and status."""
    reference = _reference(base, samples)
    assert len(answers) == TOTAL
    seen: set[str] = set()
    for i, (code, status) in enumerate(answers):
        want_code, _, day = _item(i, samples)
        assert code.upper() == want_code.upper(), f"answer {i} is for {code}, not {want_code}"
        want = "not_found" if i % 7 == 0 else reference[(want_code, day)]
        assert status == want, f"answer {i} ({code}, {day!r}): {status}, not {want}"
        seen.add(status)
    assert seen == STATUSES


def test_100_000_items_as_csv(base: str, samples: list[tuple[str, str, str]]) -> None:
    items = (_item(i, samples) for i in range(TOTAL))
    body, sent = _stream(base, "text/csv", _pieces(_csv_lines(items)))
    assert sent.at_first_answer is not None
    assert sent.at_first_answer < TOTAL, sent
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    _check([(r["code"], r["status"]) for r in rows], samples, base)


def test_100_000_items_as_ndjson(base: str, samples: list[tuple[str, str, str]]) -> None:
    items = (_item(i, samples) for i in range(TOTAL))
    body, sent = _stream(base, "application/x-ndjson", _pieces(_ndjson_lines(items)))
    assert sent.at_first_answer is not None
    assert sent.at_first_answer < TOTAL, sent
    lines = [orjson.loads(line) for line in body.splitlines()]
    _check([(a["code"], a["status"]) for a in lines], samples, base)


def test_a_json_batch_asked_in_parts_answers_as_a_stream(
    base: str, samples: list[tuple[str, str, str]]
) -> None:
    """10 000 distinct items as one JSON request (asked in parts on two connections at once)
    get, item for item, the answers the NDJSON stream gives (asked a chunk at a time)."""
    first = dt.date(2015, 1, 1)
    items = [
        (code, kind, "" if i % 50 == 0 else (first + dt.timedelta(days=i)).isoformat())
        for i in range(resolve_route.MAX_ITEMS)
        for code, kind, _ in [_item(i, samples)]
    ]
    assert len(set(items)) > 2 * resolve_route.MIN_PART  # more than one part
    body = {"items": [{"code": c, "kind": k, **({"date": d} if d else {})} for c, k, d in items]}
    r = httpx2.post(base + "/v1/resolve", json=body, timeout=60)
    assert r.status_code == 200, r.text[:500]
    streamed, _ = _stream(base, "application/x-ndjson", _pieces(_ndjson_lines(iter(items))))
    assert r.json()["results"] == [orjson.loads(line) for line in streamed.splitlines()]
    assert {a["status"] for a in r.json()["results"]} >= {"found", "not_found", "invalid"}


# --- the database mid-stream -------------------------------------------------------------------


def _killed(engine: Engine) -> None:
    assert kill_api_connections(engine), "no connection of the API's to kill"


def test_connections_killed_mid_stream_are_answered_on_fresh_ones(
    base: str, samples: list[tuple[str, str, str]], engine: Engine
) -> None:
    """The database restarted under a stream (its connections gone): reads are idempotent, so
    the chunk is asked again on a fresh connection and every item is answered."""
    items = (_item(i, samples) for i in range(TOTAL))
    body, _ = _stream(base, "text/csv", _pieces(_csv_lines(items)), lambda: _killed(engine))
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    _check([(r["code"], r["status"]) for r in rows], samples, base)


def test_the_database_failing_mid_stream_ends_with_an_error_row(
    base: str, samples: list[tuple[str, str, str]], engine: Engine
) -> None:
    """sor.resolve gone mid-stream (an error that asking again does not cure): the chunks
    answered before it stand, in order, and the last row says the stream stopped."""
    with engine.connect() as conn:
        function = conn.execute(
            text("SELECT 'sor.resolve'::regproc::regprocedure::text")
        ).scalar_one()
    args = function.partition("(")[2]

    def drop_resolve() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER FUNCTION {function} RENAME TO resolve_gone"))

    items = (_item(i, samples) for i in range(TOTAL))
    try:
        body, _ = _stream(
            base, "text/csv", _pieces(_csv_lines(items)), drop_resolve, whole_body=False
        )
    finally:
        with engine.begin() as conn:
            gone = conn.execute(text("SELECT to_regproc('sor.resolve_gone')")).scalar_one()
            if gone is not None:
                conn.execute(text(f"ALTER FUNCTION sor.resolve_gone({args} RENAME TO resolve"))
    *answered, last = list(csv.DictReader(io.StringIO(body.decode())))
    assert last["status"] == "error", last
    assert "stopped: the database" in last["detail"], last
    assert rs.CHUNK <= len(answered) < TOTAL - rs.CHUNK
    assert len(answered) % rs.CHUNK == 0  # whole chunks
    for i, row in enumerate(answered):
        assert row["code"].upper() == _item(i, samples)[0].upper(), (i, row)
    _still_serving(base)


# --- bad rows -----------------------------------------------------------------------------------

# Item position in the stream → (a bad CSV row, what its detail says, a bad NDJSON line, what
# its detail says).
BAD = {
    2_500: ("shak,1575,2025-99-99", "date", '{"code": "1575", "date": "2025-99-99"}', "date"),
    5_001: ("hospital,1575,2025-06-01", "kind", '{"code": "1575", "kind": "hospital"}', "kind"),
    7_777: ("shak", "code is missing", '{"code": "1575", "date"', "is not JSON"),
    9_999: ("shak,,2025-06-01", "code", "[1575]", "is not a JSON object"),
}
SPAN = 12_000


def _good(i: int) -> tuple[str, str, str]:
    return (f"Q{i:06d}", "shak", "2024-01-01")


def test_bad_csv_rows_are_answered_on_their_own_row(base: str) -> None:
    def lines() -> Iterator[bytes]:
        yield b"kind,code,date\n"  # "shak" alone is a row with too few fields: no code
        for i in range(SPAN):
            if i in BAD:
                yield BAD[i][0].encode() + b"\n"
            else:
                code, kind, day = _good(i)
                yield f"{kind},{code},{day}\n".encode()

    body, _ = _stream(base, "text/csv", _pieces(lines()))
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == SPAN
    for i, row in enumerate(rows):
        if i in BAD:
            assert row["status"] == "invalid", (i, row)
            assert BAD[i][1] in row["detail"], (i, row)
        else:
            assert (row["code"], row["status"]) == (_good(i)[0], "not_found"), (i, row)
    assert rows[5_001]["detail"] != rows[2_500]["detail"]


def test_blank_csv_rows_are_skipped_and_an_unreadable_one_ends_the_stream(base: str) -> None:
    good = [_good(i) for i in range(3)]
    lines = [b"code,kind,date\n", b"%s,%s,%s\n" % tuple(v.encode() for v in good[0])]
    lines += [b"\n", b" , ,\t\n", b"%s,%s,%s\n" % tuple(v.encode() for v in good[1])]
    lines += [b'"Q0"02,shak,2024-01-01\n', b"%s,%s,%s\n" % tuple(v.encode() for v in good[2])]
    body, _ = _stream(base, "text/csv", iter([(len(lines), b"".join(lines))]))
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    # The rows before the unreadable one are answered, then the error row; none after it.
    assert [(r["code"], r["status"]) for r in rows[:2]] == [
        (good[0][0], "not_found"),
        (good[1][0], "not_found"),
    ]
    assert len(rows) == 3, rows
    assert rows[2]["status"] == "error"
    assert "the CSV cannot be read on from here" in rows[2]["detail"]


def test_bad_ndjson_lines_are_answered_on_their_own_line(base: str) -> None:
    def lines() -> Iterator[bytes]:
        for i in range(SPAN):
            if i in BAD:
                yield BAD[i][2].encode() + b"\n"
            else:
                code, _, day = _good(i)
                yield orjson.dumps({"code": code, "date": day}) + b"\n"

    body, _ = _stream(base, "application/x-ndjson", _pieces(lines()))
    answers = [orjson.loads(line) for line in body.splitlines()]
    assert len(answers) == SPAN
    for i, a in enumerate(answers):
        if i in BAD:
            assert a["status"] == "invalid", (i, a)
            assert BAD[i][3] in a["detail"], (i, a)
            if "JSON" in BAD[i][3]:
                assert f"line {i + 1} " in a["detail"], (i, a)
        else:
            assert (a["code"], a["status"]) == (_good(i)[0], "not_found"), (i, a)
    assert answers[7_777]["code"] == "1575"  # read from the line that is not JSON


# --- bodies cut off -----------------------------------------------------------------------------


def _read_all(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not close
    within `within` seconds."""
    deadline = time.monotonic() + within
    data = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            pytest.fail(f"the server neither closed nor finished in {within} s: {data[-300:]!r}")
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _dechunk(raw: bytes) -> tuple[bytes, bytes, bool]:
    """(head, body so far, whether the body's terminating chunk came) of a chunked answer."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    body = b""
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return head, body, True
        body += rest[:size]
        rest = rest[size + 2 :]
    return head, body, False


def _still_serving(base: str) -> None:
    r = httpx2.post(
        base + "/v1/resolve", content=b"code\nQ000001\n", headers={"content-type": "text/csv"},
        timeout=10,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert [row["status"] for row in csv.DictReader(io.StringIO(r.text))] == ["not_found"]


def _cut_off(base: str, media: str, lines: list[bytes], *, chunked: bool) -> tuple[bytes, bytes]:
    """Send the head and the first half of `lines` as a body announced longer, then close the
    write side; (the answer's head, its body)."""
    parts = urlsplit(base)
    whole = b"".join(lines)
    part = b"".join(lines[: len(lines) // 2]) + lines[len(lines) // 2][:5]
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        # a chunk announced at its whole size of which only a part comes
        sent = b"%x\r\n" % len(whole) + part
    else:
        framing = b"Content-Length: %d\r\n" % len(whole)
        sent = part
    head = b"POST /v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n%s\r\n" % (
        media.encode(),
        framing,
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + sent)
        time.sleep(0.5)  # the server reads and answers what came
        sock.shutdown(socket.SHUT_WR)
        raw = _read_all(sock, within=10)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    if b"transfer-encoding: chunked" in raw.partition(b"\r\n\r\n")[0].lower():
        answer_head, body, _ = _dechunk(raw)
    else:
        answer_head, _, body = raw.partition(b"\r\n\r\n")
    return answer_head, body


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_csv_body_cut_off_ends_with_an_error_row(base: str, chunked: bool) -> None:
    lines = [b"code,kind,date\n", *(f"Q{i:06d},shak,2024-01-01\n".encode() for i in range(SPAN))]
    _, body = _cut_off(base, "text/csv", lines, chunked=chunked)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert rows, body[:300]
    *answered, last = rows
    assert last["status"] == "error", last
    assert CUT in last["detail"], last
    # every whole row that came is answered (the header and half the items; not the part row)
    assert [r["code"] for r in answered] == [f"Q{i:06d}" for i in range(len(lines) // 2 - 1)]
    assert all(r["status"] == "not_found" for r in answered)
    _still_serving(base)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_ndjson_body_cut_off_ends_with_an_error_line(base: str, chunked: bool) -> None:
    lines = [orjson.dumps({"code": f"Q{i:06d}"}) + b"\n" for i in range(SPAN)]
    _, body = _cut_off(base, "application/x-ndjson", lines, chunked=chunked)
    *answered, last = [orjson.loads(line) for line in body.splitlines()]
    assert CUT in last["error"]["detail"], last
    # every whole line that came is answered (half of them; not the part line)
    assert [a["code"] for a in answered] == [f"Q{i:06d}" for i in range(len(lines) // 2)]
    assert last["error"]["line"] == len(answered) + 1
    _still_serving(base)


def test_a_socket_closed_mid_body_leaves_the_server_serving(base: str) -> None:
    """The client goes away altogether: nothing to answer, but nothing left hanging."""
    parts = urlsplit(base)
    lines = b"".join(f"Q{i:06d}\n".encode() for i in range(SPAN))
    head = b"POST /v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
    for framing, sent in (
        (b"Transfer-Encoding: chunked\r\n", b"%x\r\ncode\n" % (len(lines) + 5) + lines[:30_000]),
        (b"Content-Length: %d\r\n" % (len(lines) + 5), b"code\n" + lines[:30_000]),
    ):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head + framing + b"\r\n" + sent)
            time.sleep(0.3)
        _still_serving(base)
