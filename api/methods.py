"""The methods of every path told right: 405 with the `Allow` the path really has.

Starlette answers from the first route whose path matches, so `GET /v1/shak/resolve` ran the
`/v1/shak/{shak}` lookup for the code "resolve" (422), and `OPTIONS /v1/shak/resolve` said
`Allow: GET`. This middleware knows every documented path with its methods (from the OpenAPI
schema the routes make): a path without parameters wins over the `{…}` ones that also match
it, and a method the path lacks gets 405 with the path's own `Allow` before routing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import PROBLEM_TYPES, problem_response

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class _Table:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.literal: dict[str, frozenset[str]] = {}
        self.patterns: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for path, item in schema.get("paths", {}).items():
            allowed = {m.upper() for m in item if m in _METHODS}
            if "GET" in allowed:
                allowed.add("HEAD")
            if "{" in path:
                regex = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path))
                self.patterns.append((re.compile(f"^{regex}$"), frozenset(allowed)))
            else:
                self.literal[path] = frozenset(allowed)

    def allowed(self, path: str) -> frozenset[str] | None:
        found = self.literal.get(path)
        if found is not None:
            return found
        methods: set[str] = set()
        for pattern, allowed in self.patterns:
            if pattern.match(path):
                methods |= allowed
        return frozenset(methods) if methods else None


class AllowedMethods:
    """ASGI middleware: 405 + the right `Allow` for a method the path does not have."""

    def __init__(self, app: ASGIApp, schema: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.schema = schema
        self.table: _Table | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.table is None:
                self.table = _Table(self.schema())  # the routes are all in place by now
            allowed = self.table.allowed(scope["path"])
            if allowed is not None and scope["method"] not in allowed:
                allow = ", ".join(sorted(allowed))
                response = problem_response(
                    Request(scope),
                    PROBLEM_TYPES["method-not-allowed"],
                    f"{scope['method']} is not allowed here; allowed: {allow}.",
                    headers={"Allow": allow},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
