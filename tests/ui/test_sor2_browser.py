"""The pages on SOR2 data in a browser: a fictive tree from the simulator (SorEntity,
shaksormap, sorreplacedentity over real HTTP) synced into PostgreSQL, the `sor` views built
from the mapping; the unit page shows SOR2's type, level, owner, addresses and successor, the
breadcrumb climbs OE → SI → IE, and a SHAK page follows shaksormap."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import Engine, text

from sorsync.datatypes import SOR2_DATATYPES, V1_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.db import views
from sorsync.krs.client import KrsClient
from sorsync.mapping import default_mapping
from sorsync.simulator.generator import evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import serve_in_thread
from sorsync.simulator.store import Store
from sorsync.sync import sync
from tests.fixtures.api import empty_replica
from tests.ui.pagecheck import check_page

DATATYPES = [datatype(key) for key in (*V1_DATATYPES, *SOR2_DATATYPES)]


@pytest.fixture(scope="module")
def sor2(engine: Engine) -> Iterator[Engine]:
    store = Store()
    model = generate(300, seed=11)
    for snapshot in (model, evolve(model, 40, seed=12)):
        buffer = io.BytesIO()
        write_sortree(snapshot, buffer)
        buffer.seek(0)
        load_snapshot(store, buffer)
    handle = serve_in_thread(store)
    empty_replica(engine)
    try:
        with KrsClient(handle.url, timeout=30) as client:
            result = sync(engine, client, DATATYPES, kind="full")
        assert result.ok, result.error
        views.ensure(engine, default_mapping(), DATATYPES)
        yield engine
    finally:
        handle.stop()
        empty_replica(engine)


def test_a_sor2_unit_page(
    browser: webdriver.Chrome, ui_base: str, sor2: Engine, shots: Path
) -> None:
    with sor2.connect() as conn:
        sor_id = conn.execute(
            text(
                "SELECT sor_id FROM sor.unit_current WHERE sor_type = 'OE'"
                " AND parent_sor_id IS NOT NULL AND addresses ? 'visiting'"
                " AND specialities IS NOT NULL ORDER BY sor_id LIMIT 1"
            )
        ).scalar_one()
    browser.get(f"{ui_base}/enhed/{sor_id}")
    labels = [dt.text for dt in browser.find_elements(By.CSS_SELECTOR, "dl.facts > div > dt")]
    for label in ("SOR-type", "Specialer", "Institutionsejer"):
        assert label in labels, labels
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text.lower()
    assert "besøgsadresse" in facts  # its own row, or the shared one's list of roles
    crumbs = browser.find_elements(By.CSS_SELECTOR, ".breadcrumb a")
    assert len(crumbs) >= 3  # IE › SI › … › the unit
    check_page(browser, shots, "sor2-unit")
    crumbs[0].click()  # the institution owner
    WebDriverWait(browser, 10).until(ec.url_contains("/enhed/"))
    assert "Institutionsejer" in browser.find_element(By.CSS_SELECTOR, "h1 .kind").text


def test_a_replaced_unit_links_its_successor(
    browser: webdriver.Chrome, ui_base: str, sor2: Engine, shots: Path
) -> None:
    with sor2.connect() as conn:
        old, new = conn.execute(
            text(
                "SELECT sor_id, replaced_by_sor_id FROM sor.sorreplacedentity"
                " ORDER BY sor_id LIMIT 1"
            )
        ).one()
    browser.get(f"{ui_base}/enhed/{old}")
    closed = browser.find_element(By.CSS_SELECTOR, ".closed")
    assert "Erstattet af" in closed.text
    check_page(browser, shots, "sor2-replaced")
    closed.find_element(By.CSS_SELECTOR, f"a[href^='/enhed/{new}']").click()
    WebDriverWait(browser, 10).until(ec.url_contains(f"/enhed/{new}"))


def test_a_sor2_shak_page(
    browser: webdriver.Chrome, ui_base: str, sor2: Engine, shots: Path
) -> None:
    with sor2.connect() as conn:
        code = conn.execute(
            text("SELECT shak FROM sor.shak_map ORDER BY shak LIMIT 1")
        ).scalar_one()
    browser.get(f"{ui_base}/shak/{code}")
    assert browser.title.startswith(f"SHAK-kode {code}")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.timeline a.bar")
    check_page(browser, shots, "sor2-shak")
