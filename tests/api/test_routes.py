"""Every /v1 route against the fixture replica (tests/fixtures/api.py) on a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api.problems import PROBLEM_BASE
from api.schemas import (
    EanResponse,
    HistoryResponse,
    Problem,
    ResolveResponse,
    ShakResponse,
    SorResponse,
    StatusResponse,
    UnitsPage,
    YderResponse,
)
from sorsync.identifiers import make_gln, make_sor_id
from tests.fixtures.api import SorData, record_sync_run


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    Problem.model_validate(body)
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert body["instance"] == response.request.url.raw_path.split(b"?")[0].decode()
    assert "Traceback" not in response.text
    return body


def sor_ids(units: list[dict[str, Any]]) -> list[str]:
    return [u["sor_id"] for u in units]


# --- SHAK ------------------------------------------------------------------------------------


def test_shak_lookup_today(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get("/v1/shak/800110")
    assert r.status_code == 200
    body = ShakResponse.model_validate(r.json())
    assert [u.sor_id for u in body.units] == [sor_data.department]
    unit = r.json()["units"][0]
    assert unit["name"] == "Medicinsk Afdeling M1"
    assert unit["parent_sor_id"] == sor_data.hospital
    assert unit["hospital_sor_id"] == sor_data.hospital
    assert unit["valid_from"] == "2022-03-01"
    assert unit["valid_to"] is None
    assert unit["address"] == {"street": "Hospitalsvej 1", "postcode": "9000", "city": "Aalborg"}
    # identifiers are strings, never JSON numbers
    assert isinstance(unit["sor_id"], str)
    assert unit["ean"] is None


@pytest.mark.parametrize(
    ("date", "name"),
    [
        ("2015-01-01", "Medicinsk Afdeling"),  # first day of the first version
        ("2022-02-28", "Medicinsk Afdeling"),  # last day of the first version
        ("2022-03-01", "Medicinsk Afdeling M1"),  # valid_to is exclusive: the new version
        ("2099-12-31", "Medicinsk Afdeling M1"),  # open-ended
    ],
)
def test_shak_as_of_date(api_client: TestClient, sor_data: SorData, date: str, name: str) -> None:
    r = api_client.get(f"/v1/shak/800110?date={date}")
    assert r.status_code == 200
    assert r.json()["date"] == date
    assert [u["name"] for u in r.json()["units"]] == [name]


def test_shak_before_validity_is_404(api_client: TestClient, sor_data: SorData) -> None:
    body = problem(api_client.get("/v1/shak/800110?date=2014-12-31"), 404, "not-found")
    assert "800110" in body["detail"]
    assert "2014-12-31" in body["detail"]


def test_shak_on_two_units(api_client: TestClient, sor_data: SorData) -> None:
    # The child carries its parent's code: the parent is the answer (the back-mapping rules,
    # as POST /v1/resolve and sor.resolve give it; tests/e2e/test_resolve_semantics.py).
    r = api_client.get("/v1/shak/800120?date=2020-01-01")
    assert sor_ids(r.json()["units"]) == [sor_data.emergency]
    # before the second unit opened only the first carries the code
    r = api_client.get("/v1/shak/800120?date=2018-05-31")
    assert sor_ids(r.json()["units"]) == [sor_data.emergency]


def test_closed_unit(api_client: TestClient, sor_data: SorData) -> None:
    assert api_client.get("/v1/shak/8001102?date=2019-12-31").status_code == 200
    problem(api_client.get("/v1/shak/8001102?date=2020-01-01"), 404, "not-found")
    problem(api_client.get("/v1/shak/8001102"), 404, "not-found")


def test_future_unit(api_client: TestClient, sor_data: SorData) -> None:
    problem(api_client.get("/v1/shak/800130"), 404, "not-found")
    r = api_client.get("/v1/shak/800130?date=2031-01-01")
    assert sor_ids(r.json()["units"]) == [sor_data.future_department]


def test_resolve_in_order(api_client: TestClient, sor_data: SorData) -> None:
    codes = ["800120", "bad!", "9999", "8001", "800120", "8001102"]
    r = api_client.post("/v1/shak/resolve", json={"codes": codes, "date": "2019-01-01"})
    assert r.status_code == 200
    body = ResolveResponse.model_validate(r.json())
    assert str(body.date) == "2019-01-01"
    assert [(x.shak, x.status) for x in body.results] == [
        ("800120", "found"),
        ("bad!", "invalid"),
        ("9999", "not_found"),
        ("8001", "found"),
        ("800120", "found"),
        ("8001102", "found"),  # closed 2020-01-01, still valid in 2019
    ]
    assert sor_ids(r.json()["results"][0]["units"]) == [sor_data.emergency]
    assert r.json()["results"][1]["detail"]
    assert r.json()["results"][2]["units"] == []


def test_resolve_echoes_codes_that_are_not_valid_unicode(
    api_client: TestClient, sor_data: SorData
) -> None:
    # JSON may carry a lone surrogate escape; it is an invalid code, echoed back as sent.
    body = b'{"codes": ["\\ud800", "\xc3\x86bl\xc3\xa6", "8001"]}'
    r = api_client.post(
        "/v1/shak/resolve", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["shak"], x["status"]) for x in results] == [
        ("\ud800", "invalid"),
        ("\u00c6bl\u00e6", "invalid"),
        ("8001", "found"),
    ]


def test_resolve_default_date_and_empty(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.post("/v1/shak/resolve", json={"codes": []})
    assert r.status_code == 200
    assert r.json()["results"] == []
    r = api_client.post("/v1/shak/resolve", json={"codes": ["8001102"]})
    assert r.json()["results"][0]["status"] == "not_found"  # closed by today


def test_resolve_10000_codes(api_client: TestClient, sor_data: SorData) -> None:
    codes = [f"{9000 + i % 1000:04d}{i // 1000:02d}" for i in range(9_999)] + ["800110"]
    r = api_client.post("/v1/shak/resolve", json={"codes": codes})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 10_000
    assert results[-1]["status"] == "found"
    assert {x["status"] for x in results[:-1]} == {"not_found"}


def test_resolve_more_than_10000_is_413(api_client: TestClient) -> None:
    body = problem(
        api_client.post("/v1/shak/resolve", json={"codes": ["8001"] * 10_001}),
        413,
        "too-many-codes",
    )
    assert "10001" in body["detail"]


def test_resolve_huge_body_is_413(api_client: TestClient) -> None:
    payload = b'{"codes": ["' + b"A" * (2 << 20) + b'"]}'
    r = api_client.post(
        "/v1/shak/resolve", content=payload, headers={"content-type": "application/json"}
    )
    problem(r, 413, "request-too-large")


@pytest.mark.parametrize(
    ("payload", "slug", "status"),
    [
        (b"{not json", "malformed-json", 400),
        (b'{"codes": "8001"}', "invalid-body", 422),
        (b'{"codes": [8001]}', "invalid-body", 422),
        (b'{"date": "2020-01-01"}', "invalid-body", 422),
        (b'{"codes": ["8001"], "date": "01-01-2020"}', "invalid-date", 422),
        (b'{"codes": ["8001"], "date": "2020-02-30"}', "invalid-date", 422),
    ],
)
def test_resolve_malformed(api_client: TestClient, payload: bytes, slug: str, status: int) -> None:
    r = api_client.post(
        "/v1/shak/resolve", content=payload, headers={"content-type": "application/json"}
    )
    body = problem(r, status, slug)
    if slug in ("malformed-json", "invalid-body"):
        assert body["errors"]


_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b'{"codes": ["\xff\xfe"]}', "The request body is not valid UTF-8 (byte 0xFF is not"),
        (b'{"codes": ["8001\xc3"]}', "The request body is not valid UTF-8 (byte 0xC3 is not"),
        (
            b'\xef\xbb\xbf{"codes": ["\xfe"]}',
            "The request body is not valid UTF-8 (byte 0xFE is not",
        ),
        (_DEEP, "The request body nests JSON arrays or objects too deeply to be read"),
        (b'{"codes": ' + _DEEP + b"}", "The request body nests JSON arrays or objects too deeply"),
    ],
    ids=["invalid-utf8", "truncated-utf8", "invalid-after-bom", "nested", "nested-in-codes"],
)
def test_resolve_unreadable_body_is_malformed_json(
    api_client: TestClient, payload: bytes, detail: str
) -> None:
    """Bodies json.loads cannot even decode (FastAPI's bare 400) are `malformed-json` too."""
    r = api_client.post(
        "/v1/shak/resolve", content=payload, headers={"content-type": "application/json"}
    )
    body = problem(r, 400, "malformed-json")
    assert body["detail"].startswith(detail)
    assert body["title"] == "Malformed JSON"
    assert [e["type"] for e in body["errors"]] == ["json_invalid"]
    for internal in ("Error", "codec", "recursion", "parsing the body"):
        assert internal not in r.text


# --- SOR -------------------------------------------------------------------------------------


def test_sor_with_ancestors_and_children(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get(f"/v1/sor/{sor_data.section}?date=2024-01-01")
    assert r.status_code == 200
    body = r.json()
    SorResponse.model_validate(body)
    assert body["sor_id"] == sor_data.section
    assert body["date"] == "2024-01-01"
    assert sor_ids(body["ancestors"]) == [sor_data.department, sor_data.hospital]  # nearest first
    assert body["ancestors"][0]["name"] == "Medicinsk Afdeling M1"  # the version of that day
    assert body["children"] == []

    dep = api_client.get(f"/v1/sor/{sor_data.department}?date=2019-06-01").json()
    assert dep["name"] == "Medicinsk Afdeling"
    assert dep["children"] == sorted([sor_data.section, sor_data.closed_section])
    dep = api_client.get(f"/v1/sor/{sor_data.department}?date=2020-01-01").json()
    assert dep["children"] == [sor_data.section]  # the closed section is gone

    hosp = api_client.get(f"/v1/sor/{sor_data.hospital}").json()
    assert hosp["ancestors"] == []
    assert hosp["children"] == sorted([sor_data.department, sor_data.emergency])
    future = api_client.get(f"/v1/sor/{sor_data.hospital}?date=2031-06-01").json()
    assert sor_data.future_department in future["children"]


def test_sor_yder_has_practice_as_ancestor(api_client: TestClient, sor_data: SorData) -> None:
    body = api_client.get(f"/v1/sor/{sor_data.yder}").json()
    assert sor_ids(body["ancestors"]) == [sor_data.praksis]
    assert body["praksis_sor_id"] == sor_data.praksis
    praksis = api_client.get(f"/v1/sor/{sor_data.praksis}").json()
    assert praksis["children"] == [sor_data.yder]
    assert praksis["kind"] == "praksis"


def test_sor_not_valid_that_day(api_client: TestClient, sor_data: SorData) -> None:
    body = problem(
        api_client.get(f"/v1/sor/{sor_data.closed_section}?date=2021-01-01"), 404, "not-found"
    )
    assert "/history" in body["detail"]
    problem(api_client.get(f"/v1/sor/{make_sor_id(99999)}"), 404, "not-found")


def test_history_oldest_first(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get(f"/v1/sor/{sor_data.department}/history")
    assert r.status_code == 200
    body = HistoryResponse.model_validate(r.json())
    assert body.sor_id == sor_data.department
    assert [(v.name, str(v.valid_from), str(v.valid_to)) for v in body.versions] == [
        ("Medicinsk Afdeling", "2015-01-01", "2022-03-01"),
        ("Medicinsk Afdeling M1", "2022-03-01", "None"),
    ]
    problem(api_client.get(f"/v1/sor/{make_sor_id(99999)}/history"), 404, "not-found")


# --- ydernummer, EAN ---------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["19062", "019062", "0019062", "000019062"])
def test_yder_with_and_without_zeros(
    api_client: TestClient, sor_data: SorData, number: str
) -> None:
    r = api_client.get(f"/v1/yder/{number}")
    assert r.status_code == 200
    body = YderResponse.model_validate(r.json())
    assert body.ydernummer == number
    assert [u.sor_id for u in body.units] == [sor_data.yder]
    assert body.units[0].ydernummer == "19062"


def test_yder_unknown(api_client: TestClient, sor_data: SorData) -> None:
    problem(api_client.get("/v1/yder/190620"), 404, "not-found")
    problem(api_client.get("/v1/yder/19062?date=2009-12-31"), 404, "not-found")


def test_ean_inherited(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get(f"/v1/ean/{sor_data.praksis_gln}")
    assert r.status_code == 200
    body = EanResponse.model_validate(r.json())
    # The yder inherits the practice's EAN: the practice is the answer (as POST /v1/resolve).
    assert [u.sor_id for u in body.units] == [sor_data.praksis]
    assert {u.ean for u in body.units} == {sor_data.praksis_gln}
    apotek = api_client.get(f"/v1/ean/{sor_data.apotek_gln}").json()
    assert [(u["kind"], u["name"]) for u in apotek["units"]] == [("apotek", "Testby Apotek")]
    problem(api_client.get(f"/v1/ean/{make_gln('579000000099')}"), 404, "not-found")


# --- search ------------------------------------------------------------------------------------


def test_search_pages_through_everything(api_client: TestClient, sor_data: SorData) -> None:
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        url = "/v1/units?limit=3&date=2024-01-01" + (f"&after={after}" if after else "")
        body = api_client.get(url).json()
        UnitsPage.model_validate(body)
        seen += sor_ids(body["items"])
        pages += 1
        after = body["next"]
        if after is None:
            break
    # 10 units exist; on 2024-01-01 the closed section and the future department are not valid
    assert len(seen) == 8
    assert len(set(seen)) == 8
    assert seen == sorted(seen, key=int)
    assert pages == 3


def test_search_filters(api_client: TestClient, sor_data: SorData) -> None:
    body = api_client.get("/v1/units?q=AKUT").json()
    assert sor_ids(body["items"]) == [sor_data.emergency, sor_data.emergency_unit]
    body = api_client.get("/v1/units?kind=apotek").json()
    assert sor_ids(body["items"]) == [sor_data.apotek]
    body = api_client.get("/v1/units?postcode=9999").json()
    assert sor_ids(body["items"]) == [sor_data.yder, sor_data.apotek]
    body = api_client.get("/v1/units?q=testby&kind=yder&postcode=9999").json()
    assert sor_ids(body["items"]) == [sor_data.yder]
    # LIKE wildcards in q are literal
    assert api_client.get("/v1/units?q=%25").json()["items"] == []
    assert api_client.get("/v1/units?q=_").json()["items"] == []
    body = api_client.get("/v1/units?q=medicinsk&date=2020-06-01").json()
    assert [u["name"] for u in body["items"]] == ["Medicinsk Afdeling"]


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("/v1/sor/123", "invalid-sor-id"),
        ("/v1/sor/347811000016005", "invalid-sor-id"),  # Verhoeff check digit wrong
        ("/v1/sor/347811000026004", "invalid-sor-id"),  # not namespace 1000016
        ("/v1/sor/abc/history", "invalid-sor-id"),
        ("/v1/sor/3478110000160041234", "invalid-sor-id"),  # 19 digits
        (
            "/v1/sor/%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2",
            "invalid-sor-id",
        ),
        ("/v1/shak/80", "invalid-shak"),
        (
            "/v1/shak/80011-",
            "invalid-shak",
        ),  # lower case is accepted (tests/e2e/test_shak_as_typed.py)
        ("/v1/shak/25%2F29", "invalid-shak"),  # an encoded slash: one malformed code
        ("/v1/shak/80011", "invalid-shak"),  # 5 characters
        ("/v1/shak/8001%0A", "invalid-shak"),  # trailing newline
        ("/v1/ean/5790000000013", "invalid-gln"),  # check digit wrong
        ("/v1/ean/579000000001", "invalid-gln"),
        (
            "/v1/ean/%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2%C2%B2",
            "invalid-gln",
        ),
        ("/v1/yder/1234567890", "invalid-ydernummer"),
        ("/v1/yder/12a", "invalid-ydernummer"),
        ("/v1/shak/8001?date=2024-1-1", "invalid-date"),
        ("/v1/shak/8001?date=2024-02-30", "invalid-date"),
        ("/v1/shak/8001?date=20240101", "invalid-date"),
        ("/v1/shak/8001?date=", "invalid-date"),
        ("/v1/units?limit=0", "invalid-parameter"),
        ("/v1/units?limit=1001", "invalid-parameter"),
        ("/v1/units?limit=ten", "invalid-parameter"),
        ("/v1/units?kind=hospital", "invalid-parameter"),
        ("/v1/units?after=-5", "invalid-parameter"),
        ("/v1/units?q=a%00b", "invalid-parameter"),
        ("/v1/units?q=" + "x" * 101, "invalid-parameter"),
    ],
)
def test_malformed_input(api_client: TestClient, sor_data: SorData, url: str, slug: str) -> None:
    body = problem(api_client.get(url), 422, slug)
    assert body["detail"]


def test_unknown_route_and_method(api_client: TestClient) -> None:
    problem(api_client.get("/v1/nothing"), 404, "not-found")
    r = api_client.delete("/v1/shak/8001")
    problem(r, 405, "method-not-allowed")
    assert "GET" in r.headers["allow"]


# --- caching -------------------------------------------------------------------------------------


def test_etag_and_304(api_client: TestClient, sor_data: SorData, engine: Engine) -> None:
    url = f"/v1/sor/{sor_data.hospital}?date=2024-01-01"
    first = api_client.get(url)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=300"
    again = api_client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert api_client.get(url, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert api_client.get(url, headers={"If-None-Match": "*"}).status_code == 304
    assert api_client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # another request, another tag
    other = api_client.get(f"/v1/sor/{sor_data.hospital}?date=2024-01-02").headers["etag"]
    assert other != etag
    # a successful sync changes the data version and so every tag; a failed one does not
    record_sync_run(engine, status="failed")
    assert api_client.get(url).headers["etag"] == etag
    run_id = record_sync_run(engine)
    new = api_client.get(url, headers={"If-None-Match": etag})
    assert new.status_code == 200
    assert new.headers["etag"] != etag
    assert new.headers["etag"].startswith(f'"{run_id}-')


def test_errors_are_not_cached(api_client: TestClient, sor_data: SorData) -> None:
    r = api_client.get("/v1/shak/9999")
    assert r.status_code == 404
    assert "etag" not in r.headers
    assert r.headers["cache-control"] == "no-store"


# --- status --------------------------------------------------------------------------------------


def test_status(api_client: TestClient, sor_data: SorData, engine: Engine) -> None:
    body = api_client.get("/v1/status").json()
    StatusResponse.model_validate(body)
    rows = {d["datatype"]: d["rows"] for d in body["datatypes"]}
    assert rows == {
        "sor/sygehus/v1": 1,
        "sor/sygehusafdeling/v1": 7,
        "sor/praksis/v1": 1,
        "sor/yder/v1": 1,
        "sor/apotek/v1": 1,
        # The demo's default set has SOR2 too; this fixture writes only v1 rows.
        "sor/v2/sorentity/v1": 0,
        "sor/v2/shaksormap/v1": 0,
        "sor/v2/sorreplacedentity/v1": 0,
    }
    run_id = record_sync_run(engine)
    r = api_client.get("/v1/status")
    assert r.json()["data_version"] == str(run_id)
    assert r.headers["cache-control"] == "no-store"
