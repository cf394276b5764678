from __future__ import annotations

import pytest

from sorsync import identifiers as ids

# Every SOR id in the real SOR samples (tests/data/sor-xml-samples and the public sources of
# docs/reference/sor-model.md §3.1) passes.
REAL_SOR_IDS = [
    "347801000016001",
    "347811000016004",
    "347821000016008",
    "347831000016005",
    "8321000016007",
    "8331000016009",
    "8341000016002",
    "306011000016003",
    "306021000016007",
    "306031000016009",
]


@pytest.mark.parametrize("sor_id", REAL_SOR_IDS)
def test_real_sor_ids_are_valid(sor_id: str) -> None:
    assert ids.sor_id_problem(sor_id) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("12345678901", "namespace"),  # dk-core's example id: no SOR namespace
        ("347811000016005", "Verhoeff"),  # one digit off
        ("3478110000160", "namespace"),
        ("1234", "11 to 18 digits"),
        ("3478110000160041234", "11 to 18 digits"),
        ("34781100001600x", "11 to 18 digits"),
        ("347811000016104", "namespace"),  # partition 01
    ],
)
def test_bad_sor_ids_say_why(value: str, problem: str) -> None:
    message = ids.sor_id_problem(value)
    assert message is not None
    assert problem in message


def test_make_sor_id_round_trips() -> None:
    assert ids.make_sor_id(34781) == "347811000016004"
    for n in (1, 99, 123456, 99999999):
        assert ids.sor_id_problem(ids.make_sor_id(n)) is None


def test_verhoeff_catches_every_single_digit_error() -> None:
    good = "347811000016004"
    for i, ch in enumerate(good):
        for d in "0123456789":
            if d != ch:
                assert not ids.verhoeff_valid(good[:i] + d + good[i + 1 :])


@pytest.mark.parametrize("shak", ["2529", "252901", "2529010", "665033L", "1301AB"])
def test_shak_shapes(shak: str) -> None:
    assert ids.shak_problem(shak) is None


@pytest.mark.parametrize("shak", ["252", "25290", "25290101", "2529-1", "abcd", "", "2529 "])
def test_bad_shak(shak: str) -> None:
    assert ids.shak_problem(shak) is not None


@pytest.mark.parametrize("gln", ["5790000141227", "5790000173624"])
def test_real_glns(gln: str) -> None:
    assert ids.gln_problem(gln) is None


def test_gln_check_digit() -> None:
    assert ids.gln_problem("5790000173625") == "the GLN's GS1 check digit is wrong"
    assert ids.gln_problem("579000017362") is not None
    assert ids.make_gln("579000017362") == "5790000173624"


def test_ydernummer() -> None:
    assert ids.normalise_ydernummer("019062") == "19062"
    assert ids.normalise_ydernummer("000") == "0"
    assert ids.ydernummer_problem("019062") is None
    assert ids.ydernummer_problem("19 62") is not None


@pytest.mark.parametrize(
    "value",
    ["²" * 13, "٣٤٧٨١١٠٠٠٠١٦٠٠٤", "347811000016004\n", "2529\n", "019062\n", "5790000173624\n"],
)
def test_non_ascii_digits_and_trailing_newlines_are_rejected(value: str) -> None:
    assert ids.sor_id_problem(value) is not None
    assert ids.gln_problem(value) is not None
    assert ids.shak_problem(value) is not None
    assert ids.ydernummer_problem(value) is not None
