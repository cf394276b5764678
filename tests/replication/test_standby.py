"""The API on a PostgreSQL hot standby, and writers pointed at one (docs/deployment.md).

A real primary and a streaming standby on 127.0.0.1 (tests/fixtures/replication.py); the
primary holds a full sync of a generated KRS source; `sorsync serve` runs on the standby.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from tests.fixtures.replication import free_port
from tests.fixtures.serve import serve_process
from tests.reliability.harness import run_sorsync
from tests.replication.bed import Bed, last_ok_run, probes, replication_bed, wait_for

UNITS = 300
SEED = 20261202


@dataclass
class StandbyBed:
    bed: Bed
    api: str  # `sorsync serve` on the standby


@pytest.fixture(scope="module")
def standby(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandbyBed]:
    with replication_bed(UNITS, SEED) as bed:
        url = bed.topology.standby.url
        with serve_process(url, env=bed.env(url)) as api:
            yield StandbyBed(bed, api)
        bed.report("standby")


def _route_paths(sb: StandbyBed) -> dict[str, str]:
    """Every GET route of the app with real values for its parameters."""
    engine = sb.bed.engine(sb.bed.topology.standby.url)
    with engine.connect() as conn:
        unit = conn.execute(
            text(
                "SELECT sor_id, shak FROM sor.unit_current WHERE shak IS NOT NULL"
                " ORDER BY sor_id LIMIT 1"
            )
        ).one()
        yder = conn.execute(
            text("SELECT ydernummer FROM sor.unit_current WHERE ydernummer IS NOT NULL LIMIT 1")
        ).scalar_one()
        ean = conn.execute(
            text("SELECT ean FROM sor.unit_current WHERE ean IS NOT NULL LIMIT 1")
        ).scalar_one()
    return {
        "/v1/shak/{shak}": f"/v1/shak/{unit.shak}",
        "/v1/sor/{sor_id}": f"/v1/sor/{unit.sor_id}",
        "/v1/sor/{sor_id}/history": f"/v1/sor/{unit.sor_id}/history",
        "/v1/yder/{ydernummer}": f"/v1/yder/{yder}",
        "/v1/ean/{gln}": f"/v1/ean/{ean}",
        "/v1/units": "/v1/units?kind=sygehus&limit=5",
        "/v1/status": "/v1/status",
        "/fhir/Organization/{sor_id}": f"/fhir/Organization/{unit.sor_id}",
        "/fhir/Organization": f"/fhir/Organization?identifier={unit.sor_id}",
    }


def test_every_route_answers_on_the_standby(standby: StandbyBed) -> None:
    paths = _route_paths(standby)
    with httpx2.Client(base_url=standby.api, timeout=10) as client:
        documented = client.get("/openapi.json").json()["paths"]
        # A route added later must be added here too: "every route" stays every route.
        assert set(documented) == set(paths) | {"/v1/shak/resolve", "/v1/resolve"}
        for path in [*paths.values(), "/livez", "/readyz", "/metrics", "/", "/docs"]:
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        shak = paths["/v1/shak/{shak}"].rsplit("/", 1)[1]
        r = client.post("/v1/shak/resolve", json={"codes": [shak, "9999999"]})
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["found", "not_found"]
        body = f"code,kind\n{shak},shak\n9999999,shak\n"
        r = client.post("/v1/resolve", content=body, headers={"content-type": "text/csv"})
        assert r.status_code == 200, r.text
        assert [row["status"] for row in csv.DictReader(io.StringIO(r.text))] == [
            "found",
            "not_found",
        ]
        assert client.get("/readyz").json() == {"status": "ready"}


def test_status_on_the_standby_reports_its_lag(standby: StandbyBed) -> None:
    with httpx2.Client(base_url=standby.api, timeout=10) as client:
        status = client.get("/v1/status").json()
        metrics = client.get("/metrics").text
    repl = status["replication"]
    assert repl["role"] == "standby"
    assert repl["wal_receiver"] == "streaming"
    assert repl["lag_seconds"] is not None
    assert repl["lag_seconds"] < 5
    assert status["data_version"] == str(last_ok_run(standby.bed.engine(standby.bed.writer_url)))
    assert status["stale"] is False
    assert "sorsync_replication_lag_seconds" in metrics
    # On the primary the same report says so, with no lag to speak of.
    primary = standby.bed.topology.primary.url
    with TestClient(create_app(database_url=primary)) as client:
        assert client.get("/v1/status").json()["replication"] == {
            "role": "primary",
            "lag_seconds": None,
            "replayed_at": None,
            "wal_receiver": None,
        }


def test_a_sync_on_the_primary_moves_the_standbys_etags(standby: StandbyBed) -> None:
    bed = standby.bed
    paths = probes(bed.engine(bed.topology.standby.url), 40)
    with httpx2.Client(base_url=standby.api, timeout=10) as client:
        before = {p: client.get(p) for p in paths}
        again = client.get(paths[0])  # from the answer cache now
        assert again.headers["etag"] == before[paths[0]].headers["etag"]
        assert (
            client.get(paths[0], headers={"If-None-Match": again.headers["etag"]}).status_code
            == 304
        )

        bed.source.evolve(60, SEED + 1)
        result = bed.sync("delta")
        synced = time.monotonic()
        assert result.records > 0
        bed.figures["delta_replayed_on_standby_s"] = round(bed.caught_up(), 3)

        def version_seen() -> bool:
            body = client.get("/v1/status").json()
            return bool(body["data_version"] == str(result.run_id))

        seen = wait_for(version_seen, 10, "the standby's /v1/status to show the new run")
        status = client.get("/v1/status").json()
        bed.figures["delta_visible_on_standby_s"] = round(time.monotonic() - synced, 3)
        bed.figures["standby_lag_reported_s"] = status["replication"]["lag_seconds"]
        assert seen < 10

        # The API caches the data version for up to a second (api/database.py, version_ttl).
        def etags_moved() -> bool:
            r = client.get(paths[0])
            return r.headers["etag"] != before[paths[0]].headers["etag"]

        wait_for(etags_moved, 5, "the ETags to move on")
        after = {p: client.get(p) for p in paths}
        old = before[paths[0]].headers["etag"]
        assert client.get(paths[0], headers={"If-None-Match": old}).status_code == 200
    # The standby answers exactly what the primary does, and the sync changed some answers.
    with TestClient(create_app(database_url=bed.topology.primary.url, version_ttl=0)) as direct:
        for p in paths:
            there = direct.get(p)
            assert (after[p].status_code, after[p].json()) == (there.status_code, there.json())
            if after[p].status_code == 200:  # a unit the delta closed answers 404
                assert after[p].headers["etag"].startswith(f'"{result.run_id}-')
    changed = [p for p in paths if after[p].json() != before[p].json()]
    assert changed, "the evolved source changed none of the probes; pick more"
    bed.figures["probes_changed_by_delta"] = f"{len(changed)}/{len(paths)}"


def _one_line(done: object) -> str:
    stderr = getattr(done, "stderr", "")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


WRITERS = [["sync"], ["sync", "--full"], ["db", "upgrade"], ["scheduler"]]


@pytest.mark.parametrize("command", WRITERS, ids=" ".join)
def test_writers_pointed_at_the_standby_refuse_in_one_line(
    standby: StandbyBed, command: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    bed = standby.bed
    url = bed.topology.standby.url
    done = run_sorsync(command, bed.env(url), tmp_path_factory.mktemp("cli"), timeout=60)
    assert done.returncode == 2, done.stderr
    line = _one_line(done)
    assert f"127.0.0.1:{bed.topology.standby.port} is a read-only hot standby" in line
    assert "target_session_attrs=read-write" in line


def test_bad_database_urls_have_clear_errors(
    standby: StandbyBed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bed = standby.bed
    topo = bed.topology
    cwd = tmp_path_factory.mktemp("cli")

    # A writer given the API's URL (a mixed-up role): refused before connecting.
    done = run_sorsync(["sync"], bed.env(topo.multi_host_url("prefer-standby")), cwd)
    assert done.returncode == 2
    assert "asks for a standby (target_session_attrs=prefer-standby)" in _one_line(done)

    # Several hosts without target_session_attrs: libpq takes the first that answers, here the
    # standby; the writer notices and says what to add.
    url = topo.multi_host_url("any", [topo.standby, topo.primary])
    done = run_sorsync(["sync"], bed.env(url), cwd)
    assert done.returncode == 2
    assert "read-only hot standby" in _one_line(done)

    # Only standbys are listed for a writer: every server named, with why it did not fit.
    done = run_sorsync(["sync"], bed.env(topo.multi_host_url("read-write", [topo.standby])), cwd)
    assert done.returncode == 1
    line = _one_line(done)
    assert "no server in SORSYNC_DATABASE_URL fits target_session_attrs=read-write" in line
    assert f"127.0.0.1:{topo.standby.port}" in line

    # No server reachable: each one is named on the one line.
    dead = [free_port(), free_port()]
    url = (
        f"postgresql://postgres@/sorsync?host=127.0.0.1,127.0.0.1&port={dead[0]},{dead[1]}"
        "&target_session_attrs=read-write"
    )
    for command in (["sync"], ["status"], ["db", "upgrade"]):
        done = run_sorsync(command, bed.env(url), cwd)
        assert done.returncode == 1, (command, done.stderr)
        line = _one_line(done)
        assert line.startswith("cannot reach PostgreSQL"), line
        assert f"127.0.0.1:{dead[0]}: Connection refused" in line
        assert f"127.0.0.1:{dead[1]}: Connection refused" in line


def test_status_command_on_the_standby(
    standby: StandbyBed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bed = standby.bed
    url = bed.topology.multi_host_url("prefer-standby")
    done = run_sorsync(["status"], bed.env(url), tmp_path_factory.mktemp("cli"))
    assert done.returncode == 0, done.stderr
    assert "server: hot standby, replication lag" in done.stdout
    assert "WAL receiver streaming" in done.stdout


def _version_of(etag: str) -> int:
    return int(etag.strip('"').partition("-")[0])


def test_answers_name_the_version_of_the_server_that_built_them(standby: StandbyBed) -> None:
    """The API's connections spread over the primary and a standby that lags behind it (one
    URL, `load_balance_hosts=random`; or connections made while the standby was away): every
    answer's ETag names the data version of the server whose data its body is. A version read
    on one connection must not tag data read on another, which may be on a server that has
    not replayed that version yet (the client would keep the old body as the new version's)."""
    bed = standby.bed
    topo = bed.topology
    lagging = bed.engine(topo.standby.url)
    paths = probes(lagging, 40)
    old_run = last_ok_run(lagging)
    with lagging.connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()"))
    try:
        bed.source.evolve(60, SEED + 2)
        new_run = bed.sync("delta").run_id
        spread = f"{topo.multi_host_url('any')}&load_balance_hosts=random"
        answers = []
        # Each of an app's pooled connections lands on a random server, all of them on one
        # about one app in eight: fresh apps until one has answered from both.
        for _attempt in range(12):
            seen: set[int] = set()
            # A long version TTL and the answer cache on: the most a version could be reused.
            with TestClient(create_app(database_url=spread, version_ttl=60)) as client:
                for _ in range(5):
                    for p in paths:
                        r = client.get(p)
                        answers.append((p, r.status_code, r.headers.get("etag"), r.content))
                        if etag := r.headers.get("etag"):
                            seen.add(_version_of(etag))
            if seen == {old_run, new_run}:
                break
        built: dict[int | None, dict[str, tuple[int, bytes]]] = {}
        for url, run_id in ((topo.primary.url, new_run), (topo.standby.url, old_run)):
            with TestClient(create_app(database_url=url, version_ttl=0)) as direct:
                built[run_id] = {
                    p: (r.status_code, r.content) for p in paths if (r := direct.get(p))
                }
    finally:
        with lagging.connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_resume()"))
        bed.caught_up()

    changed = [p for p in paths if built[old_run][p] != built[new_run][p]]
    assert changed, "the evolved source changed none of the probes; pick more"
    versions = set()
    for p, status, etag, body in answers:
        if status == 404:
            assert 404 in (built[old_run][p][0], built[new_run][p][0]), p
            continue
        assert status == 200, (p, status)
        assert etag is not None, p
        version = _version_of(etag)
        versions.add(version)
        assert built[version][p] == (200, body), f"{p} under ETag {etag} is not run {version}'s"
    assert versions == {old_run, new_run}, "the answers did not come from both servers"
