"""`sorsync resolve` as a subprocess against the demo data: the built-in simulator's bundled
fictive snapshot (real HTTP on 127.0.0.1) synced into the test database, then CSV files in the
encodings and delimiters analysts have, answered like POST /v1/resolve's CSV answer."""

from __future__ import annotations

import codecs
import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from sorsync.datatypes import DEFAULT_DATATYPES, V1_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.db import migrate, views
from sorsync.krs.client import KrsClient
from sorsync.lookup import resolve as rs
from sorsync.mapping import default_mapping
from sorsync.simulator.demo import load_demo
from sorsync.simulator.server import serve_in_thread
from sorsync.simulator.store import Store
from sorsync.sync import sync
from tests.fixtures.api import empty_replica

DATATYPES = [datatype(key) for key in dict.fromkeys((*V1_DATATYPES, *DEFAULT_DATATYPES))]
DAY = "2025-06-01"
HYLDBY = "100061000016005"  # SHAK 1575, Hyldby Sygehus
ONKOLOGI = "100071000016000"  # SHAK 157501, Afdeling for klinisk onkologi (under Hyldby)
ANSWER = list(rs.CSV_COLUMNS)


@pytest.fixture(scope="module")
def demo(engine: Engine) -> Iterator[None]:
    """The demo data, synced from the simulator the way `sorsync run` syncs it."""
    store = Store()
    load_demo(store)
    handle = serve_in_thread(store)
    empty_replica(engine)
    try:
        with KrsClient(handle.url, timeout=30) as client:
            result = sync(engine, client, DATATYPES, kind="full")
        assert result.ok, result.error
        assert views.ensure(engine, default_mapping(), DATATYPES)
        yield
    finally:
        handle.stop()
        empty_replica(engine)


def env_for(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env["SORSYNC_DATABASE_URL"] = database_url
    return env


def resolve(
    args: list[str], database_url: str, cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sorsync", "resolve", *args],
        env=env_for(database_url),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def rows_of(data: bytes, encoding: str = "utf-8", delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(encoding)), delimiter=delimiter))


@pytest.mark.usefixtures("demo")
def test_semicolons_in_cp1252_to_a_file(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "kontakter.csv"
    source.write_bytes(
        (
            "løbenr;afdeling;dato;note\r\n"
            f"1;1575;{DAY};Ærø\r\n"
            "2;157501;;\r\n"
            f"3;9999;{DAY};ingen\r\n"
            "4;15x;;\r\n"
            "5;1575;2025-13-01;\r\n"
            "\r\n"
            f"6;1575\r\n"
        ).encode("cp1252")
    )
    out = tmp_path / "svar.csv"
    done = resolve(
        [str(source), "--code-column", "afdeling", "--date-column", "dato", "--date", DAY,
         "-o", str(out)],
        database_url, tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    assert not (tmp_path / "svar.csv.partial").exists()
    raw = out.read_bytes()
    assert b"\r\n" in raw
    rows = rows_of(raw, "cp1252", ";")
    assert list(rows[0]) == ["løbenr", "afdeling", "dato", "note", *ANSWER]
    assert [r["løbenr"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[0]["note"] == "Ærø"
    assert [r["status"] for r in rows] == [
        "found", "found", "not_found", "invalid", "invalid", "found",
    ]  # fmt: skip
    assert (rows[0]["sor_id"], rows[0]["sor_name"], rows[0]["sor_kind"]) == (
        HYLDBY, "Hyldby Sygehus", "sygehus",
    )  # fmt: skip
    assert (rows[1]["sor_id"], rows[1]["health_institution_name"]) == (ONKOLOGI, "Hyldby Sygehus")
    assert (
        rows[3]["detail"]
        == "'15X' is not a SHAK code: a SHAK code is 4, 6 or 7 characters of 0-9 and A-Z."
    )
    assert rows[4]["detail"] == "date '2025-13-01' is not a calendar date."
    assert rows[5]["note"] == ""  # a short row is padded, its code still answered
    summary = done.stderr.decode()
    assert "resolved 6 rows" in summary
    assert "3 found, 1 not found, 2 invalid, 0 ambiguous" in summary


@pytest.mark.usefixtures("demo")
def test_stdin_with_a_bom_and_a_kind_column(database_url: str, tmp_path: Path) -> None:
    body = (
        "code,kind,date,extra\n"
        f"{HYLDBY},sor,{DAY},a\n"
        "5790001003432,ean,,b\n"  # an owner's, carried by units under it: the owner
        f"002001,ydernummer,{DAY},c\n"  # two yder units, neither under the other
        f'1575,,{DAY},"d, quoted"\n'
        "1575,cvr,,e\n"
    )
    done = resolve(["-"], database_url, tmp_path, stdin=codecs.BOM_UTF8 + body.encode())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(codecs.BOM_UTF8)  # answered in the encoding it came in
    rows = rows_of(done.stdout, "utf-8-sig")
    assert [r["status"] for r in rows] == ["found", "found", "ambiguous", "found", "invalid"]
    assert rows[0]["sor_name"] == "Hyldby Sygehus"
    assert rows[1]["sor_kind"] == "institutionsejer"
    ids = rows[2]["sor_id"].split(rs.JOIN)
    names = rows[2]["sor_name"].split(rs.JOIN)
    assert len(ids) == len(names) == 2
    assert "2 units carry the code" in rows[2]["detail"]
    assert rows[3]["extra"] == "d, quoted"
    assert rows[4]["detail"] == "kind 'cvr' is not one of shak, sor, ean, ydernummer."
    assert "1 ambiguous" in done.stderr.decode()


@pytest.mark.usefixtures("demo")
def test_tabs_one_kind_and_one_date_for_all(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "yder.tsv"
    source.write_text("nr\tyder\n1\t2001\n2\t002001\n3\t9\n", encoding="utf-8")
    done = resolve(
        [str(source), "--code-column", "yder", "--kind", "ydernummer", "--date", DAY],
        database_url, tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = rows_of(done.stdout, delimiter="\t")
    assert [r["status"] for r in rows] == ["ambiguous", "ambiguous", "not_found"]


@pytest.mark.usefixtures("demo")
def test_more_rows_than_a_chunk(database_url: str, tmp_path: Path) -> None:
    codes = ["1575", "157501", "9999", "1575023", "xx"]
    n = rs.CHUNK * 2 + 17
    source = tmp_path / "many.csv"
    source.write_text(
        "code,date\n" + "".join(f"{codes[i % 5]},{DAY}\n" for i in range(n)), encoding="utf-8"
    )
    done = resolve([str(source)], database_url, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = rows_of(done.stdout)
    assert len(rows) == n
    expected = {"1575": "found", "157501": "found", "9999": "not_found", "xx": "invalid"}
    for i, row in enumerate(rows):
        assert row["code"] == codes[i % 5]
        if row["code"] in expected:
            assert row["status"] == expected[row["code"]], row
    assert f"resolved {n:,} rows" in done.stderr.decode()


@pytest.mark.usefixtures("demo")
def test_a_missing_column_names_the_columns(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("shak;dato\n1575;2025-06-01\n", encoding="utf-8")
    done = resolve([str(source), "-o", str(tmp_path / "out.csv")], database_url, tmp_path)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "the input has no column 'code' (--code-column); its columns: 'shak', 'dato'"
    )
    assert not (tmp_path / "out.csv").exists()


def test_an_unreadable_file(database_url: str, tmp_path: Path) -> None:
    done = resolve([str(tmp_path / "nope.csv")], database_url, tmp_path)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        f"cannot read {tmp_path / 'nope.csv'}: No such file or directory"
    )


def test_bad_options(database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("code\n1575\n", encoding="utf-8")
    for args, message in [
        (["--kind", "cvr"], "--kind: kind 'cvr' is not one of shak, sor, ean, ydernummer."),
        (["--date", "1/6/2025"], "--date: date '1/6/2025' is not an ISO date YYYY-MM-DD."),
        (["--kind", "sor", "--kind-column", "k"], "give --kind or --kind-column, not both"),
    ]:
        done = resolve([str(source), *args], database_url, tmp_path)
        assert (done.returncode, done.stderr.decode().strip()) == (2, message)


def test_no_replica_yet(empty_database_url: str, tmp_path: Path) -> None:
    migrate.upgrade(empty_database_url)
    source = tmp_path / "x.csv"
    source.write_text("code\n1575\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    done = resolve([str(source), "-o", str(out)], empty_database_url, tmp_path)
    assert done.returncode == 1
    assert "the replica holds no SOR units yet: run `sorsync sync`" in done.stderr.decode()
    assert not out.exists()
    assert not (tmp_path / "out.csv.partial").exists()


def test_an_unmigrated_database(empty_database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("code\n1575\n", encoding="utf-8")
    done = resolve([str(source)], empty_database_url, tmp_path)
    assert done.returncode == 2
    assert "run `sorsync db upgrade` first" in done.stderr.decode()


@pytest.mark.usefixtures("demo")
def test_bytes_that_break_the_detected_encoding(database_url: str, tmp_path: Path) -> None:
    # UTF-8 for the whole sample the encoding is detected from, then a cp1252 byte
    source = tmp_path / "mixed.csv"
    filler = "".join(f"1575,{DAY},Ærø\n" for _ in range(8000)).encode()
    source.write_bytes(b"code,date,note\n" + filler + "1575,,Ærø\n".encode("cp1252"))
    out = tmp_path / "out.csv"
    done = resolve([str(source), "-o", str(out)], database_url, tmp_path)
    assert done.returncode == 1
    message = done.stderr.decode()
    assert "the input is not utf-8 after row" in message
    assert "give --encoding (e.g. cp1252)" in message
    assert not out.exists()
    again = resolve([str(source), "-o", str(out), "--encoding", "cp1252"], database_url, tmp_path)
    assert again.returncode == 0, again.stderr
