"""Pieces shared by the route modules: documented error responses and path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from api.problems import PROBLEM_JSON, PROBLEM_TYPES, ProblemError, require_valid
from api.schemas import SOR_ID_EXAMPLE
from sorsync import identifiers

_DESCRIPTIONS = {
    304: "Not modified: the `If-None-Match` ETag is current.",
    400: "Malformed request (`malformed-json`, `invalid-identifier`).",
    404: "Nothing found (`not-found`).",
    413: "Too many codes or too large a body (`too-many-codes`, `request-too-large`).",
    415: "The body is in a format not accepted here (`unsupported-media-type`).",
    422: "Malformed input (`invalid-sor-id`, `invalid-shak`, `invalid-gln`, "
    "`invalid-ydernummer`, `invalid-date`, `invalid-parameter`, `invalid-body`).",
    503: "The database is unreachable (`database-unavailable`); retry.",
}


def problem_responses(*statuses: int, media_type: str = PROBLEM_JSON) -> dict[int | str, Any]:
    """OpenAPI entries for error statuses; api.app points their schema at Problem (or at
    OperationOutcome for FHIR) when it builds the document."""
    out: dict[int | str, Any] = {}
    for status in statuses:
        if status == 304:
            out[status] = {"description": _DESCRIPTIONS[status]}
        else:
            out[status] = {"description": _DESCRIPTIONS[status], "content": {media_type: {}}}
    return out


LOOKUP_ERRORS = problem_responses(304, 404, 422, 503)

SOR_ID_PATTERN = r"^[1-9][0-9]{0,7}100001600[0-9]$"
# Lower-case letters are accepted too and normalised (sorsync.identifiers.normalise_shak).
SHAK_PATTERN = r"^[0-9A-Za-z]{4}([0-9A-Za-z]{2}[0-9A-Za-z]?)?$"
GLN_PATTERN = r"^[0-9]{13}$"
YDER_PATTERN = r"^[0-9]{1,9}$"

SorIdPath = Annotated[
    str,
    Path(
        description="SOR id: 11-18 digits ending in namespace 1000016, partition 00 and a "
        "Verhoeff check digit.",
        json_schema_extra={"pattern": SOR_ID_PATTERN},
        examples=[SOR_ID_EXAMPLE],
    ),
]


def sor_id_int(value: str) -> int:
    """Validate a SOR id (before any query) and return it as the bigint stored in krs."""
    require_valid(value, identifiers.sor_id_problem, "invalid-sor-id", "a SOR id")
    return int(value)


def not_found(detail: str) -> ProblemError:
    return ProblemError("not-found", detail)


__all__ = ["LOOKUP_ERRORS", "PROBLEM_TYPES", "SorIdPath", "not_found", "problem_responses"]
