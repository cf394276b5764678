"""The web UI's pages over HTTP (no browser): statuses, titles, what each page says, and the
friendly error pages with the API's own messages."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tests.fixtures.api import SorData


def title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found, html[:500]
    return found.group(1)


def test_search_page_reads_each_kind_of_code(api_client: TestClient, sor_data: SorData) -> None:
    cases = {
        sor_data.hospital: ("SOR-id", "Testhospital Nord"),
        "800120": ("SHAK-kode", "Akutmodtagelsen"),
        sor_data.praksis_gln: ("EAN/GLN-lokationsnummer", "Yder Testby"),
        "019062": ("Ydernummer", "Yder Testby"),
        "9999": ("Postnummer", "Testby Apotek"),
        "akut": ("Navn", "Akutafdelingen"),
    }
    for q, (read_as, name) in cases.items():
        r = api_client.get("/sog", params={"q": q})
        assert r.status_code == 200, (q, r.text)
        assert read_as in r.text, q
        assert name in r.text, q
        assert title(r.text).startswith(f"Søgning: {q}")
        assert "default-src 'none'" in r.headers["content-security-policy"]


def test_search_hint_for_a_bad_check_digit(api_client: TestClient, sor_data: SorData) -> None:
    bad = sor_data.hospital[:-1] + str((int(sor_data.hospital[-1]) + 1) % 10)
    r = api_client.get("/sog", params={"q": bad})
    assert r.status_code == 200
    assert "Verhoeff" in r.text


def test_unit_page_as_of_a_date(api_client: TestClient, sor_data: SorData) -> None:
    now = api_client.get(f"/enhed/{sor_data.department}")
    assert now.status_code == 200
    assert title(now.text).startswith(f"Medicinsk Afdeling M1 (SOR {sor_data.department})")
    assert "Testhospital Nord" in now.text  # breadcrumb
    assert "Kardiologisk Afsnit" in now.text  # child
    before = api_client.get(f"/enhed/{sor_data.department}", params={"date": "2020-01-01"})
    assert title(before.text).startswith("Medicinsk Afdeling (SOR")
    assert "Gastro Afsnit" not in now.text  # closed 2020-01-01: a child only before
    earlier = api_client.get(f"/enhed/{sor_data.department}", params={"date": "2019-06-01"})
    assert "Gastro Afsnit" in earlier.text


def test_closed_unit_shows_its_last_version(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get(f"/enhed/{sor_data.closed_section}")
    assert r.status_code == 404
    assert "Gastro Afsnit" in r.text
    assert "lukket pr. 2020-01-01" in r.text


def test_shak_page_is_a_timeline(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get("/shak/800120", params={"date": "2020-01-01"})
    assert r.status_code == 200
    assert title(r.text).startswith("SHAK-kode 800120")
    assert "<svg" in r.text
    assert "Akutmodtagelsen" in r.text
    assert api_client.get("/shak/800a", follow_redirects=False).headers["location"] == "/shak/800A"


def test_english(api_client: TestClient, sor_data: SorData) -> None:
    try:
        r = api_client.get("/sog", params={"q": "akut", "lang": "en"})
        assert 'lang="en"' in r.text
        assert "Read as" in r.text
        assert r.cookies.get("lang") == "en"
        again = api_client.get("/sog")  # the cookie keeps the choice
        assert 'lang="en"' in again.text
    finally:
        api_client.cookies.clear()  # the client is the session's


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/enhed/123", 422, "'123' is not a SOR id: a SOR id is 11 to 18 digits."),
        ("/enhed/{known}?date=2024-02-30", 422, "date '2024-02-30' is not a calendar date."),
        ("/enhed/{unknown}", 404, "No SOR unit has id {unknown}."),
        ("/shak/80-1", 422, "'80-1' is not a SHAK code"),
        ("/shak/ZZZZ", 404, "No unit has ever carried SHAK code ZZZZ."),
        ("/sog?q=x&kind=hospital", 422, "kind must be one of"),
    ],
)
def test_friendly_errors(
    api_client: TestClient, sor_data: SorData, path: str, status: int, message: str
) -> None:
    from sorsync.identifiers import make_sor_id

    unknown = make_sor_id(99999)
    path = path.format(known=sor_data.hospital, unknown=unknown)
    r = api_client.get(path)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    assert message.format(unknown=unknown).replace("'", "&#39;") in r.text


def test_status_page(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get("/status")
    assert r.status_code == 200
    assert "sor/sygehus/v1" in r.text


def test_static_files(api_client: TestClient) -> None:
    r = api_client.get("/static/ui.css")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/css")
    assert api_client.get("/static/nope.css").status_code == 404


def test_keyset_paging(
    api_client: TestClient, sor_data: SorData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Name results come a page at a time; "next page" carries `after` (the last SOR id)."""
    from api.ui import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 1)  # two hits in the fixture data: two pages
    first = api_client.get("/sog", params={"q": "akut"})
    assert "Akutafdelingen" in first.text
    assert "Akutmodtagelsen" not in first.text
    found = re.search(r'href="(/sog\?[^"]*after=(\d+)[^"]*)" rel="next"', first.text)
    assert found, first.text
    assert found.group(2) == sor_data.emergency
    second = api_client.get(found.group(1).replace("&amp;", "&"))
    assert "Akutmodtagelsen" in second.text
    body = second.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 1  # one result row
    assert 'rel="next"' not in second.text
    assert "Første side" in second.text
