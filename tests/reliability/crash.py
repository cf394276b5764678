"""Crash trials: SIGKILL a `sorsync sync` subprocess at a random moment, check what the kill left
behind, restart it, and let the oracle compare the replica with the source's feed.

One trial:
1. the source moves on a day (generated renames, moves, closures, new units); before a full
   run the replica may also be tampered with (a row changed, deleted, invented), which only a
   full sync repairs;
2. `sorsync sync [--full]` starts with a small delay on every KRS page; once its sync_run row
   exists, it is SIGKILLed after a random share of the run's expected duration;
3. what survived must be a committed state: a killed *full* leaves the replica exactly as
   before or exactly as the source (the swap is one transaction); a killed *delta* leaves, per
   datatype, the rows up to the committed token from the source and every later row as before;
4. the same command runs again to completion (exit 0) and the oracle finds no difference in
   any row or column, nor in the tokens; the killed run is recorded as abandoned.

Used by tests/reliability/test_crash.py (a few dozen short trials) and
tests/soak/soak_crash.py (many more, bigger data).
"""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, text

from tests.reliability import oracle
from tests.reliability.harness import GeneratedSource, cli_env, run_sorsync, sorsync_argv

Kind = Literal["full", "delta"]
State = dict[str, dict[int, dict[str, Any]]]  # key → pid → row


@dataclass(frozen=True, slots=True)
class CrashConfig:
    page_size: int = 20
    page_delay: float = 0.004  # seconds the simulator waits before each page
    changes: tuple[int, int] = (60, 240)  # source changes before a trial (min, max)
    tamper: float = 0.5  # chance of tampering with the replica before a full trial
    aim_swap: float = 0.35  # chance of aiming a full trial's kill at the swap
    keys: tuple[str, ...] = (*oracle.SOR_KEYS, *oracle.SOR2_KEYS)


@dataclass(slots=True)
class TrialOutcome:
    trial: int
    kind: Kind
    seed: int
    kill_after: float  # seconds after the run's sync_run row appeared
    aim: str = "load"  # load: a random moment; swap: just after a full's last page
    moment: str = ""  # starting | loading | swap | finished (where the kill landed)
    pages_at_kill: int = 0
    pages_total: int = 0  # pages the run had to fetch (from the oracle's feed)
    left_behind: str = ""  # old | new | prefix | mixed (!)
    tampered: list[str] = field(default_factory=list)
    restart_exit: int | None = None
    rows: int = 0
    values: int = 0
    seconds: float = 0.0
    ok: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(engine: Engine, keys: tuple[str, ...]) -> tuple[State, dict[str, str | None]]:
    return oracle.consistent_state(engine, keys)


def wait_for_backends(engine: Engine, timeout: float = 60) -> None:
    """Wait until the killed process's PostgreSQL sessions are gone. A backend busy with a
    statement notices its dead client only afterwards, then rolls back (or finishes a COMMIT
    already sent); only then is what the kill left behind final."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'sorsync-cli'"
                )
            ).scalar_one()
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} sessions of the killed sync are still open")
        time.sleep(0.02)


def _run_row(engine: Engine, after: int) -> tuple[int, int, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, pages, status FROM krs.sync_run WHERE id > :a ORDER BY id LIMIT 1"),
            {"a": after},
        ).first()
    return None if row is None else (int(row[0]), int(row[1]), str(row[2]))


def _max_run_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM krs.sync_run")).scalar_one())


def tamper(engine: Engine, rng: random.Random, keys: tuple[str, ...]) -> list[str]:
    """Drift only a full sync repairs: a changed value, a deleted row, an invented row."""
    done: list[str] = []
    with engine.begin() as conn:
        for key in rng.sample(list(keys[1:]), 2):  # skip sygehus: a handful of rows only
            table = f'krs."{oracle.table_name(key)}"'
            pids = conn.execute(text(f"SELECT pid FROM {table} ORDER BY pid")).scalars().all()
            if len(pids) < 3:
                continue
            a, b = rng.sample(list(pids), 2)
            whole = key in oracle.SOR2_KEYS  # a record kept whole, in jsonb
            change = (
                'record = record || \'{"EntityName": "manipuleret"}\''
                if whole
                else "navn = navn || ' (manipuleret)'"
            )
            conn.execute(text(f"UPDATE {table} SET {change} WHERE pid = :p"), {"p": a})
            conn.execute(text(f"DELETE FROM {table} WHERE pid = :p"), {"p": b})
            made_up = "record" if whole else "navn"
            value = '\'{"EntityName": "opdigtet"}\'' if whole else "'opdigtet'"
            conn.execute(
                text(
                    f"INSERT INTO {table} (pid, modified_at, token, {made_up})"
                    f" VALUES (:p, now(), '99999999990000000000', {value})"
                ),
                {"p": 9_000_000_000 + a},
            )
            done.append(f"{key}: changed {a}, deleted {b}, invented {9_000_000_000 + a}")
    return done


def _feeds(url: str, keys: tuple[str, ...]) -> dict[str, dict[int, oracle.FeedRow]]:
    return {k: oracle.read_feed(url, k) for k in keys}


def _expected(engine: Engine, feeds: Mapping[str, Mapping[int, oracle.FeedRow]]) -> State:
    return {k: oracle.expected_rows(f, oracle.column_types(engine, k)) for k, f in feeds.items()}


def _pages(rows: int, page_size: int) -> int:
    # Every datatype ends with one empty page, which is not committed (no pages counted).
    return math.ceil(rows / page_size)


def _left_behind(
    kind: Kind,
    before: State,
    before_tokens: Mapping[str, str | None],
    after: State,
    after_tokens: Mapping[str, str | None],
    expected: State,
    source_tokens: Mapping[str, str | None],
) -> tuple[str, list[str]]:
    """What a kill left: `old` (as before), `new` (as the source), `prefix` (a delta's committed
    pages). Returns (label, problems); problems are empty when it is a committed state."""
    keys = list(expected)
    same_tokens = all(
        (after_tokens.get(k) or oracle.ZERO) == (before_tokens.get(k) or oracle.ZERO) for k in keys
    )
    if all(not oracle.diff(before[k], after[k]) for k in keys) and same_tokens:
        return "old", []
    if all(not oracle.diff(expected[k], after[k]) for k in keys) and all(
        source_tokens[k] is None or after_tokens.get(k) == source_tokens[k] for k in keys
    ):
        return "new", []
    if kind == "full":
        problems = ["a killed full sync left neither the old replica nor the new one"]
        for k in keys:
            problems += [f"{k} vs old: {p}" for p in oracle.diff(before[k], after[k], limit=3)]
            problems += [f"{k} vs new: {p}" for p in oracle.diff(expected[k], after[k], limit=3)]
        return "mixed", problems
    # A delta commits page by page: rows up to the committed token come from the source, every
    # row after it is as it was before the run.
    problems = []
    for k in keys:
        token = after_tokens.get(k) or oracle.ZERO
        old_token = before_tokens.get(k) or oracle.ZERO
        if token < old_token:
            problems.append(f"{k}: token went back from {old_token} to {token}")
        committed: dict[int, dict[str, Any]] = dict(before[k])
        for pid, row in expected[k].items():
            if row["token"] <= token:
                committed[pid] = row
        problems += [f"{k}: {p}" for p in oracle.diff(committed, after[k], limit=5)]
        beyond = [pid for pid, row in after[k].items() if row["token"] > token]
        if beyond:
            problems.append(f"{k}: rows {beyond[:5]} carry tokens after the committed {token}")
    return ("prefix" if not problems else "mixed"), problems


def run_trial(
    trial: int,
    kind: Kind,
    seed: int,
    *,
    source: GeneratedSource,
    engine: Engine,
    database_url: str,
    workdir: Path,
    seconds_per_row: float,
    config: CrashConfig,
) -> TrialOutcome:
    rng = random.Random(seed)
    started = time.perf_counter()
    source.evolve(rng.randint(*config.changes), seed)
    out = TrialOutcome(trial, kind, seed, kill_after=0.0)
    if kind == "full" and rng.random() < config.tamper:
        out.tampered = tamper(engine, rng, config.keys)
    before, before_tokens = snapshot(engine, config.keys)

    feeds = _feeds(source.url, config.keys)
    source_tokens = {k: oracle.last_token(f) for k, f in feeds.items()}
    if kind == "full":
        todo = {k: len(f) for k, f in feeds.items()}
    else:
        todo = {
            k: sum(1 for r in f.values() if r.token > (before_tokens.get(k) or oracle.ZERO))
            for k, f in feeds.items()
        }
    out.pages_total = sum(_pages(n, config.page_size) for n in todo.values())
    if kind == "full" and rng.random() < config.aim_swap:
        # The swap is one short transaction; a random moment would rarely hit it.
        out.aim = "swap"
        out.kill_after = round(rng.uniform(0.0, 0.06), 4)
    else:
        window = max(0.05, 1.15 * sum(todo.values()) * seconds_per_row)
        out.kill_after = round(rng.uniform(0.0, window), 4)

    env = cli_env(
        database_url,
        source.url,
        SORSYNC_KRS_PAGE_SIZE=str(config.page_size),
        SORSYNC_KRS_TIMEOUT="10",
        SORSYNC_KRS_DATATYPES=",".join(config.keys),
    )
    args = ["sync", "--json"] + (["--full"] if kind == "full" else [])
    last_id = _max_run_id(engine)
    source.handle.faults.random(1.0, seed, kinds=[{"kind": "delay", "seconds": config.page_delay}])
    proc = subprocess.Popen(
        sorsync_argv(*args),
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        run = None
        while proc.poll() is None and time.monotonic() < deadline:
            run = _run_row(engine, last_id)
            if run is not None:
                break
            time.sleep(0.005)
        if out.aim == "swap":
            while proc.poll() is None and time.monotonic() < deadline:
                run = _run_row(engine, last_id)
                if run is not None and run[1] >= out.pages_total:
                    break
                time.sleep(0.002)
        if proc.poll() is None:
            time.sleep(out.kill_after)
            run = _run_row(engine, last_id)  # progress just before the kill
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed = proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        source.handle.faults.clear()

    out.pages_at_kill = run[1] if run else 0
    if not killed:
        out.moment = "finished"
    elif run is None:
        out.moment = "starting"
    elif kind == "full" and out.pages_at_kill >= out.pages_total:
        out.moment = "swap"
    else:
        out.moment = "loading"

    expected = _expected(engine, feeds)
    wait_for_backends(engine)
    after, after_tokens = snapshot(engine, config.keys)
    out.left_behind, problems = _left_behind(
        kind, before, before_tokens, after, after_tokens, expected, source_tokens
    )
    out.problems += problems

    again = run_sorsync(args, env, workdir)
    out.restart_exit = again.returncode
    if again.returncode != 0:
        out.problems.append(f"restart exited {again.returncode}: {again.stderr.strip()[-400:]}")
    else:
        result = json.loads(again.stdout)
        if result["status"] != "ok":
            out.problems.append(f"restart reported {result['status']}: {result['error']}")
    verdict = oracle.verdict(engine, expected, source_tokens)
    out.rows, out.values = verdict.rows, verdict.columns
    if not verdict.ok:
        out.problems.append(
            "after the restart the replica differs from the source:\n" + verdict.explain()
        )
    if killed and run is not None:
        with engine.connect() as conn:
            status, error = conn.execute(
                text("SELECT status, coalesce(error, '') FROM krs.sync_run WHERE id = :i"),
                {"i": run[0]},
            ).one()
        if out.left_behind != "new" and (status != "failed" or "abandoned" not in error):
            out.problems.append(f"the killed run {run[0]} is {status!r} ({error!r}), not abandoned")
    out.ok = not out.problems
    out.seconds = round(time.perf_counter() - started, 3)
    return out


def calibrate(
    source: GeneratedSource, engine: Engine, database_url: str, workdir: Path, config: CrashConfig
) -> float:
    """Run the first full sync uninterrupted (with the page delay); seconds per source row."""
    env = cli_env(
        database_url,
        source.url,
        SORSYNC_KRS_PAGE_SIZE=str(config.page_size),
        SORSYNC_KRS_DATATYPES=",".join(config.keys),
    )
    source.handle.faults.random(1.0, 0, kinds=[{"kind": "delay", "seconds": config.page_delay}])
    try:
        done = run_sorsync(["sync", "--full", "--json"], env, workdir)
    finally:
        source.handle.faults.clear()
    if done.returncode != 0:
        raise RuntimeError(f"the first full sync failed: {done.stderr[-500:]}")
    result = json.loads(done.stdout)
    verdict = oracle.compare(engine, source.url, config.keys)
    if not verdict.ok:
        raise RuntimeError("the first full sync is already wrong:\n" + verdict.explain())
    return float(result["seconds"]) / max(1, int(result["records"]))


def summarise(outcomes: list[TrialOutcome]) -> dict[str, Any]:
    def count(attr: str) -> dict[str, int]:
        tally: dict[str, int] = {}
        for o in outcomes:
            value = str(getattr(o, attr))
            tally[value] = tally.get(value, 0) + 1
        return dict(sorted(tally.items()))

    return {
        "trials": len(outcomes),
        "passed": sum(o.ok for o in outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "by_kind": count("kind"),
        "kill_moment": count("moment"),
        "left_behind": count("left_behind"),
        "tampered_full_trials": sum(bool(o.tampered) for o in outcomes),
        "rows_compared": sum(o.rows for o in outcomes),
        "values_compared": sum(o.values for o in outcomes),
        "seconds": round(sum(o.seconds for o in outcomes), 1),
    }
