"""Shared fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

from collections import Counter

import pytest

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.simulator",
    "tests.fixtures.sync",
    "tests.fixtures.api",
    "tests.fixtures.files",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a collection in which two tests share a node id: pytest-xdist schedules by node
    id, so it would run one of them and drop the others without a word (it did, for the
    schemathesis operations: tests/fixtures/api.py, `one_node_per_operation`)."""
    shared = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if shared:
        raise pytest.UsageError(
            f"{len(shared)} node ids are shared by several tests, so pytest-xdist would run only"
            f" one of each: {', '.join(shared[:5])}; give each test a distinct id."
        )
