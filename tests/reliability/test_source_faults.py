"""Source faults: every way the KRS simulator can misbehave, each with its defined outcome.

One table; every row runs the same script against a real simulator over HTTP and a real
PostgreSQL:

1. baseline: a clean delta, checked against the source by the oracle; the source then moves on
   (a generated day of changes), so every run below has data to fetch;
2. the fault on the run's first KRS call, delta and full: the run fails with a message naming
   the cause (or, for an unknown element, is applied); rows and tokens equal the baseline;
3. the fault after one good page: a full leaves the baseline untouched (nothing is applied
   unless everything loaded); a delta keeps exactly its committed pages — the source's rows up
   to the stored token, everything after it as before;
4. the scheduler's retry policy with the fault once more: a transient fault is retried and the
   run succeeds; any other fails after one attempt, unretried;
5. without faults, a full sync converges: the oracle finds no difference.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sorsync.config import Settings
from sorsync.datatypes import SYGEHUSAFDELING
from sorsync.scheduler import RetryPolicy, ServiceRunner, run_with_retries
from sorsync.sync.results import Kind, RunResult
from sorsync.sync.service import SyncFailed, run_sync
from tests.fixtures.simulator import add_rows
from tests.fixtures.sync import source_values
from tests.reliability import oracle
from tests.reliability.crash import _left_behind
from tests.reliability.harness import GeneratedSource, private_database

# Slow (~30 s on 2 cores with --durations): `-m "not slow"` skips it locally; CI runs it.
pytestmark = pytest.mark.slow

KEY = SYGEHUSAFDELING.key
KEYS = (KEY,)
PAGE_SIZE = 25
TIMEOUT = 0.75
CHANGES = 150  # per case: enough pending rows that a fault after one page still meets data
FIRST_DELTA, FIRST_FULL, MID_DELTA, MID_FULL = (
    ("delta", "first"),
    ("full", "first"),
    ("delta", "mid"),
    ("full", "mid"),
)
ALL = (FIRST_DELTA, FIRST_FULL, MID_DELTA, MID_FULL)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    params: dict[str, Any]
    outcome: str  # "retried": fails, transient, the retry succeeds; "failed"; "applied"
    says: tuple[str, ...] = ()  # the error names the cause with these words
    variants: tuple[tuple[str, str], ...] = ALL
    page_size: int = PAGE_SIZE
    bulk: int = 0  # extra rows added to the source first (for pages beyond 2000)


CASES = [
    Case("http-500", "http_status", {"status": 500, "body": "Internal Server Error"}, "retried",
         ("HTTP 500", "without a SOAP answer")),
    Case("http-503", "http_status", {"status": 503}, "retried", ("HTTP 503",)),
    Case("timeout", "delay", {"seconds": 2.0}, "retried",
         ("did not answer", "0.75 s", "SORSYNC_KRS_TIMEOUT")),
    Case("connection-reset", "reset", {}, "retried", ("ConnectionResetError", "reset")),
    Case("truncated-body", "truncate", {}, "retried", ("broke off in the middle",)),
    Case("invalid-xml", "malformed_xml", {}, "retried", ("not well-formed XML",)),
    Case("xml-bomb", "xml_bomb", {}, "failed", ("DTD", "refused")),
    Case("external-entity", "external_entity", {}, "failed", ("DTD", "refused")),
    Case("wrong-namespace", "wrong_namespace", {}, "failed",
         ("expected record element", "http://nsi.dk/-/stamdata/3.0/forkert")),
    Case("page-over-max-records", "oversized_page", {"records": 2500}, "failed",
         ("at most 25 were asked for",)),
    Case("missing-token", "missing_token", {"index": 0}, "failed", ("no 20-digit token",)),
    Case("missing-token-later-entry", "missing_token", {"index": 3}, "failed",
         ("entry 4 has no 20-digit token",)),
    Case("backwards-token", "backwards_token", {}, "failed", ("does not come after",)),
    Case("krs-internal-error", "replication_fault", {"code": "urn:stamdata:internal-error"},
         "retried", ("urn:stamdata:internal-error",)),
    Case("krs-unauthorized", "replication_fault", {"code": "urn:stamdata:unauthorized-access"},
         "failed", ("urn:stamdata:unauthorized-access", "whitelist")),
    Case("dgws-security-level", "dgws_fault", {"code": "security_level_failed"}, "failed",
         ("security_level_failed",)),
    Case("unknown-element", "unknown_element", {"name": "nytFelt", "value": "ukendt"},
         "applied"),
    # Last: it grows the source past 2000 rows, so later cases would page much more.
    Case("page-over-2000", "oversized_page", {"records": 2500}, "failed",
         ("more than the protocol's 2000",), variants=(FIRST_DELTA, FIRST_FULL),
         page_size=2000, bulk=2100),
]  # fmt: skip


@dataclass
class FaultBed:
    source: GeneratedSource
    engine: Engine
    url: str
    outcomes: dict[str, str] = field(default_factory=dict)
    day: int = 0

    def settings(self, page_size: int) -> Settings:
        return Settings(
            _env_file=None,
            database_url=self.url,
            krs_url=self.source.url,
            krs_datatypes=KEYS,
            krs_page_size=page_size,
            krs_timeout=TIMEOUT,
        )

    def run(self, kind: str, page_size: int) -> RunResult:
        assert kind in ("delta", "full")
        mode: Kind = "full" if kind == "full" else "delta"
        return run_sync(self.engine, self.settings(page_size), kind=mode)

    def state(self) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, str | None]]:
        return {KEY: oracle.replica(self.engine, KEY)}, oracle.tokens(self.engine)

    def runs(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM krs.sync_run")).scalar_one())


@pytest.fixture(scope="module")
def bed() -> Iterator[FaultBed]:
    source = GeneratedSource.start(400, seed=8)
    try:
        with private_database("sorsync_faults") as (url, engine):
            yield FaultBed(source, engine, url)
    finally:
        source.stop()


def _fault_once(bed: FaultBed, case: Case, position: str) -> None:
    if position == "mid":
        bed.source.handle.faults.next("delay", seconds=0)  # one good page first
    bed.source.handle.faults.next(case.kind, **case.params)


def _assert_failed_cleanly(case: Case, result: RunResult, bed: FaultBed) -> None:
    assert result.status == "failed", result.to_dict()
    error = result.error or ""
    assert KEY in error, error
    for words in case.says:
        assert words in error, f"{case.id}: {words!r} not in {error!r}"
    assert "Traceback" not in error
    assert result.transient is (case.outcome == "retried"), error
    with bed.engine.connect() as conn:
        recorded = conn.execute(
            text("SELECT last_error FROM krs.sync_state WHERE datatype = 'sygehusafdeling'")
        ).scalar_one()
        run_error = conn.execute(
            text("SELECT error FROM krs.sync_run WHERE id = :i"), {"i": result.run_id}
        ).scalar_one()
    assert recorded == run_error == error


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_source_fault_has_a_defined_outcome(bed: FaultBed, case: Case) -> None:
    faults = bed.source.handle.faults
    faults.clear()
    # 1. baseline: the replica equals the source
    baseline = bed.run("delta", case.page_size)
    assert baseline.ok, baseline.error
    verdict = oracle.compare(bed.engine, bed.source.url, KEYS)
    assert verdict.ok, verdict.explain()
    bed.day += 1
    bed.source.evolve(CHANGES, seed=bed.day)
    if case.bulk:
        add_rows(
            bed.source.handle.store,
            KEY,
            [source_values(SYGEHUSAFDELING, i, tag=" bulk") for i in range(case.bulk)],
        )
    before, before_tokens = bed.state()
    feed = oracle.read_feed(bed.source.url, KEY)
    expected = {KEY: oracle.expected_rows(feed, oracle.column_types(bed.engine, KEY))}
    source_tokens = {KEY: oracle.last_token(feed)}

    for kind, position in case.variants:
        _fault_once(bed, case, position)
        result = bed.run(kind, case.page_size)
        faults.clear()
        after, after_tokens = bed.state()
        if case.outcome == "applied":
            assert result.ok, result.error
            assert result.datatypes[0].unknown_elements == [case.params["name"]]
            marked = [r for r in after[KEY].values() if r["extra"]]
            assert marked, "the unknown element was not kept"
            assert all(r["extra"] == {case.params["name"]: case.params["value"]} for r in marked)
            # Everything but `extra` is exactly the source.
            for rows in (after[KEY], expected[KEY]):
                for r in rows.values():
                    r["extra"] = None
            assert not oracle.diff(expected[KEY], after[KEY]), oracle.diff(
                expected[KEY], after[KEY]
            )
            break  # applied: the other variants would have nothing left to fetch
        _assert_failed_cleanly(case, result, bed)
        label, problems = _left_behind(
            "delta" if (kind, position) == MID_DELTA else "full",
            before,
            before_tokens,
            after,
            after_tokens,
            expected,
            source_tokens,
        )
        assert not problems, f"{kind}/{position}: " + "\n".join(problems)
        if (kind, position) != MID_DELTA:
            # sync_state did not move and no row changed
            assert label == "old", label
            assert after_tokens.get(KEY) == before_tokens.get(KEY)
        else:
            assert label == "prefix", label  # the good page before the fault was kept
            # the next variants start from this committed state
            before, before_tokens = after, after_tokens

    # 4. the scheduler's policy: transient faults are retried, others are not
    if case.outcome != "applied":
        runs = bed.runs()
        faults.next(case.kind, **case.params)
        runner = ServiceRunner(bed.engine, bed.settings(case.page_size), threading.Event())
        policy = RetryPolicy(attempts=3, first_wait=0.01, max_wait=0.02)
        if case.outcome == "retried":
            result = run_with_retries("delta", runner, policy, threading.Event())
            assert result.ok, result.error
            assert bed.runs() == runs + 2  # one failed attempt, one that succeeded
        else:
            with pytest.raises(SyncFailed) as failed:
                run_with_retries("delta", runner, policy, threading.Event())
            assert failed.value.transient is False
            assert bed.runs() == runs + 1  # not retried
        faults.clear()

    # 5. without faults, a full sync converges on the source
    final = bed.run("full", case.page_size)
    assert final.ok, final.error
    verdict = oracle.compare(bed.engine, bed.source.url, KEYS)
    assert verdict.ok, verdict.explain()
    bed.outcomes[case.id] = case.outcome
