"""Fixtures of the browser tests: the API (with its web UI) on a real loopback HTTP server,
one headless Chromium for the session, and where the screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from api.app import create_app
from tests.ui.browser import chromium, serve


@pytest.fixture(scope="session")
def ui_base(database_url: str) -> Iterator[str]:
    """The base URL of a server running the API app against the session database."""
    with serve(create_app(database_url=database_url, version_ttl=0)) as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots of every page the tests visit: SORSYNC_UI_SCREENSHOTS, else a pytest tmp
    directory (its path is printed in the tests' output)."""
    configured = os.environ.get("SORSYNC_UI_SCREENSHOTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
