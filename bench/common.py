"""Shared pieces of the benchmarks: scratch databases, a simulator in its own process, synthetic
sygehusafdeling rows, a feed's pages recorded and replayed, and running one measurement in a
child process of its own (so that its CPU time and peak RSS are its alone).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import re
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

KEY = "sor/sygehusafdeling/v1"  # the widest SOR datatype (16 fields)
CPH = ZoneInfo("Europe/Copenhagen")


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


def server_url() -> str:
    url = os.environ.get("SORSYNC_TEST_DATABASE_URL")
    if not url:
        raise SystemExit(
            "set SORSYNC_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test);"
            " the benchmarks create and drop scratch databases on that server"
        )
    return url


@contextlib.contextmanager
def scratch_database(migrated: bool = True) -> Iterator[str]:
    """A new database on the server of SORSYNC_TEST_DATABASE_URL, migrated, dropped at the end."""
    from sqlalchemy import make_url, text

    from sorsync.db import migrate
    from sorsync.db.engine import make_engine

    base = server_url()
    name = f"sorsync_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base, pool=False)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        if migrated:
            migrate.upgrade(url)
        yield url
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- synthetic rows -------------------------------------------------------------------------

_OPEN = datetime(2999, 12, 31, tzinfo=CPH)
_STARTS = [datetime(2000 + n % 20, 1 + n % 12, 1, tzinfo=CPH) for n in range(240)]
_SPECIALTIES = [("08", "Intern medicin"), ("50", "Kirurgi"), ("26", "Pædiatri"), ("10", "Øre")]


def sor_id(i: int) -> int:
    """A valid SOR id (Verhoeff check digit) for row i (0-based)."""
    from sorsync.identifiers import make_sor_id

    return int(make_sor_id(i + 1))


def row_values(i: int, revision: int = 0) -> dict[str, object]:
    """Row i in the shape of real SOR: distinct ids and names, repeated codes and dates."""
    code, specialty = _SPECIALTIES[i % len(_SPECIALTIES)]
    suffix = f" (rev {revision})" if revision else ""
    hospital = sor_id(50_000_000 + i // 50)
    return {
        "sorNummer": sor_id(i),
        "sygehusSorNummer": hospital,
        "overafdelingSorNummer": sor_id(i - i % 10) if i % 10 else None,
        "underlagtSygehusSorNummer": hospital,
        "eanLokationsnummer": 5_790_000_000_000 + i,
        "afdelingTypeKode": 3,
        "afdelingTypeTekst": "Klinisk afdeling",
        "hovedSpecialeKode": code,
        "hovedSpecialeTekst": specialty,
        "nummer": f"{1301000 + i % 900_000:07d}",
        "navn": f"Afdeling for {specialty.lower()} nr. {i}{suffix}",
        "telefon": "38383838",
        "vejnavn": f"Eksempelvej {i % 200}",
        "postnummer": f"{1000 + i % 8000}",
        "bynavn": "København NV",
        "email": f"afd{i}@example.invalid" if i % 3 == 0 else None,
        "validFrom": _STARTS[i % len(_STARTS)],
        "validTo": _OPEN,
    }


SORENTITY = "sor/v2/sorentity/v1"


def sorentity_values(i: int) -> dict[str, object]:
    """Row i of SOR2's sorentity as the simulator renders it: every field of the mapping that a
    department has (about 70 elements), ids and names distinct, the rest repeated as in SOR."""
    from sorsync.mapping import ADDRESS_PREFIXES

    code, specialty = _SPECIALTIES[i % len(_SPECIALTIES)]
    hospital = sor_id(50_000_000 + i // 50)
    start = _STARTS[i % len(_STARTS)]
    values: dict[str, object] = {
        "SorId": str(sor_id(i)),
        "SorType": "OE",
        "EntityName": f"Afdeling for {specialty.lower()} nr. {i}",
        "EntityTypeName": "klinisk enhed",
        "FromDate": start.date().isoformat(),
        "FirstFromDate": start.date().isoformat(),
        "ShakId": f"{1301000 + i % 900_000:07d}",
        "OrganisationalLevelCode": "3",
        "OrganisationalLevelName": "Organisatorisk enhed, niveau 1",
        "ValidFrom": "2024-01-01T02:00:00.000+01:00",
        "ValidTo": "2999-12-31T00:00:00.000+01:00",
        "UniqueCurrentKey": f"{sor_id(i)}-{start.date():%Y%m%d}",
        "ParentSorId": str(sor_id(i - i % 10) if i % 10 else hospital),
        "HealthInstitutionSorId": str(hospital),
        "HealthInstitutionEntityName": f"Sygehus nr. {i // 50}",
        "HealthInstitutionEntityTypeName": "sygehus",
        "InstitutionOwnerSorId": str(sor_id(60_000_000 + i // 5000)),
        "InstitutionOwnerEntityName": "Region Eksempel",
        "InstitutionOwnerEntityTypeName": "region",
        "InstitutionOwnerCvrNumberId": "29190623",
        "EanLocationCode": str(5_790_000_000_000 + i),
        "EanLocationCodeRegionName": "Region Eksempel",
        "VirtualAddressTelephoneNumber": "38383838",
        "VirtualAddressWebsite": "www.sygehus.example",
        "VirtualAddressEmailAddress": f"afd{i}@example.invalid",
        "PrioritizedEntitySpeciality1Id": code,
        "PrioritizedEntitySpeciality1Name": specialty,
        "PrioritizedEntitySpeciality2Id": "394802001",
        "PrioritizedEntitySpeciality2Name": "Almen medicin",
    }
    for prefix in ADDRESS_PREFIXES.values():
        values.update(
            {
                f"{prefix}StreetName": f"Eksempelvej {i % 200}",
                f"{prefix}StreetBuildingId": str(1 + i % 120),
                f"{prefix}PostCodeId": f"{1000 + i % 8000}",
                f"{prefix}DistrictName": "København NV",
                f"{prefix}RegionCode": "1084",
                f"{prefix}CoordETRS89z32EMeasure": f"{720000 + i % 5000}.25",
                f"{prefix}CoordETRS89z32NMeasure": f"{6176000 + i % 5000}.75",
            }
        )
    return values


ROWS = {KEY: row_values, SORENTITY: sorentity_values}


# --- the simulator in its own process -------------------------------------------------------


def _simulator_main(records: int, conn: Connection, key: str = KEY) -> None:
    from sorsync.logs import configure
    from sorsync.simulator import server
    from sorsync.simulator.store import Store

    configure(level="WARNING")
    store = Store()
    table = store.table(key)
    make_row = ROWS[key]
    first = datetime(2024, 1, 1, tzinfo=UTC)
    per_run = 100_000  # like NSP: a few large import runs, each with one ModifiedDate
    for start in range(0, records, per_run):
        with store.import_run(first + timedelta(days=start // per_run)) as modified:
            for i in range(start, min(records, start + per_run)):
                table.insert(make_row(i), modified)
    import gc

    gc.collect()
    gc.freeze()  # the rows live for the whole process: keep them out of full GC passes
    handle = server.serve_in_thread(store)
    conn.send(handle.url)
    revision = 0
    while True:
        command = conn.recv()
        if command[0] == "update":
            # One import run that rewrites `count` rows in place (same PID, new ModifiedDate),
            # spread over the table: the next delta gets exactly these rows.
            count = command[1]
            revision += 1
            step = max(1, records // count)
            changed: list[int] = []
            with store.import_run() as modified:
                for n in range(count):
                    pid = 1 + (n * step) % records
                    values = row_values(pid - 1, revision)
                    table.update(pid, values, modified)
                    changed.append(int(values["sorNummer"]))  # type: ignore[call-overload]
            conn.send(changed)
        else:
            break
    handle.stop()


class Simulator:
    """`sorsync.simulator` serving `records` synthetic rows, in a child process."""

    def __init__(self, records: int, key: str = KEY) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_simulator_main, args=(records, child, key), daemon=True)
        started = time.perf_counter()
        self._proc.start()
        self.url: str = self._conn.recv()
        self.fill_seconds = time.perf_counter() - started

    def update(self, count: int) -> list[int]:
        """Change `count` rows at the source; returns their SOR numbers."""
        self._conn.send(("update", count))
        changed: list[int] = self._conn.recv()
        return changed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("stop",))
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.terminate()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- recorded pages, replayed -----------------------------------------------------------------

_OFFSET = re.compile(rb"<(?:\w+:)?offset>([0-9]{1,20})</")  # digits only: a file name


def _request(offset: str) -> bytes:
    """A bare `replicate` request for the benchmark datatype (no DGWS: the simulator's default)."""
    from sorsync.krs.wire import NS_KRS, NS_SOAP

    return (
        f'<e:Envelope xmlns:e="{NS_SOAP}"><e:Body><k:ReplicationRequest xmlns:k="{NS_KRS}">'
        "<register>sor</register><datatype>sygehusafdeling</datatype><version>1</version>"
        f"<offset>{offset}</offset><maxRecords>2000</maxRecords></k:ReplicationRequest>"
        "</e:Body></e:Envelope>"
    ).encode()


def fetch_pages(krs_url: str, *, stop_after_empty: bool = True) -> Iterator[tuple[str, bytes]]:
    """(offset, raw answer) for every page of the benchmark datatype's feed, in order; with
    `stop_after_empty=False` the final empty page comes too."""
    import requests

    from sorsync.datatypes import DATATYPES
    from sorsync.krs.feed import parse_response
    from sorsync.krs.wire import SOAP_ACTION, START_TOKEN

    dt = DATATYPES[KEY]
    offset = START_TOKEN  # where a sync starts, so that a replay has the page it asks for
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION}
    with requests.Session() as http:
        while True:
            body = http.post(krs_url, data=_request(offset), headers=headers, timeout=120).content
            page = parse_response(body, 200, dt)
            if page.entries or not stop_after_empty:
                yield offset, body
            if not page.entries:
                return
            offset = page.entries[-1].token


def _replay_main(directory: str, conn: Connection) -> None:
    """An HTTP server that answers each `replicate` with the page recorded for its offset."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the KRS client expects

        def do_POST(self) -> None:
            request = self.rfile.read(int(self.headers["Content-Length"]))
            found = _OFFSET.search(request)
            page = Path(directory, found.group(1).decode() if found else "-")
            body = page.read_bytes() if page.is_file() else b"no page recorded for this offset"
            self.send_response(200 if page.is_file() else 404)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send(f"http://127.0.0.1:{server.server_address[1]}/replay")
    conn.recv()  # until told to stop
    server.shutdown()


class Replay:
    """The pages of a KRS feed, fetched once and written to a temporary directory, served again
    by a child process that does no work but send them: a source whose rendering costs this
    machine nothing, as NSP's costs it nothing."""

    def __init__(self, krs_url: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sorsync-replay-")
        for offset, body in fetch_pages(krs_url, stop_after_empty=False):
            Path(self._dir.name, offset).write_bytes(body)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_replay_main, args=(self._dir.name, child), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.terminate()
        self._dir.cleanup()

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- one measurement, one process -----------------------------------------------------------


def _measured(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> dict[str, Any]:
    result = fn(*args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.setdefault("peak_rss_mb", round(usage.ru_maxrss / 1024, 1))  # Linux: KiB
    return result


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run fn(*args) in a fresh spawned process; its result gets the process's peak RSS."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, args).result()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_100k(seconds: float, records: int) -> float | None:
    return round(seconds * 100_000 / records, 3) if records else None
