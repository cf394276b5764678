"""Back-mapping in bulk (docs/back-mapping.md): one JSON line per measurement,
`{"bench": "resolve", "scenario", ...}`.

    SORSYNC_TEST_DATABASE_URL=... .venv/bin/python -m bench.resolve_bench [--units 100000]
        [--pairs 1000000] [--batch 10000] [--repeats 20] [--singles 2000]

Data: bench.api_bench's synthetic SOR (hospitals → departments → sections, practices, yder,
pharmacies; SHAK codes of 4/6/7 characters) loaded with COPY into a scratch database, and
`sorsync serve` (one worker) on a loopback port. The pairs: 90 % existing SHAK codes, 4 %
unknown SHAK codes, 4 % SOR ids, 2 % invalid codes, each with a date drawn from 2015-2026 —
so nearly every pair is distinct. The streams ask the database once per code (its timeline),
and 1 000 000 pairs hold ~137 000 codes; `--codes N` draws the SHAK codes from N of them, as a
back-mapping job of many records over a few codes does.

* `json`     POST /v1/resolve with --batch items as JSON, --repeats times: p50/p99 latency
             (target: p50 ≤ 100 ms for 10 000 items)
* `api_csv`  --pairs items streamed as text/csv through POST /v1/resolve and the answer read
             as it comes: pairs/s (target ≥ 100 000/s), the server's peak RSS (target ≤ 300 MB)
* `cli`      the same file through `sorsync resolve` (the API not involved): pairs/s of the
             whole command, start-up included, and its peak RSS (same targets)
* `single`   --singles of the pairs asked one by one (GET /v1/shak/{code}?date=…, one client,
             one connection): pairs/s, and what --pairs would take that way
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import emit, scratch_database

FIRST_DAY = dt.date(2015, 1, 1)
DAYS = (dt.date(2026, 12, 31) - FIRST_DAY).days


def make_pairs(
    shak: list[str], sor_ids: list[int], n: int, seed: int = 3
) -> list[tuple[str, str, str]]:
    """(code, kind, date) items in the mix the module's docstring describes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        day = (FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS))).isoformat()
        r = rng.random()
        if r < 0.90:
            out.append((rng.choice(shak), "shak", day))
        elif r < 0.94:
            out.append((f"9{rng.randrange(10**5):05d}", "shak", day))  # unknown, well formed
        elif r < 0.98:
            out.append((str(rng.choice(sor_ids)), "sor", day))
        else:
            out.append((f"x-{i}", "shak", day))  # invalid
    return out


def write_csv(pairs: list[tuple[str, str, str]], path: Path) -> int:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("code,kind,date\n")
        f.writelines(f"{c},{k},{d}\n" for c, k, d in pairs)
    return path.stat().st_size


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set) of a running process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_json(base: str, pairs: list[tuple[str, str, str]], batch: int, repeats: int) -> None:
    import httpx2
    import orjson

    items = [{"code": c, "kind": k, "date": d} for c, k, d in pairs[:batch]]
    body = orjson.dumps({"items": items})
    times = []
    with httpx2.Client(base_url=base, timeout=120) as client:
        for n in range(repeats + 1):
            started = time.perf_counter()
            r = client.post(
                "/v1/resolve", content=body, headers={"content-type": "application/json"}
            )
            elapsed = time.perf_counter() - started
            assert r.status_code == 200, r.text[:500]
            if n:  # the first one warms the connection and the plan cache
                times.append(elapsed * 1000)
            results = r.json()["results"]
            assert len(results) == len(items)
    emit(
        {
            "bench": "resolve",
            "scenario": "json",
            "items": len(items),
            "repeats": repeats,
            "p50_ms": round(statistics.median(times), 1),
            "p99_ms": round(percentile(times, 0.99), 1),
            "min_ms": round(min(times), 1),
            "target_p50_ms": 100,
        }
    )


def duplex_post(base: str, path: Path, media_type: str) -> Iterator[bytes]:
    """POST the file at `path` and yield the answer's bytes while the body is still being
    sent. The streams answer as they read, so a client that sends the whole body before it
    reads (httpx, requests, http.client alone) stalls both sides once the socket buffers
    fill; this one sends from a thread."""
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=600)
    size = path.stat().st_size
    head = (
        f"POST /v1/resolve HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {media_type}\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    failed: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(head)
            with path.open("rb") as f:
                sock.sendfile(f)
        except OSError as exc:
            failed.append(exc)

    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    answer = http.client.HTTPResponse(sock)
    try:
        answer.begin()
        assert answer.status == 200, answer.read(500)
        while chunk := answer.read1(1 << 16):
            yield chunk
    finally:
        writer.join(timeout=60)
        answer.close()
        sock.close()
    assert not failed, failed


def bench_api_csv(base: str, pid: int, path: Path, pairs: int) -> None:
    lines = 0
    tail = b""
    started = time.perf_counter()
    for chunk in duplex_post(base, path, "text/csv"):
        lines += chunk.count(b"\n")
        tail = (tail + chunk)[-2000:]
    seconds = time.perf_counter() - started
    assert lines == pairs + 1, (lines, tail[-500:])
    assert b",error," not in tail, tail[-500:]
    emit(
        {
            "bench": "resolve",
            "scenario": "api_csv",
            "pairs": pairs,
            "seconds": round(seconds, 2),
            "pairs_per_s": round(pairs / seconds),
            "server_peak_rss_mb": peak_rss_mb(pid),
            "target_pairs_per_s": 100_000,
            "target_peak_rss_mb": 300,
        }
    )


def bench_cli(url: str, path: Path, pairs: int) -> None:
    out = path.with_suffix(".answer.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env["SORSYNC_DATABASE_URL"] = url
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sorsync", "resolve", str(path), "-o", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # The peak RSS from /proc while it runs: wait4's ru_maxrss would count the pages this
    # process (holding every pair) had when it forked the child, before the exec.
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    summary = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, summary
    with out.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    assert lines == pairs + 1, lines
    out.unlink()
    emit(
        {
            "bench": "resolve",
            "scenario": "cli",
            "pairs": pairs,
            "seconds": round(seconds, 2),
            "pairs_per_s": round(pairs / seconds),
            "peak_rss_mb": peak,
            "summary": summary.strip().splitlines()[-1] if summary.strip() else "",
            "target_pairs_per_s": 100_000,
            "target_peak_rss_mb": 300,
        }
    )


def bench_single(base: str, pairs: list[tuple[str, str, str]], sample: int, total: int) -> None:
    import httpx2

    shak = [(c, d) for c, k, d in pairs if k == "shak" and c.isalnum()][:sample]
    started = time.perf_counter()
    with httpx2.Client(base_url=base, timeout=60) as client:
        for code, day in shak:
            r = client.get(f"/v1/shak/{code}", params={"date": day})
            assert r.status_code in (200, 404), r.text[:300]
    seconds = time.perf_counter() - started
    rate = len(shak) / seconds
    emit(
        {
            "bench": "resolve",
            "scenario": "single",
            "pairs": len(shak),
            "seconds": round(seconds, 2),
            "pairs_per_s": round(rate),
            "extrapolated_seconds_for": {str(total): round(total / rate)},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="items in one JSON request")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--singles", type=int, default=2000, help="GET lookups asked one by one")
    parser.add_argument(
        "--codes",
        type=int,
        default=0,
        help="draw the SHAK codes from the first N only (a back-mapping job's few codes over"
        " many dates); 0: from all",
    )
    args = parser.parse_args()

    from bench.api_bench import api_server, load

    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="sorsync-resolve-") as tmp:
        started = time.perf_counter()
        data = load(url, args.units)
        sor_ids = data.sections or [1]
        shak = data.shak[: args.codes] if args.codes else data.shak
        pairs = make_pairs(shak, sor_ids, max(args.pairs, args.batch))
        path = Path(tmp, "pairs.csv")
        size = write_csv(pairs[: args.pairs], path)
        emit(
            {
                "bench": "resolve",
                "scenario": "setup",
                "units": args.units,
                "pairs": args.pairs,
                "distinct_pairs": len(set(pairs[: args.pairs])),
                "distinct_codes": len({(kind, code) for code, kind, _ in pairs[: args.pairs]}),
                "csv_mb": round(size / 1e6, 1),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        # The command first, while no server competes with it for the two cores.
        bench_cli(url, path, args.pairs)
        with api_server(url, 1) as (base, pid):
            bench_json(base, pairs, args.batch, args.repeats)
            bench_api_csv(base, pid, path, args.pairs)
            bench_single(base, pairs, args.singles, args.pairs)


if __name__ == "__main__":
    main()
