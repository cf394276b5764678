"""Errors as RFC 9457 `application/problem+json` (and as FHIR OperationOutcome under /fhir).

Every problem has a stable `type` URI under PROBLEM_BASE (documented in docs/api.md); `detail`
says what was wrong and what to do. No stack trace or SQL ever reaches a client: unexpected
exceptions become a bare 500 `internal-error`, logged server-side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sorsync import identifiers
from sorsync.logs import get_logger

PROBLEM_BASE = "https://sorsync.dev/problems/"
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    status: int
    title: str
    fhir_code: str  # OperationOutcome.issue.code (R4 IssueType)

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug


_TYPES = (
    ProblemType("invalid-sor-id", 422, "Invalid SOR id", "value"),
    ProblemType("invalid-shak", 422, "Invalid SHAK code", "value"),
    ProblemType("invalid-gln", 422, "Invalid GLN", "value"),
    ProblemType("invalid-ydernummer", 422, "Invalid ydernummer", "value"),
    ProblemType("invalid-date", 422, "Invalid date", "value"),
    ProblemType("invalid-parameter", 422, "Invalid parameter", "value"),
    ProblemType("invalid-body", 422, "Invalid request body", "structure"),
    ProblemType("malformed-json", 400, "Malformed JSON", "structure"),
    ProblemType("invalid-identifier", 400, "Invalid identifier search", "value"),
    ProblemType("too-many-codes", 413, "Too many codes", "too-costly"),
    ProblemType("request-too-large", 413, "Request body too large", "too-costly"),
    ProblemType("unsupported-media-type", 415, "Unsupported media type", "not-supported"),
    ProblemType("not-found", 404, "Not found", "not-found"),
    ProblemType("method-not-allowed", 405, "Method not allowed", "not-supported"),
    ProblemType("database-unavailable", 503, "Database unavailable", "transient"),
    ProblemType("not-ready", 503, "Not ready", "transient"),
    ProblemType("internal-error", 500, "Internal error", "exception"),
)
PROBLEM_TYPES: dict[str, ProblemType] = {t.slug: t for t in _TYPES}


class ProblemError(Exception):
    """Raise to answer with a problem; `extensions` become extra members of the body."""

    def __init__(self, slug: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.type = PROBLEM_TYPES[slug]
        self.detail = detail
        self.extensions = extensions


def identifier_problem(value: str, validator: Callable[[str], str | None]) -> str | None:
    """sorsync.identifiers.identifier_problem (the batch lookups share its messages)."""
    return identifiers.identifier_problem(value, validator)


def require_valid(value: str, validator: Callable[[str], str | None], slug: str, what: str) -> None:
    """Raise problem `slug` unless `validator` (from sorsync.identifiers) accepts `value`."""
    problem = identifier_problem(value, validator)
    if problem is not None:
        raise ProblemError(slug, f"{value!r} is not {what}: {problem}.")


def _instance(request: Request) -> str:
    """The request path as sent (still percent-encoded, so it stays a valid URI reference)."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path


def _is_fhir(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def problem_response(
    request: Request,
    ptype: ProblemType,
    detail: str,
    extensions: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if _is_fhir(request):
        body: dict[str, Any] = operation_outcome(ptype.fhir_code, detail)
        media_type = FHIR_JSON
    else:
        body = {
            "type": ptype.uri,
            "title": ptype.title,
            "status": ptype.status,
            "detail": detail,
            "instance": _instance(request),
            **(extensions or {}),
        }
        media_type = PROBLEM_JSON
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    return Response(
        orjson.dumps(body), status_code=ptype.status, media_type=media_type, headers=all_headers
    )


# Which problem type a validation error on a given parameter is.
_PARAMETER_TYPES = {
    "sor_id": "invalid-sor-id",
    "shak": "invalid-shak",
    "gln": "invalid-gln",
    "ydernummer": "invalid-ydernummer",
    "date": "invalid-date",
}


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    # Only location, message and type: `input` may be large, `ctx` may not serialise.
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in errors
    ]


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_errors(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            request,
            PROBLEM_TYPES["malformed-json"],
            "The request body is not valid JSON; send a JSON object.",
            {"errors": errors},
        )
    slugs = set()
    for e in errors:
        loc = e["loc"]
        if loc and loc[0] == "body":
            slugs.add("invalid-body")
        else:
            slugs.add(_PARAMETER_TYPES.get(loc[-1] if loc else "", "invalid-parameter"))
    slug = slugs.pop() if len(slugs) == 1 else "invalid-parameter"
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return problem_response(request, PROBLEM_TYPES[slug], detail, {"errors": errors})


async def _problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc.type, exc.detail, exc.extensions)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return problem_response(
            request,
            PROBLEM_TYPES["method-not-allowed"],
            f"{request.method} is not allowed here; allowed: {allow or 'see the API docs'}.",
            headers={"Allow": allow} if allow else None,
        )
    if exc.status_code == 404:
        return problem_response(
            request,
            PROBLEM_TYPES["not-found"],
            f"No such resource: {request.url.path}. The API is described at /openapi.json.",
        )
    if exc.status_code == 400 and (unreadable := _unreadable_body(exc.__cause__)) is not None:
        detail, error = unreadable
        return problem_response(
            request, PROBLEM_TYPES["malformed-json"], detail, {"errors": [error]}
        )
    ptype = ProblemType("http-error", exc.status_code, "HTTP error", "processing")
    return problem_response(request, ptype, str(exc.detail))


def _unreadable_body(cause: BaseException | None) -> tuple[str, dict[str, Any]] | None:
    """Detail and `errors` entry for a body FastAPI's JSON parsing gave up on before decoding
    it (it answers a bare 400 "error parsing the body" then, with the cause chained): bytes
    that are not UTF-8, or nesting deeper than the parser's recursion limit. None otherwise."""
    if isinstance(cause, UnicodeDecodeError):
        # (No offset: after a UTF-8 BOM json.loads reports positions past the BOM.)
        where = ""
        if cause.encoding == "utf-8" and cause.start < len(cause.object):
            where = f" (byte 0x{cause.object[cause.start]:02X} is not allowed where it stands)"
        detail = f"The request body is not valid UTF-8{where}; send JSON encoded as UTF-8."
        loc = ["body"]
        msg = "Request body is not valid UTF-8"
    elif isinstance(cause, RecursionError):
        detail = (
            "The request body nests JSON arrays or objects too deeply to be read; send a JSON"
            " object shaped as described at /openapi.json."
        )
        loc = ["body"]
        msg = "JSON nested too deeply"
    else:
        return None
    return detail, {"loc": loc, "msg": msg, "type": "json_invalid"}


async def _database_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DBAPIError)
    unavailable = isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
    if not unavailable:  # a bug (bad SQL, …), not an outage
        return await _unexpected_handler(request, exc)
    # Log the class and the SQLSTATE only (say, 57P01 for a terminated backend, 53300 for too
    # many clients, none for a refused connection): driver messages can carry host and user names.
    log.warning(
        "database unavailable",
        path=request.url.path,
        error=type(exc).__name__,
        sqlstate=getattr(exc.orig, "sqlstate", None),
    )
    return problem_response(
        request,
        PROBLEM_TYPES["database-unavailable"],
        "The database cannot be reached right now; retry shortly.",
        headers={"Retry-After": "5"},
    )


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return problem_response(
        request,
        PROBLEM_TYPES["internal-error"],
        "Something went wrong on our side; it has been logged.",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(DBAPIError, _database_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
