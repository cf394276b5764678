"""Property-based tests of the API against its own OpenAPI document (schemathesis): for
generated requests — valid and invalid — no 5xx, documented status codes and content types,
and bodies that match the documented schemas."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.fixtures.api import SorData, one_node_per_operation


# POST /v1/resolve also takes CSV and NDJSON bodies (strings in its document): sent as they are.
@schemathesis.serializer("text/csv", "application/x-ndjson")
def _as_text(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()


# The document does not depend on the database, so it is loaded at import from an app with
# no database behind it; the requests go to the session app (`app=` below).
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
)


@schema.parametrize()
@one_node_per_operation
@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(
    case: Any, api_app: FastAPI, sor_data: SorData, operation_node: str
) -> None:
    case.call_and_validate(
        app=api_app,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
