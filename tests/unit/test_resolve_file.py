"""`sorsync resolve`'s reading of a CSV file: the encoding and delimiter it detects, and how
the column options find their columns."""

from __future__ import annotations

import codecs
import io

import pytest

from sorsync.cli.resolve import (
    SAMPLE,
    Columns,
    InputError,
    detect_encoding,
    find_column,
    open_source,
    pick_columns,
    sniff_delimiter,
)

DANISH = "kode;navn\n1575;Hyldby Sygehus, Ærø ø å\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codecs.BOM_UTF8 + DANISH.encode(), "utf-8-sig"),
        (DANISH.encode(), "utf-8"),
        (b"code\n1575\n", "utf-8"),
        (DANISH.encode("cp1252"), "cp1252"),
        (DANISH.encode("cp1252") + "€".encode("cp1252"), "cp1252"),
        # 0x81 is no character in cp1252: only Latin-1 takes it
        (DANISH.encode("latin-1") + b"\x81", "latin-1"),
        (b"", "utf-8"),
    ],
)
def test_detect_encoding(data: bytes, expected: str) -> None:
    assert detect_encoding(data, complete=True) == expected


def test_a_sample_may_end_inside_a_character() -> None:
    data = ("a" * 10 + "æ").encode()
    assert detect_encoding(data[:-1]) == "utf-8"
    assert detect_encoding(data[:-1], complete=True) == "cp1252"


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("code;date\n1575;2025-06-01\n", ";"),
        ("code,date\n1575,2025-06-01\n", ","),
        ("code\tdate\n1575\t2025-06-01\n", "\t"),
        ("code\n1575\n", ","),
        ("", ","),
        ('"a;b",code\n"x;y",1575\n', ","),  # quoted delimiters are data
        ("a;b,c\n1;2,3\n", ";"),  # a tie: the first of ; , tab
        ("a;b,c\nx,y,z;w\n", ";"),
        ("a;b,c\n1,2,3\n1,2,3\n", ";"),  # tie on the header, the body is not steady for either
        ("\n\ncode;x\n", ";"),  # blank lines before the header
    ],
)
def test_sniff_delimiter(sample: str, expected: str) -> None:
    assert sniff_delimiter(sample) == expected


def test_tie_broken_by_the_body() -> None:
    assert sniff_delimiter("a,b;c\n1;2;3\n4;5;6\n") == ";"
    assert sniff_delimiter("a;b,c\n1,2,3\n4,5,6\n") == ";"  # the header has 1 of each; body ,=2
    assert sniff_delimiter("a;b,c\nx;1,2\n") == ";"


def test_find_column() -> None:
    header = ["Id", " Kode ", "DATO"]
    assert find_column(header, "Id", "--x") == 0
    assert find_column(header, "kode", "--x") == 1
    assert find_column(header, "dato", "--x") == 2
    with pytest.raises(InputError) as missing:
        find_column(header, "shak", "--code-column")
    assert str(missing.value) == (
        "the input has no column 'shak' (--code-column); its columns: 'Id', ' Kode ', 'DATO'"
    )
    with pytest.raises(InputError, match="appears 2 times"):
        find_column(["code", "Code"], "CODE", "--code-column")
    assert find_column(["code", "Code"], "Code", "--code-column") == 1  # exact wins


def test_pick_columns_defaults_to_kind_and_date_columns() -> None:
    assert pick_columns(["code"], "code", None, None) == Columns(0, None, None)
    assert pick_columns(["x", "Date", "code", "kind"], "code", None, None) == Columns(2, 3, 1)
    assert pick_columns(["shak", "dag"], "shak", None, "dag") == Columns(0, None, 1)
    with pytest.raises(InputError, match="no column 'type'"):
        pick_columns(["code"], "code", "type", None)


def test_pick_columns_refuses_an_earlier_answer() -> None:
    with pytest.raises(InputError, match="already has the answer column"):
        pick_columns(["code", "status", "sor_id"], "code", None, None)


def test_open_source_reads_past_the_sample() -> None:
    body = "kode;navn\n" + "".join(f"{n};Ærø {n}\n" for n in range(SAMPLE // 8))
    data = body.encode("cp1252")
    assert len(data) > SAMPLE
    source = open_source(io.BytesIO(data), len(data), None, None)
    assert (source.encoding, source.delimiter, source.newline) == ("cp1252", ";", "\n")
    assert source.text.read() == body
    assert source.raw.read_bytes == len(data)


def test_open_source_given_utf8_skips_a_bom() -> None:
    data = codecs.BOM_UTF8 + b"code\r\n1575\r\n"
    source = open_source(io.BytesIO(data), None, "UTF-8", None)
    assert source.encoding == "utf-8-sig"
    assert source.newline == "\r\n"
    assert source.text.read() == "code\r\n1575\r\n"


def test_open_source_unknown_encoding() -> None:
    with pytest.raises(InputError, match="not an encoding"):
        open_source(io.BytesIO(b"code\n"), None, "klingon", None)
