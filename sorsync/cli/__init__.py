"""Command line entry point: `sorsync …` (see docs/reference/design.md §4)."""

from __future__ import annotations

import sys

from sorsync.cli import (  # noqa: F401 - registers commands
    db,
    generate,
    grants,
    krs,
    resolve,
    run,
    scheduler,
    serve,
    simulator,
    sync,
)
from sorsync.cli.app import EXIT_CONFIG, app
from sorsync.config import ConfigError


def main() -> None:
    run.tie_to_parent()
    try:
        app()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201 - one line a person can act on
        raise SystemExit(EXIT_CONFIG) from None
