"""`sorsync run` as a subprocess: on the zero-config defaults (embedded PostgreSQL, built-in
simulator) the API answers a SHAK lookup within 60 s and Ctrl-C leaves nothing running; with
SORSYNC_DATABASE_URL / SORSYNC_KRS_URL set it uses those; a child that dies stops everything."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text

from sorsync.datatypes import SYGEHUS
from sorsync.db.engine import make_engine
from sorsync.simulator.server import SimulatorHandle
from tests.fixtures.simulator import AddRows
from tests.fixtures.sync import source_values

# Slow (~27 s on 2 cores with --durations): `-m "not slow"` skips it locally; CI runs it.
pytestmark = pytest.mark.slow

DEMO_SHAK = "1575"  # a hospital in the bundled fictive demo data (Hyldby Sygehus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_table() -> dict[int, tuple[int, str]]:
    """pid → (ppid, command line), from `ps`."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True
    ).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, args = [*line.strip().split(None, 2), ""][:3]
        table[int(pid)] = (int(ppid), args)
    return table


def descendants(root: int) -> set[int]:
    table = process_table()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def still_running(pids: set[int], marker: str) -> list[str]:
    """Processes left over: any of `pids`, or any whose command line mentions `marker`."""
    table = process_table()
    return [
        f"{pid} {args}"
        for pid, (_, args) in table.items()
        if (pid in pids or marker in args) and "<defunct>" not in args and "ps -eo" not in args
    ]


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@pytest.fixture
def start_run(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Run]]:
    runs: list[Run] = []

    def start(env: dict[str, str]) -> Run:
        out, err = tmp_path / "run.out", tmp_path / "run.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sorsync", "run"],
                env=env,
                cwd=tmp_path,  # no stray .env file
                stdout=o,
                stderr=e,
            )
        run = Run(proc, out, err)
        runs.append(run)
        return run

    yield start
    for run in runs:  # a failed test must not leave the tree running
        if run.proc.poll() is None:
            for pid in descendants(run.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            run.proc.kill()
            run.proc.wait()


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], timeout: float, what: str, run: Run) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if run.proc.poll() is not None:
            pytest.fail(f"sorsync run exited ({run.proc.returncode}):\n{run.stderr()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{run.stderr()[-3000:]}")
        time.sleep(0.1)


def lookup(base: str, shak: str) -> httpx2.Response | None:
    try:
        return httpx2.get(f"{base}/v1/shak/{shak}", timeout=5)
    except httpx2.TransportError:
        return None


def test_zero_config_run_answers_a_shak_lookup_then_stops_everything(
    tmp_path: Path, start_run: Callable[[dict[str, str]], Run]
) -> None:
    port = free_port()
    data_home = tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    # Nothing configured but a free API port; the embedded PostgreSQL lands in a fresh data dir.
    env = bare_env(XDG_DATA_HOME=str(data_home), SORSYNC_API_PORT=str(port))
    env.pop("XDG_RUNTIME_DIR", None)
    started = time.monotonic()
    run = start_run(env)

    answer: list[httpx2.Response] = []

    def answered() -> bool:
        r = lookup(base, DEMO_SHAK)
        if r is not None and r.status_code == 200:
            answer.append(r)
            return True
        return False

    wait_for(answered, 60, f"GET /v1/shak/{DEMO_SHAK} to answer 200", run)
    seconds = time.monotonic() - started
    print(f"\nsorsync run: first successful SHAK lookup after {seconds:.1f} s")  # noqa: T201
    units = answer[0].json()["units"]
    assert units
    assert units[0]["shak"] == DEMO_SHAK

    wait_for(lambda: "docs:" in run.stdout(), 10, "the banner", run)
    assert f"{base}/docs" in run.stdout()
    assert httpx2.get(f"{base}/docs", timeout=5).status_code == 200
    status = httpx2.get(f"{base}/v1/status", timeout=5).json()
    assert status["stale"] is False
    # Every datatype of the demo holds rows, the replaced-by links too (the generator replaces
    # half of a fresh tree's closed units).
    empty = {d["datatype"] for d in status["datatypes"] if d["rows"] == 0}
    assert empty == set()

    children = descendants(run.proc.pid)
    commands = " ".join(process_table()[pid][1] for pid in children if pid in process_table())
    for part in ("simulator", "scheduler", "serve"):
        assert f"sorsync {part}" in commands
    marker = str(data_home)
    assert still_running(set(), marker), "the embedded PostgreSQL is not running from the data dir"

    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=45) == 0, run.stderr()[-3000:]
    deadline = time.monotonic() + 10
    while (left := still_running(children, marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"left running after Ctrl-C: {left}"
    assert "Traceback" not in run.stderr()


def test_configured_run_uses_the_given_database_and_krs_and_a_dead_child_stops_it(
    empty_database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    start_run: Callable[[dict[str, str]], Run],
) -> None:
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(5)])
    port = free_port()
    env = bare_env(
        SORSYNC_DATABASE_URL=empty_database_url,  # not even migrated yet
        SORSYNC_KRS_URL=simulator.url,
        SORSYNC_KRS_DATATYPES=SYGEHUS.key,
        SORSYNC_API_PORT=str(port),
        SORSYNC_METRICS_PORT="0",
    )
    run = start_run(env)
    wait_for(lambda: "docs:" in run.stdout(), 60, "the banner", run)
    assert "built-in KRS simulator" not in run.stderr()  # the configured KRS is used
    engine = make_engine(empty_database_url, pool=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f'SELECT count(*) FROM krs."{SYGEHUS.table}"')).scalar()
            kinds = conn.execute(text("SELECT kind FROM krs.sync_run ORDER BY id")).scalars()
            assert (rows, list(kinds)[:1]) == (5, ["full"])
    finally:
        engine.dispose()

    children = descendants(run.proc.pid)
    table = process_table()
    (api,) = [pid for pid in children if "sorsync serve" in table[pid][1]]
    os.kill(api, signal.SIGKILL)
    assert run.proc.wait(timeout=45) == 1
    message = run.stderr()
    assert "sorsync run: the API (sorsync serve) was killed by SIGKILL; stopping everything" in (
        message
    )
    assert still_running(children, "\0") == []


def test_port_in_use_is_reported_before_anything_starts(
    start_run: Callable[[dict[str, str]], Run],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = start_run(
            bare_env(
                SORSYNC_API_PORT=str(port),
                SORSYNC_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none",
                SORSYNC_KRS_URL="http://127.0.0.1:9/unused",
            )
        )
        assert run.proc.wait(timeout=30) == 2
    assert f"cannot serve the API on 127.0.0.1:{port}" in run.stderr()
    assert "SORSYNC_API_PORT" in run.stderr()


def test_children_stop_when_the_parent_is_killed(
    empty_database_url: str,
    simulator: SimulatorHandle,
    sim_add_rows: AddRows,
    start_run: Callable[[dict[str, str]], Run],
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux only")  # documented in docs/operations.md
    sim_add_rows(SYGEHUS.key, [source_values(SYGEHUS, i) for i in range(3)])
    env = bare_env(
        SORSYNC_DATABASE_URL=empty_database_url,
        SORSYNC_KRS_URL=simulator.url,
        SORSYNC_KRS_DATATYPES=SYGEHUS.key,
        SORSYNC_API_PORT=str(free_port()),
        SORSYNC_METRICS_PORT="0",
    )
    run = start_run(env)
    wait_for(lambda: "docs:" in run.stdout(), 60, "the banner", run)
    children = descendants(run.proc.pid)
    table = process_table()
    assert {"scheduler", "serve"} <= {
        part for pid in children for part in ("scheduler", "serve") if part in table[pid][1]
    }

    run.proc.kill()  # no chance to stop anything itself
    run.proc.wait()
    deadline = time.monotonic() + 30
    while (left := still_running(children, "\0")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"children outlived a SIGKILLed sorsync run: {left}"
