"""The replica status page in a browser after real syncs: the simulator over HTTP → KRS
client → sync engine → PostgreSQL, then the page's chart of the runs, and red when stale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy import Engine, text

from sorsync.config import get_settings
from sorsync.krs.client import KrsClient
from sorsync.simulator.server import SimulatorHandle
from sorsync.sync import sync
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import source_values
from tests.ui.pagecheck import check_page


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[KrsClient]:
    with KrsClient(simulator.url, timeout=10) as c:
        yield c


def test_status_chart_after_syncs(
    browser: webdriver.Chrome,
    ui_base: str,
    clean_db: Engine,
    sim_add_rows: AddRows,
    client: KrsClient,
    shots: Path,
) -> None:
    datatypes = get_settings().datatypes  # what the page reports on
    browser.get(ui_base + "/status")
    assert "stale" in (
        browser.find_element(By.CSS_SELECTOR, ".headline").get_attribute("class") or ""
    )
    check_page(browser, shots, "status-empty")

    for dt in datatypes:
        sim_add_rows(dt.key, [source_values(dt, i) for i in range(12)])
    assert sync(clean_db, client, datatypes, kind="full", page_size=5).ok
    sim_add_rows(datatypes[0].key, [source_values(datatypes[0], 50)])
    assert sync(clean_db, client, datatypes, page_size=5).ok
    assert sync(clean_db, client, datatypes, page_size=5).ok

    browser.get(ui_base + "/status")
    assert browser.title.startswith("Replikaens status")
    headline = browser.find_element(By.CSS_SELECTOR, ".headline")
    assert "fresh" in (headline.get_attribute("class") or "")
    runs = browser.find_elements(By.CSS_SELECTOR, "svg.runs g.run")
    assert [r.get_attribute("class") for r in runs] == [
        "run run-full",
        "run run-delta",
        "run run-delta",
    ]
    rows = browser.find_elements(By.CSS_SELECTOR, "table.datatypes tbody tr")
    assert len(rows) == len(datatypes)
    assert rows[0].find_elements(By.TAG_NAME, "td")[2].text == "13"  # rows of sygehus
    check_page(browser, shots, "status")

    # A day without a successful sync: the page turns red.
    with clean_db.begin() as conn:
        conn.execute(text("UPDATE krs.sync_state SET last_success_at = now() - interval '2 days'"))
    browser.get(ui_base + "/status")
    assert "stale" in (
        browser.find_element(By.CSS_SELECTOR, ".headline").get_attribute("class") or ""
    )
    assert browser.find_elements(By.CSS_SELECTOR, "table.datatypes tr.stale")
    check_page(browser, shots, "status-stale")
