"""Shared fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.simulator",
    "tests.fixtures.sync",
    "tests.fixtures.api",
    "tests.fixtures.files",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`, scripts/test): the tests of a module that share a
    module-scoped fixture (a server, a crash bed, data loaded once) run on one worker, so it is
    set up once; every other test goes to whichever worker is free. Each worker is its own
    session: its own scratch database (tests/fixtures/db.py) and its own tmp directory."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(
            fixture.scope in ("module", "package")
            for fixtures in info.name2fixturedefs.values()
            for fixture in fixtures
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))  # the file
