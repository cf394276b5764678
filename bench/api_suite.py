"""API measurements with wrk (C load generator, its own process, loopback only): one JSON line
per scenario and concurrency, `{"bench": "api", "scenario", "clients", "rps", "p50_ms", ...}`.

    SORSYNC_TEST_DATABASE_URL=... .venv/bin/python -m bench.api_suite [--units 100000]
        [--clients 1,16,64] [--seconds 5] [--workers 1]

Data: bench.api_bench's synthetic SOR (hospitals → departments → sections, practices, yder,
pharmacies; SHAK codes of 4/6/7 characters) loaded with COPY into a scratch database.
Scenarios, each at every --clients value, bounded by --seconds:

* `constant`  a bare FastAPI endpoint returning a constant (bench/constant_app.py) under the
              same uvicorn settings as `sorsync serve`: the framework's ceiling here
* `livez`     our app's GET /livez (no database): the ceiling with our middleware
* `shak`      GET /v1/shak/{code}, 5 000 distinct existing codes, round robin (a warm-up pass
              asks for each once, so all are then answered from the API's in-memory cache)
* `sor`       GET /v1/sor/{id} of sections (unit + 2 ancestors + children), likewise
* `shak_uncached`, `sor_uncached`  the same with the cache off (SORSYNC_API_CACHE_ENTRIES=0):
              every lookup goes to PostgreSQL
* `resolve`   POST /v1/shak/resolve with 10 000 codes (9 000 found, 1 000 not)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import emit, scratch_database

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local body = nil
if os.getenv("BENCH_BODY") ~= "" then
  local f = io.open(os.getenv("BENCH_BODY"), "rb"); body = f:read("*a"); f:close()
end
local i = 0
request = function()
  i = i + 1
  local path = paths[(i % #paths) + 1]
  if body then
    return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d,' ..
    ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk(
    base: str,
    paths: list[str],
    clients: int,
    seconds: float,
    body: bytes | None,
    timeout: float = 10,
) -> dict[str, Any]:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        script, path_file, body_file = Path(tmp, "s.lua"), Path(tmp, "paths"), Path(tmp, "body")
        script.write_text(LUA)
        path_file.write_text("\n".join(paths) + "\n")
        if body is not None:
            body_file.write_bytes(body)
        env = {**os.environ, "BENCH_PATHS": str(path_file),
               "BENCH_BODY": str(body_file) if body is not None else ""}  # fmt: skip
        cmd = [exe, f"-t{min(clients, 2)}", f"-c{clients}", f"-d{max(1, round(seconds))}s",
               f"--timeout={round(timeout)}s", "-s", str(script), base]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds_run = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds_run, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
    }


def visit_all(base: str, paths: list[str]) -> None:
    """Ask for every path once, in order, over one keep-alive connection (the warm-up)."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    try:
        for path in paths:
            conn.request("GET", path)
            conn.getresponse().read()
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def constant_server(workers: int) -> Iterator[str]:
    """bench.constant_app under uvicorn with `sorsync serve`'s settings."""
    port = _free_port()
    code = (
        "import uvicorn; uvicorn.run('bench.constant_app:create_app', factory=True,"
        f" host='127.0.0.1', port={port}, workers={workers}, log_config=None,"
        " access_log=False, proxy_headers=True)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.clients.split(",")]

    from bench.api_bench import api_server, load

    with scratch_database() as url:
        started = time.perf_counter()
        data = load(url, args.units)
        emit({"bench": "api_load", "units": data.seq,
              "rows": sum(len(r) for r in data.rows.values()),
              "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
        rng = random.Random(1)
        shak = [f"/v1/shak/{c}" for c in rng.sample(data.shak, min(5000, len(data.shak)))]
        sor = [f"/v1/sor/{s}" for s in rng.sample(data.sections, min(5000, len(data.sections)))]
        codes = rng.sample(data.shak, min(9_000, len(data.shak)))
        codes += [f"Z{i:05d}" for i in range(10_000 - len(codes))]  # valid, not found
        resolve = json.dumps({"codes": codes}).encode()

        figures: dict[tuple[str, int], dict[str, Any]] = {}

        def run(scenario: str, base: str, paths: list[str], body: bytes | None = None) -> None:
            # warm-up: connections, plans, PostgreSQL's buffers and the API's cache
            if body is None:
                visit_all(base, paths)
            else:
                wrk(base, paths, 1, 1, body, timeout=60)
            for clients in concurrency:
                seconds, timeout = args.seconds, 10.0
                if body is not None:
                    # a 10 000-code batch takes ~0.3 s: give queued ones time to finish
                    seconds = max(seconds, 10.0 if clients <= 16 else 30.0)
                    timeout = 60.0
                result = wrk(base, paths, clients, seconds, body, timeout)
                figures[scenario, clients] = result
                emit({"bench": "api", "scenario": scenario, "clients": clients,
                      "workers": args.workers, **result})  # fmt: skip

        with constant_server(args.workers) as base:
            run("constant", base, ["/constant"])
        with api_server(url, args.workers) as (base, _pid):
            run("livez", base, ["/livez"])
            run("shak", base, shak)
            run("sor", base, sor)
            run("resolve", base, ["/v1/shak/resolve"], resolve)
        with api_server(url, args.workers, {"SORSYNC_API_CACHE_ENTRIES": "0"}) as (base, _pid):
            run("shak_uncached", base, shak)
            run("sor_uncached", base, sor)
        if (key := ("constant", 16)) in figures and ("shak", 16) in figures:
            ceiling = figures[key]["rps"] or 1.0
            compare: dict[str, Any] = {"bench": "api_compare"}
            for scenario in ("shak", "sor", "shak_uncached", "sor_uncached"):
                compare[f"{scenario}_share_of_constant_16"] = round(
                    figures[scenario, 16]["rps"] / ceiling, 2
                )
                compare[f"{scenario}_p99_ms_16"] = figures[scenario, 16]["p99_ms"]
            compare["resolve_10000_p50_ms_1"] = figures.get(("resolve", 1), {}).get("p50_ms")
            emit(compare)


if __name__ == "__main__":
    main()
