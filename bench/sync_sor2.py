"""Benchmark: the first full sync of SOR2's sorentity (wide records, ~70 elements, stored whole
as jsonb with the mapping's expression indexes) side by side with the v1 sygehusafdeling
(16 typed columns), in one run on one host.

Each measurement runs `bench.sync_full` in a process of its own, so that CPU time and peak RSS
are that sync's alone. Prints one JSON line per measurement and one `compare` line per size:
SOR2 seconds per record over v1 seconds per record (the target is ≤ 1.5), SOR2 client CPU per
100 000 records (≤ 2 s) and peak RSS (≤ 300 MB).

    SORSYNC_TEST_DATABASE_URL=… .venv/bin/python -m bench.sync_sor2 --records 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from bench.common import KEY, SORENTITY, emit


def measure(datatype: str, records: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.sync_full",
            "--records",
            str(records),
            "--datatype",
            datatype,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000])
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each, in turns")
    args = parser.parse_args()
    for records in args.records:
        runs: dict[str, list[dict[str, Any]]] = {KEY: [], SORENTITY: []}
        for _ in range(args.rounds):
            for datatype in (KEY, SORENTITY):  # in turns: a noisy host hits both alike
                result = measure(datatype, records)
                runs[datatype].append(result)
                emit({"bench": "sync_sor2", **result})
        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        v1, v2 = best[KEY], best[SORENTITY]
        emit(
            {
                "bench": "sync_sor2",
                "compare": records,
                "sor2_over_v1_time_per_record": round(
                    (v2["seconds"] / v2["records"]) / (v1["seconds"] / v1["records"]), 2
                ),
                "sor2_client_cpu_s_per_100k": round(v2["client_cpu_s"] * 100_000 / records, 2),
                "sor2_peak_rss_mb": v2["peak_rss_mb"],
                "v1_client_cpu_s_per_100k": round(v1["client_cpu_s"] * 100_000 / records, 2),
                # The server's CPU (where the server runs here): steadier than the wall ratio.
                **{
                    f"{name}_server_cpu_s_per_100k": round(
                        min(r["server_cpu_s"] for r in runs[key]) * 100_000 / records, 2
                    )
                    for name, key in (("sor2", SORENTITY), ("v1", KEY))
                    if all(r.get("server_cpu_s") is not None for r in runs[key])
                },
            }
        )


if __name__ == "__main__":
    main()
