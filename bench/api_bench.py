"""The API benchmarks' fixture: a synthetic SOR replica (hospitals → departments → sections,
practices, yder, pharmacies; SHAK codes of 4, 6 and 7 characters) loaded with COPY, and
`sorsync serve` started on an ephemeral loopback port in its own process.

Used by bench/api_suite.py (wrk against the API) and bench/run_all.py (delta visibility).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from sorsync.db.engine import make_engine
from sorsync.db.maintenance import clean_gin_pending_lists
from sorsync.db.models import REPLICA_TABLES
from sorsync.identifiers import make_gln, make_sor_id

CPH = ZoneInfo("Europe/Copenhagen")


# --- data -----------------------------------------------------------------------------------


class Data:
    """Synthetic SOR in the shape of the real one: hospitals with departments and sections
    (SHAK 4/6/7 characters), practices with yder units, pharmacies; ~10 % of the hospital
    units carry a closed earlier version."""

    def __init__(self, units: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.units = units
        self.seq = 0
        self.pid = 0
        self.rows: dict[str, list[tuple[Any, ...]]] = {key: [] for key in REPLICA_TABLES}
        self.shak: list[str] = []
        self.sections: list[int] = []

    def _ids(self) -> tuple[int, int]:
        self.seq += 1
        self.pid += 1
        return int(make_sor_id(self.seq)), self.pid

    def _row(self, key: str, values: dict[str, Any]) -> None:
        table = REPLICA_TABLES[key]
        modified = dt.datetime(2026, 11, 1, 2, tzinfo=dt.UTC)
        base = {"modified_at": modified, "token": f"{1793500000:010d}{values['pid']:010d}"}
        full = base | values
        self.rows[key].append(tuple(full.get(c.name) for c in table.c))

    def build(self) -> Data:
        start = dt.datetime(2015, 1, 1, tzinfo=CPH)
        hospital_units = int(self.units * 0.55)
        n_hospitals = max(1, hospital_units // 110)
        addr = {"vejnavn": "Testvej 1", "postnummer": "8000", "bynavn": "Aarhus"}
        for h in range(n_hospitals):
            hid, pid = self._ids()
            code = f"{1000 + h:04d}"
            self.shak.append(code)
            self._row(
                "sor/sygehus/v1",
                {"pid": pid, "sor_nummer": hid, "nummer": code, "navn": f"Hospital {h}",
                 "ean_lokationsnummer": int(make_gln(f"5790{h:08d}")), "valid_from": start}
                | addr,
            )  # fmt: skip
            for d in range(10):
                did, _ = self._ids()
                dcode = f"{code}{d:02d}"
                self.shak.append(dcode)
                self._afdeling(did, hid, None, dcode, f"Afdeling {h}.{d}", start, addr)
                for s in range(10):
                    sid, _ = self._ids()
                    scode = f"{dcode}{s}"
                    self.shak.append(scode)
                    self.sections.append(sid)
                    self._afdeling(sid, hid, did, scode, f"Afsnit {h}.{d}.{s}", start, addr)
        while self.seq < self.units * 0.97:
            prid, pid = self._ids()
            self._row(
                "sor/praksis/v1",
                {"pid": pid, "sor_nummer": prid, "navn": f"Praksis {prid}", "valid_from": start},
            )
            for _ in range(2):
                yid, pid = self._ids()
                self._row(
                    "sor/yder/v1",
                    {"pid": pid, "sor_nummer": yid, "praksis_sor_nummer": prid,
                     "nummer": str(self.seq), "navn": f"Yder {yid}", "valid_from": start}
                    | addr,
                )  # fmt: skip
        while self.seq < self.units:
            aid, pid = self._ids()
            self._row(
                "sor/apotek/v1",
                {"pid": pid, "sor_nummer": aid, "navn": f"Apotek {aid}", "valid_from": start}
                | addr,
            )
        return self

    def _afdeling(
        self,
        sor: int,
        hospital: int,
        over: int | None,
        code: str,
        name: str,
        start: dt.datetime,
        addr: dict[str, str],
    ) -> None:
        values = {
            "sor_nummer": sor,
            "sygehus_sor_nummer": None if over else hospital,
            "overafdeling_sor_nummer": over,
            "underlagt_sygehus_sor_nummer": hospital,
            "nummer": code,
            "navn": name,
        } | addr
        if self.rng.random() < 0.1:  # an older, closed version
            self.pid += 1
            changed = start + dt.timedelta(days=self.rng.randrange(100, 3000))
            old = values | {"navn": name + " (gl.)", "valid_from": start, "valid_to": changed}
            self._row("sor/sygehusafdeling/v1", {"pid": self.pid} | old)
            start = changed
        self.pid += 1
        self._row("sor/sygehusafdeling/v1", {"pid": self.pid, "valid_from": start} | values)

    def copy_into(self, engine: Engine) -> None:
        with engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for key, rows in self.rows.items():
                table = REPLICA_TABLES[key]
                cols = ", ".join(c.name for c in table.c)
                with cur.copy(f"COPY krs.{table.name} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            for table in REPLICA_TABLES.values():
                conn.execute(text(f"ANALYZE krs.{table.name}"))
            # What a sync leaves behind: the finished run the API's data version comes from.
            conn.execute(
                text(
                    "INSERT INTO krs.sync_run (kind, started_at, finished_at, status, datatypes)"
                    " VALUES ('full', now(), now(), 'ok', :keys)"
                ),
                {"keys": list(self.rows)},
            )


def load(url: str, units: int) -> Data:
    """Build `units` synthetic units and COPY them into the (migrated) database at `url`."""
    data = Data(units).build()
    engine = make_engine(url, pool=False)
    try:
        data.copy_into(engine)
        # As a sync does after writing rows (sorsync.sync.service.run_sync).
        clean_gin_pending_lists(engine, [t.name for t in REPLICA_TABLES.values()])
    finally:
        engine.dispose()
    return data


# --- server ---------------------------------------------------------------------------------


@contextmanager
def api_server(
    url: str, workers: int, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    env = {**os.environ, "SORSYNC_DATABASE_URL": url, **(env or {})}
    cmd = [sys.executable, "-m", "sorsync", "serve", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--workers", str(workers)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    try:
        base = None
        while base is None:
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                raise SystemExit("sorsync serve did not start")
            if m := re.search(r"running on (http://127\.0\.0\.1:\d+)", line):
                base = m.group(1)
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        import httpx2

        for _ in range(200):
            try:
                if httpx2.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)
