"""Admin snapshot loading over HTTP and the `sorsync simulator` command as a child process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
from lxml import etree

from sorsync.krs.wire import NS_ATOM, NS_KRS, NS_SOAP, make_token
from sorsync.simulator.generator import evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import SimulatorHandle
from sorsync.simulator.store import Store
from tests.fixtures.simulator import krs_request

NS = {"S": NS_SOAP, "a": NS_ATOM, "k": NS_KRS}
KEY = "sor/sygehusafdeling/v1"


def snapshot_bytes(units: int, seed: int, changes: int = 0) -> bytes:
    model = generate(units, seed=seed)
    if changes:
        model = evolve(model, changes, seed=seed)
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    return buffer.getvalue()


def tokens(url: str, offset: str = "0", datatype: str = "sygehusafdeling") -> list[str]:
    response = requests.post(url, data=krs_request("sor", datatype, 1, offset), timeout=10)
    assert response.status_code == 200, response.text
    doc = etree.fromstring(response.content)
    return [
        (entry.findtext("a:id", namespaces=NS) or "").rsplit("/", 1)[1]
        for entry in doc.iterfind("S:Body/k:ReplicationResponse/a:feed/a:entry", NS)
    ]


def test_snapshots_over_http_produce_deltas(simulator: SimulatorHandle) -> None:
    admin = simulator.base_url + "/admin/snapshot"
    first = requests.post(admin, data=snapshot_bytes(150, seed=5), timeout=30)
    assert first.status_code == 200, first.text
    report = first.json()
    assert report["units"] == 150
    state = requests.get(simulator.base_url + "/admin/state", timeout=10).json()["datatypes"]
    rows = state[KEY]["rows"]
    assert rows > 0
    assert rows == report["datatypes"][KEY]["inserted"]
    everything = tokens(simulator.url)
    assert len(everything) == rows
    last = state[KEY]["last_token"]
    assert everything[-1] == last

    second = requests.post(admin, data=snapshot_bytes(150, seed=5, changes=20), timeout=30)
    assert second.status_code == 200, second.text
    counts = second.json()["datatypes"][KEY]
    delta = tokens(simulator.url, last)
    assert 0 < len(delta) <= counts["inserted"] + counts["updated"] + counts["closed"]
    assert len(set(delta)) == len(delta)
    assert all(token > last for token in delta)


def test_a_bad_snapshot_is_refused_with_a_reason(simulator: SimulatorHandle) -> None:
    response = requests.post(
        simulator.base_url + "/admin/snapshot", data=b"<not-a-sortree/>", timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("snapshot not loaded: ")
    # the server keeps serving
    assert requests.post(simulator.url, data=krs_request(), timeout=10).status_code == 200


def test_cli_serves_snapshots_and_stops_on_sigterm(tmp_path: Path) -> None:
    day1, day2 = tmp_path / "day1.xml", tmp_path / "day2.xml"
    day1.write_bytes(snapshot_bytes(60, seed=3))
    day2.write_bytes(snapshot_bytes(60, seed=3, changes=5))
    process = subprocess.Popen(
        [sys.executable, "-m", "sorsync", "simulator", "--port", "0"]
        + [arg for day in (day1, day2) for arg in ("--snapshot", str(day))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("KRS simulator listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        assert url.endswith("/stamdata-batch-copy-ws/service/StamdataReplication")
        assert requests.get(url + "?wsdl", timeout=10).status_code == 200
        assert tokens(url)  # rows from both imports are served
        base = url.split("/stamdata-batch-copy-ws")[0]
        state = requests.get(base + "/admin/state", timeout=10).json()
        assert state["datatypes"][KEY]["rows"] > 0
        # Stamped with each snapshot's CreatedAtTime, not the clock: any load of the same files
        # (a restarted simulator) gives the same tokens.
        again = Store()
        for day in (day1, day2):
            load_snapshot(again, day, reproducible=True)
        last = again.table(KEY).last()
        assert last is not None
        assert state["datatypes"][KEY]["last_token"] == make_token(last.modified, last.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
