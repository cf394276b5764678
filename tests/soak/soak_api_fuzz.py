"""Soak: fuzz the API over real HTTP with schemathesis (positive and negative examples for every
operation) plus the hostile parameter and body catalogue of tests/reliability/hostile.py.

    python -m tests.soak.soak_api_fuzz [--examples 100] [--seed 1]

`--examples` is per operation and generation mode (10 operations × 2 modes × 100 = up to
2000 requests). Needs PostgreSQL like the test suite. Prints a JSON summary; exit 1 on any 5xx,
stack trace or non-problem+json error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any, cast

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.generation import GenerationMode

from api.app import create_app
from sorsync.logs import configure
from tests.fixtures.api import load_sor_data, record_sync_run
from tests.reliability import hostile
from tests.reliability.harness import ApiServer, private_database


def _content_type(headers: Any) -> str:
    value = headers.get("content-type", "")
    return str(value[0] if isinstance(value, list) and value else value)


def fuzz(base: str, openapi: dict[str, Any], examples: int, rng_seed: int) -> dict[str, Any]:
    schema = schemathesis.openapi.from_dict(openapi)
    statuses: Counter[str] = Counter()
    per_operation: Counter[str] = Counter()
    problems: list[str] = []
    skipped: list[str] = []

    def runner(operation: Any, mode: GenerationMode, label: str) -> Any:
        @seed(rng_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            response = case.call(base_url=base, timeout=30)
            per_operation[label] += 1
            statuses[str(response.status_code)] += 1
            answer = hostile.Answer(
                response.status_code,
                _content_type(response.headers),
                response.content,
                f"{case.method} {case.formatted_path}".encode(),
            )
            problems.extend(answer.problems(case.formatted_path))

        return run

    for result in schema.get_all_operations():
        operation = cast(Any, result).ok()  # an Ok: the document is our own, and valid
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode.value}]"
            try:
                runner(operation, mode, label)()
            except Exception as exc:  # e.g. no negative examples exist for an operation
                skipped.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
    return {
        "requests": sum(per_operation.values()),
        "per_operation": dict(sorted(per_operation.items())),
        "statuses": dict(sorted(statuses.items())),
        "problems": problems[:50],
        "problem_count": len(problems),
        "not_generated": skipped,
    }


def catalogue(port: int, openapi: dict[str, Any], valid: dict[str, str]) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    sent = 0
    for template, target in hostile.parameter_requests(openapi, valid):
        answer = hostile.get(port, target)
        sent += 1
        statuses[answer.status] += 1
        problems += answer.problems(template)
    big = json.dumps({"codes": ["800110"], "padding": "x" * (10 * 1024 * 1024)}).encode()
    bodies = {
        "10MB declared": hostile.post_json(port, b"/v1/shak/resolve", big),
        "10MB chunked": hostile.post_json(port, b"/v1/shak/resolve", big, chunked=True),
        "10001 codes": hostile.post_json(
            port, b"/v1/shak/resolve", json.dumps({"codes": ["8001"] * 10_001}).encode()
        ),
        "malformed JSON": hostile.post_json(port, b"/v1/shak/resolve", b"{not json"),
        "nested 100k": hostile.post_json(
            port, b"/v1/shak/resolve", b"[" * 100_000 + b"]" * 100_000
        ),
    }
    for answer in bodies.values():
        problems += answer.problems("/v1/shak/resolve")
    return {
        "parameter_requests": sent,
        "parameter_statuses": dict(sorted(statuses.items())),
        "bodies": {name: a.status for name, a in bodies.items()},
        "problems": problems[:50],
        "problem_count": len(problems),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    configure(level="ERROR")
    started = time.perf_counter()
    openapi = create_app(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none").openapi()
    with private_database("sorsync_fuzz") as (url, engine):
        data = load_sor_data(engine)
        record_sync_run(engine)
        server = ApiServer(url)
        try:
            report: dict[str, Any] = {
                "schemathesis": fuzz(server.base, openapi, args.examples, args.seed),
                "catalogue": catalogue(
                    server.port,
                    openapi,
                    {
                        "sor_id": data.department,
                        "shak": "800110",
                        "ydernummer": "19062",
                        "gln": data.praksis_gln,
                    },
                ),
            }
        finally:
            server.stop()
    report["seconds"] = round(time.perf_counter() - started, 1)
    server_errors = sum(
        n for status, n in report["schemathesis"]["statuses"].items() if status.startswith("5")
    )
    report["server_errors"] = server_errors
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    failed = (
        report["schemathesis"]["requests"] < 1000
        or server_errors
        or report["schemathesis"]["problem_count"]
        or report["catalogue"]["problem_count"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
