"""Hostile input to the API over real HTTP (uvicorn on 127.0.0.1): schemathesis-generated
requests, oversized bodies and batches, malformed JSON, and unusual Unicode and path tricks in
every path and query parameter. No answer may be a 5xx, carry a stack trace, or be an error
in any other format than problem+json (OperationOutcome under /fhir)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.problems import PROBLEM_BASE, PROBLEM_TYPES
from tests.fixtures.api import SorData, load_sor_data, one_node_per_operation, record_sync_run
from tests.reliability import hostile
from tests.reliability.harness import ApiServer, private_database

EXAMPLES = int(os.environ.get("SORSYNC_FUZZ_EXAMPLES", "25"))  # per operation

# The document does not depend on the database (an app with none behind it serves it); the
# requests go over real HTTP to the live server (base_url).
OPENAPI = create_app(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none").openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


class Live:
    def __init__(self, server: ApiServer, data: SorData) -> None:
        self.server = server
        self.port = server.port
        self.data = data


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with private_database("sorsync_hostile") as (url, engine):
        data = load_sor_data(engine)
        record_sync_run(engine)
        server = ApiServer(url)
        try:
            yield Live(server, data)
        finally:
            server.stop()


@schemathesis.check
def no_stack_trace_and_problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    answer = hostile.Answer(
        response.status_code,
        response.headers.get("content-type", [""])[0]
        if isinstance(response.headers.get("content-type"), list)
        else str(response.headers.get("content-type", "")),
        response.content,
        f"{case.method} {case.formatted_path}".encode(),
    )
    problems = answer.problems(case.formatted_path)
    if problems:
        raise AssertionError("\n".join(problems))
    return None


@schema.parametrize()
@one_node_per_operation
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_schemathesis_finds_no_5xx_and_no_trace(case: Any, live: Live, operation_node: str) -> None:
    case.call_and_validate(
        base_url=live.server.base,
        checks=[not_a_server_error, no_stack_trace_and_problem_json],
    )


# --- bodies -----------------------------------------------------------------------------------


def _problem(answer: hostile.Answer, status: int, slug: str) -> dict[str, Any]:
    assert not answer.problems("/v1"), answer.problems("/v1")
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.content_type.startswith(hostile.PROBLEM_JSON)
    problem: dict[str, Any] = json.loads(answer.body)
    assert problem["type"].endswith("/" + slug), problem
    assert problem["status"] == status
    return problem


def _ten_megabytes() -> bytes:
    body = json.dumps({"codes": ["800110"], "padding": "x" * (10 * 1024 * 1024)}).encode()
    assert len(body) > 10_000_000
    return body


def test_ten_megabyte_body_is_refused_with_413(live: Live) -> None:
    _problem(
        hostile.post_json(live.port, b"/v1/shak/resolve", _ten_megabytes()),
        413,
        "request-too-large",
    )


def test_ten_megabyte_chunked_body_is_refused_with_413(live: Live) -> None:
    """Without a Content-Length (chunked transfer) the limit must hold just the same."""
    answer = hostile.post_json(live.port, b"/v1/shak/resolve", _ten_megabytes(), chunked=True)
    _problem(answer, 413, "request-too-large")


def test_batch_of_10000_is_answered_and_10001_refused(live: Live) -> None:
    codes = ["800110", "8001", "XYZ!", "9999"] * 2500
    ok = hostile.post_json(live.port, b"/v1/shak/resolve", json.dumps({"codes": codes}).encode())
    assert ok.status == 200, ok.body[:300]
    results = json.loads(ok.body)["results"]
    assert len(results) == 10_000
    assert Counter(r["status"] for r in results) == {
        "found": 5000,
        "invalid": 2500,
        "not_found": 2500,
    }
    too_many = hostile.post_json(
        live.port, b"/v1/shak/resolve", json.dumps({"codes": [*codes, "8001"]}).encode()
    )
    problem = _problem(too_many, 413, "too-many-codes")
    assert "10000" in problem["detail"] or "10 000" in problem["detail"]


MALFORMED: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("not-json", b"{not json", (400, 422)),
    ("truncated", b'{"codes": ["8001"', (400, 422)),
    ("trailing-garbage", b'{"codes": []} xyz', (400, 422)),
    ("empty", b"", (400, 422)),
    ("invalid-utf8", b'{"codes": ["\xff\xfe"]}', (400, 422)),
    ("utf16-bom", b"\xff\xfe{\x00}\x00", (400, 422)),
    ("nested-100k", b"[" * 100_000 + b"]" * 100_000, (400, 422)),
    ("nested-in-codes", b'{"codes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", (400, 422)),
    ("null", b"null", (422,)),
    ("array", b'["8001"]', (422,)),
    ("string", b'"8001"', (422,)),
    ("number", b"1e999", (400, 422)),
    ("codes-not-a-list", b'{"codes": "8001"}', (422,)),
    ("codes-wrong-types", b'{"codes": [null, 1, true, {}, []]}', (422,)),
    ("bad-date", b'{"codes": ["8001"], "date": "2024-02-30"}', (422,)),
    ("date-number", b'{"codes": ["8001"], "date": 20240101}', (422,)),
    ("huge-string", b'{"codes": ["' + b"8" * 900_000 + b'"]}', (200, 413, 422)),
    ("duplicate-keys", b'{"codes": ["8001"], "codes": "x"}', (422,)),
]


@pytest.mark.parametrize(("name", "body", "statuses"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bodies_are_refused_cleanly(
    live: Live, name: str, body: bytes, statuses: tuple[int, ...]
) -> None:
    answer = hostile.post_json(live.port, b"/v1/shak/resolve", body)
    assert not answer.problems("/v1/shak/resolve"), answer.problems("/v1/shak/resolve")
    assert answer.status in statuses, (name, answer.status, answer.body[:300])
    if answer.status >= 400:
        problem = json.loads(answer.body)
        assert problem["status"] == answer.status
        # only the documented problem types (docs/api.md), never a generic one
        assert problem["type"].removeprefix(PROBLEM_BASE) in PROBLEM_TYPES, (name, problem)


def test_json_sent_as_another_content_type(live: Live) -> None:
    for content_type in (
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data",
    ):
        answer = hostile.post_json(
            live.port, b"/v1/shak/resolve", b'{"codes": ["8001"]}', content_type=content_type
        )
        assert not answer.problems("/v1/shak/resolve"), answer.problems("/v1/shak/resolve")


# --- parameters -------------------------------------------------------------------------------


def test_unusual_unicode_and_path_tricks_in_every_parameter(live: Live) -> None:
    openapi = OPENAPI
    valid = {
        "sor_id": live.data.department,
        "shak": "800110",
        "ydernummer": "19062",
        "gln": live.data.praksis_gln,
    }
    problems: list[str] = []
    statuses: Counter[int] = Counter()
    sent = 0
    for template, target in hostile.parameter_requests(openapi, valid):
        answer = hostile.get(live.port, target)
        sent += 1
        statuses[answer.status] += 1
        problems += answer.problems(template)
    assert sent > 500
    assert not problems, "\n".join(problems[:20])
    # 307: starlette redirects a trailing slash (an empty last segment)
    assert set(statuses) <= {200, 307, 400, 404, 422}, statuses
