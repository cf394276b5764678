"""Shared fixtures live in tests/fixtures/, one module per concern."""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.simulator",
    "tests.fixtures.sync",
    "tests.fixtures.api",
    "tests.fixtures.files",
]
