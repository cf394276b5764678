"""Reading the SOR2 export's CSV (sorsync.files.read, .layout, .source): the published
conventions, the quirks consumers meet, and the errors for what cannot be read."""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from sorsync.datatypes import lookup
from sorsync.files import layout
from sorsync.files.read import ExportError, normalise_date, read_rows, unwrap
from sorsync.files.source import ExportSource, open_export, pid_of
from sorsync.mapping import default_mapping

SORENTITY = "sor/v2/sorentity/v1"
MAPPING = default_mapping()


def _opener(data: bytes) -> Callable[[], IO[bytes]]:
    return lambda: io.BytesIO(data)


def _rows(data: bytes, key: str = SORENTITY) -> list[dict[str, str]]:
    return [r.record for r in read_rows(_opener(data), "SOREntity.csv", key, MAPPING)]


@pytest.mark.parametrize(
    ("text", "timed", "expected"),
    [
        ("2024-01-31", False, "2024-01-31"),
        ("2024-01-31 00:00:00", False, "2024-01-31"),
        ("2024-01-31T00:00:00.000", False, "2024-01-31"),
        ("2024-01-31 00:00:00", True, "2024-01-31T00:00:00"),
        ("2024-01-31T00:00:00+01:00", False, "2024-01-31T00:00:00+01:00"),
        ("2024-01-31 13:45:10.123+0100", True, "2024-01-31T13:45:10.123+01:00"),
        ("2024-01-31T13:45Z", True, "2024-01-31T13:45:00Z"),
        ("31-01-2024", False, "2024-01-31"),
        ("1.2.2024", False, "2024-02-01"),
        ("31/01/2024 08:30", True, "2024-01-31T08:30:00"),
        ("20240131", False, "2024-01-31"),
        (" 2024-01-31 ", False, "2024-01-31"),
        ("i morgen", False, "i morgen"),  # kept as it is: the views read it as NULL
    ],
)
def test_dates_in_the_formats_seen(text: str, timed: bool, expected: str) -> None:
    assert normalise_date(text, timed=timed) == expected


def test_unwrap_the_excel_text_trick() -> None:
    assert unwrap('="012345"') == "012345"
    assert unwrap("=") == "="
    assert unwrap('="') == '="'
    assert unwrap("plain") == "plain"


def test_the_published_conventions_with_and_without_bom() -> None:
    body = (
        "SorId;EntityName;FromDate;ToDate;ValidFrom;PostalAddressCoordETRS89z32EMeasure;Nyt\r\n"
        '="123456789012345";"Afd; A ""1""";2024-01-01 00:00:00;;2024-01-02 03:04:05;'
        "723000.0;x\r\n"
        "123456789012346.0;Æblegården;01-02-2023;31-12-2023;;;\r\n"
        "\r\n"
    ).encode()
    for data in (codecs.BOM_UTF8 + body, body):
        first, second = _rows(data)
        assert first == {
            "SorId": "123456789012345",
            "EntityName": 'Afd; A "1"',
            "FromDate": "2024-01-01",
            "ValidFrom": "2024-01-02T03:04:05",
            "PostalAddressCoordETRS89z32EMeasure": "723000.0",  # a measure keeps its decimals
            "Nyt": "x",  # an unknown column is kept, like an unknown KRS element
        }
        assert second == {
            "SorId": "123456789012346",
            "EntityName": "Æblegården",
            "FromDate": "2023-02-01",
            "ToDate": "2023-12-31",
        }


def test_header_names_take_the_mappings_spelling_in_any_case() -> None:
    (record,) = _rows(b'SORID;fromdate;shakid\r\n1;2024-01-01;="1301011.0"\r\n')
    assert record == {"SorId": "1", "FromDate": "2024-01-01", "ShakId": "1301011"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"SorId,FromDate\r\n1,2024-01-01\r\n", "separates fields with ';'"),
        (b"EntityName;FromDate\r\nA;2024-01-01\r\n", "line 1: no column SorId"),
        (b"SorId;FromDate;SorId\r\n1;2;3\r\n", "names SorId twice"),
        (b"SorId;FromDate\r\n1;2024-01-01;x\r\n", "line 2: 3 fields where the header has 2"),
        (b"SorId;FromDate\r\n1;2024-01-01\r\n2\r\n", "line 3: 1 fields where the header has 2"),
        (b"SorId;FromDate;Name\r\n1;2024;a\x07b\r\n", "line 2 column Name"),
        (b"SorId;FromDate;Name\r\n1;2024;\xe6ble\r\n", "line 2: not UTF-8 (byte 0xe6"),
        (codecs.BOM_UTF16_LE + "SorId".encode("utf-16-le"), "UTF-16 (little-endian)"),
        (b'SorId;FromDate\r\n1;"2024\r\n', "line 2: not a valid CSV line"),
    ],
)
def test_what_cannot_be_read_is_named_by_file_and_line(data: bytes, message: str) -> None:
    with pytest.raises(ExportError) as caught:
        _rows(data)
    assert message in str(caught.value)
    assert str(caught.value).startswith("SOREntity.csv")


def test_a_quoted_newline_keeps_the_line_numbers() -> None:
    data = b'SorId;FromDate;Name\r\n1;2024-01-01;"two\r\nlines"\r\n2;2024-01-01;x;y\r\n'
    with pytest.raises(ExportError, match="line 4: 4 fields"):
        _rows(data)


def test_file_names_in_any_case_and_both_spellings(tmp_path: Path) -> None:
    assert layout.datatype_of("sorentity.CSV") == SORENTITY
    assert layout.datatype_of("SorEntity_daily.csv") == SORENTITY
    assert layout.datatype_of("LocationsCode.csv") == layout.datatype_of("locationscodes.csv")
    assert layout.datatype_of("readme.txt") is None
    archive = tmp_path / "SOR_COMPLETE.ZIP"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data/sorentity.csv", "SorId;FromDate\r\n")
        z.writestr("data/ShakSorMap.CSV", "ShakId;SorId;FromDate\r\n")
        z.writestr("data/LocationsCode.csv", "EanLocationCode\r\n")
        z.writestr("data/readme.txt", "")
    export = open_export(archive, archive.name)
    assert sorted(export.files) == [
        "sor/v2/eanlocationcode/v1",
        "sor/v2/shaksormap/v1",
        SORENTITY,
    ]
    assert export.other == ["SOR_COMPLETE.ZIP:data/readme.txt"]
    export.close()


def test_a_csv_that_is_no_export_file(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_text("SorId;FromDate\n")
    with pytest.raises(ExportError, match="not a file of the SOR2 export"):
        open_export(path, path.name)


def test_pids_are_stable_and_tell_repeated_keys_apart(tmp_path: Path) -> None:
    path = tmp_path / "SOREntity.csv"
    path.write_bytes(
        b"SorId;FromDate;ValidFrom;ValidTo;EntityName\r\n"
        b"1;2024-01-01;2024-01-01 02:00:00;;A\r\n"
        b"1;2024-01-01;2024-01-01 02:00:00;;A again\r\n"  # the same key twice
        b"1;2023-01-01;2023-01-01 02:00:00;2024-01-01 02:00:00;superseded\r\n"
    )
    source = ExportSource(open_export(path, path.name), MAPPING)
    (page,) = source.snapshot_pages(lookup(SORENTITY), 2000)
    pids = [e.pid for e in page.entries]
    assert pids[0] == pid_of(["1", "2024-01-01"])
    assert len(set(pids)) == 3
    assert pids[2] == pid_of(["1", "2023-01-01", "2023-01-01T02:00:00"])
    assert page.entries[0].modified_at.isoformat() == "2024-01-01T02:00:00+01:00"
    assert page.entries[0].values == (None, {
        "SorId": "1", "FromDate": "2024-01-01", "ValidFrom": "2024-01-01T02:00:00",
        "EntityName": "A",
    })  # fmt: skip
    again = ExportSource(open_export(path, path.name), MAPPING)
    assert [e.pid for e in next(again.snapshot_pages(lookup(SORENTITY), 2000)).entries] == pids
