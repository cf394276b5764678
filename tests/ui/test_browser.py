"""The web UI in a real browser (Debian's Chromium, headless, through chromium-driver) against
a real server and PostgreSQL: search by each kind of code, a unit as of a date, the tree, a
SHAK timeline, the language switch, error pages, and pages without JavaScript. Every page is
checked by tests/ui/pagecheck.py (title, same-origin only, axe-core) and photographed."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.fixtures.api import SorData
from tests.ui.browser import chromium, foreign_loads
from tests.ui.pagecheck import check_page


def h1(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def search(driver: webdriver.Chrome, base: str, text: str) -> None:
    """Type into the search box of the front page and press Enter, as a person would."""
    driver.get(base + "/")
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    WebDriverWait(driver, 10).until(ec.url_contains("/sog?"))


def result_names(driver: webdriver.Chrome) -> list[str]:
    return [
        str(a.text) for a in driver.find_elements(By.CSS_SELECTOR, "table.units td:first-child a")
    ]


def set_date(driver: webdriver.Chrome, iso: str) -> None:
    """Type a date into the date picker (en-US field order: month, day, year) and submit."""
    field = driver.find_element(By.ID, "date")
    year, month, day = iso.split("-")
    field.send_keys(month, day, year)  # focusing the field puts the caret on the month
    assert field.get_attribute("value") == iso
    field.submit()
    WebDriverWait(driver, 10).until(ec.url_contains(f"date={iso}"))


@pytest.mark.parametrize(
    ("what", "read_as", "names"),
    [
        ("name", "Navn", ["Akutafdelingen", "Akutmodtagelsen"]),
        ("sor_id", "SOR-id", ["Testhospital Nord"]),
        ("shak", "SHAK-kode", ["Akutafdelingen", "Akutmodtagelsen"]),
        ("gln", "EAN/GLN-lokationsnummer", ["Lægerne i Testby", "Yder Testby"]),
        ("ydernummer", "Ydernummer", ["Yder Testby"]),
        ("postcode", "Postnummer", ["Yder Testby", "Testby Apotek"]),
    ],
)
def test_search_by_each_kind(
    browser: webdriver.Chrome,
    ui_base: str,
    sor_data: SorData,
    shots: Path,
    what: str,
    read_as: str,
    names: list[str],
) -> None:
    text = {
        "name": "akut",
        "sor_id": sor_data.hospital,
        "shak": "800120",
        "gln": sor_data.praksis_gln,
        "ydernummer": "019062",
        "postcode": "9999",
    }[what]
    search(browser, ui_base, text)
    chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".read-as .chip")]
    assert read_as in chips
    assert sorted(result_names(browser)) == sorted(names)
    assert text in browser.title
    check_page(browser, shots, f"search-{what}")


def test_kind_filter_and_paging_links(
    browser: webdriver.Chrome, ui_base: str, sor_data: SorData, shots: Path
) -> None:
    browser.get(ui_base + "/")
    browser.find_element(By.ID, "q").send_keys("afd")
    kind = browser.find_element(By.ID, "kind")
    kind.send_keys("Sygehusafdeling")  # a keyboard choice in the select
    kind.submit()
    WebDriverWait(browser, 10).until(ec.url_contains("kind=sygehusafdeling"))
    assert result_names(browser) == ["Medicinsk Afdeling M1", "Akutafdelingen"]


def test_unit_page_changes_with_the_date(
    browser: webdriver.Chrome, ui_base: str, sor_data: SorData, shots: Path
) -> None:
    search(browser, ui_base, "Medicinsk")
    browser.find_element(By.LINK_TEXT, "Medicinsk Afdeling M1").click()
    WebDriverWait(browser, 10).until(ec.url_contains(f"/enhed/{sor_data.department}"))
    assert h1(browser).startswith("Medicinsk Afdeling M1")
    assert browser.title.startswith(f"Medicinsk Afdeling M1 (SOR {sor_data.department})")
    check_page(browser, shots, "unit")
    # The version shown now is the second; its details are open.
    shown = browser.find_element(By.CSS_SELECTOR, "details[open] summary")
    assert "Version 2" in shown.text

    set_date(browser, "2020-01-01")
    assert h1(browser).startswith("Medicinsk Afdeling ")
    assert not h1(browser).startswith("Medicinsk Afdeling M1")
    assert "Version 1" in browser.find_element(By.CSS_SELECTOR, "details[open] summary").text
    # On 2020-01-01 the closed Gastro section had just closed; on 2019-06-01 it was a child.
    assert "Gastro Afsnit" not in browser.find_element(By.ID, "children-heading").text
    check_page(browser, shots, "unit-2020")

    # A version's bar in the timeline opens that version.
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.timeline a.bar")
    assert len(bars) == 2
    bars[1].click()
    WebDriverWait(browser, 10).until(ec.url_contains("date=2022-03-01"))
    assert h1(browser).startswith("Medicinsk Afdeling M1")


def test_follow_an_ancestor_and_a_child(
    browser: webdriver.Chrome, ui_base: str, sor_data: SorData, shots: Path
) -> None:
    browser.get(f"{ui_base}/enhed/{sor_data.section}")
    crumbs = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".breadcrumb a")]
    assert crumbs == ["Testhospital Nord", "Medicinsk Afdeling M1", "Kardiologisk Afsnit"]
    check_page(browser, shots, "unit-section")
    browser.find_element(By.CSS_SELECTOR, ".breadcrumb").find_element(
        By.LINK_TEXT, "Testhospital Nord"
    ).click()
    WebDriverWait(browser, 10).until(ec.url_contains(f"/enhed/{sor_data.hospital}"))
    children = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "ul.children a")]
    assert children == ["Medicinsk Afdeling M1", "Akutafdelingen"]
    check_page(browser, shots, "unit-hospital")
    browser.find_element(By.CSS_SELECTOR, "ul.children").find_element(
        By.LINK_TEXT, "Akutafdelingen"
    ).click()
    WebDriverWait(browser, 10).until(ec.url_contains(f"/enhed/{sor_data.emergency}"))
    assert h1(browser).startswith("Akutafdelingen")
    children = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "ul.children a")]
    assert children == ["Akutmodtagelsen"]


def test_shak_timeline(
    browser: webdriver.Chrome, ui_base: str, sor_data: SorData, shots: Path
) -> None:
    browser.get(f"{ui_base}/enhed/{sor_data.emergency}")
    browser.find_element(By.LINK_TEXT, "800120").click()
    WebDriverWait(browser, 10).until(ec.url_contains("/shak/800120"))
    assert browser.title.startswith("SHAK-kode 800120")
    lanes = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.timeline .lane-label")]
    assert lanes == ["Akutafdelingen", "Akutmodtagelsen"]
    periods = browser.find_elements(By.CSS_SELECTOR, "table.periods tbody tr")
    assert [p.find_element(By.TAG_NAME, "td").text for p in periods] == [
        "2015-01-01 – 2018-06-01",
        "2018-06-01 – (åben)",
    ]
    check_page(browser, shots, "shak")
    set_date(browser, "2016-05-01")
    assert "1 enhed(er)" in browser.find_element(By.CSS_SELECTOR, ".on-day").text


def test_copy_button_is_an_enhancement(
    browser: webdriver.Chrome, ui_base: str, sor_data: SorData
) -> None:
    browser.get(f"{ui_base}/enhed/{sor_data.hospital}")
    button = browser.find_element(By.CSS_SELECTOR, "button.copy")
    assert button.is_displayed()  # the script revealed it
    assert button.get_attribute("data-copy") == sor_data.hospital
    button.click()
    WebDriverWait(browser, 5).until(lambda d: "done" in (button.get_attribute("class") or ""))


def test_english_switch(
    browser: webdriver.Chrome, ui_base: str, sor_data: SorData, shots: Path
) -> None:
    browser.get(f"{ui_base}/enhed/{sor_data.hospital}")
    browser.find_element(By.LINK_TEXT, "English").click()
    WebDriverWait(browser, 10).until(ec.url_contains("lang=en"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "Details" in browser.find_element(By.ID, "facts-heading").text
    check_page(browser, shots, "unit-en")
    browser.find_element(By.LINK_TEXT, "Search").click()  # the cookie keeps English
    assert h1(browser) == "Search SOR"
    browser.find_element(By.LINK_TEXT, "Dansk").click()
    assert h1(browser) == "Søg i SOR"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/enhed/123", "'123' is not a SOR id: a SOR id is 11 to 18 digits."),
        ("/shak/ZZZZ", "No unit has ever carried SHAK code ZZZZ."),
    ],
)
def test_error_pages(
    browser: webdriver.Chrome,
    ui_base: str,
    sor_data: SorData,
    shots: Path,
    path: str,
    message: str,
) -> None:
    browser.get(ui_base + path)
    assert browser.find_element(By.CSS_SELECTOR, ".problem").text == message
    check_page(browser, shots, "error-" + path.strip("/").replace("/", "-"))


def test_the_foreign_origin_check_catches_a_load(browser: webdriver.Chrome, ui_base: str) -> None:
    # A loopback address other than the server's is another origin, and no traffic leaves.
    browser.get(ui_base + "/static/favicon.svg")
    browser.execute_script(
        "const l = document.createElementNS('http://www.w3.org/1999/xhtml', 'link');"
        "l.rel = 'stylesheet'; l.href = 'http://127.0.0.2:9/x.css';"
        "document.documentElement.appendChild(l);"
    )
    assert "http://127.0.0.2:9/x.css" in foreign_loads(browser)


def test_usable_without_javascript(ui_base: str, sor_data: SorData) -> None:
    with chromium(javascript=False) as driver:
        search(driver, ui_base, "akut")
        driver.find_element(By.LINK_TEXT, "Akutmodtagelsen").click()
        assert h1(driver).startswith("Akutmodtagelsen")
        assert not driver.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
        set_date(driver, "2019-01-01")
        assert "2019-01-01" in driver.current_url
