"""The API server's CPU per single lookup, cached and uncached: one JSON line per scenario,
`{"bench": "lookup_cpu", "scenario", "requests", "rps", "server_cpu_us_per_request", ...}`.

    SORSYNC_TEST_DATABASE_URL=... .venv/bin/python -m bench.lookup_cpu [--units 20000]
        [--clients 16] [--seconds 5]

Throughput on a shared host moves with whatever else runs on it; the CPU time the server
process spends per answered request (its utime + stime from /proc, PostgreSQL's not included)
moves much less, so it is what to compare between two versions of the lookup path. Scenarios
as bench.api_suite's `shak`, `sor` (answer cache on, warmed) and `shak_uncached`,
`sor_uncached` (SORSYNC_API_CACHE_ENTRIES=0), on bench.api_bench's synthetic data.
"""

from __future__ import annotations

import argparse
import os
import random

from bench.api_suite import visit_all, wrk
from bench.common import emit, scratch_database


def server_cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    from bench.api_bench import api_server, load

    with scratch_database() as url:
        data = load(url, args.units)
        rng = random.Random(1)
        shak = [f"/v1/shak/{c}" for c in rng.sample(data.shak, min(5000, len(data.shak)))]
        sor = [f"/v1/sor/{s}" for s in rng.sample(data.sections, min(5000, len(data.sections)))]
        for suffix, env in (("", {}), ("_uncached", {"SORSYNC_API_CACHE_ENTRIES": "0"})):
            with api_server(url, 1, env) as (base, pid):
                for name, paths in (("shak", shak), ("sor", sor)):
                    visit_all(base, paths)  # connections, plans, the answer cache
                    before = server_cpu_seconds(pid)
                    result = wrk(base, paths, args.clients, args.seconds, None)
                    cpu = server_cpu_seconds(pid) - before
                    emit({"bench": "lookup_cpu", "scenario": name + suffix,
                          "clients": args.clients, "requests": result["requests"],
                          "rps": result["rps"], "p99_ms": result["p99_ms"],
                          "non_2xx": result["non_2xx"],
                          "server_cpu_us_per_request":
                              round(cpu / max(result["requests"], 1) * 1e6, 1)})  # fmt: skip


if __name__ == "__main__":
    main()
