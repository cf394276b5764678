"""Loading one datatype: every page the source has after a token, through a page store.

The same loop for every mode; the mode chooses the store (sorsync.sync.store) and what happens
after the last page. Each page is counted into the datatype's result (pages, records, rows,
store time, the fields its records had) and reported as progress once it is stored. Elements
the registry does not know and fields that differ from the mapping are warned about once a
datatype.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import psycopg

from sorsync.datatypes import Datatype
from sorsync.krs.feed import Page
from sorsync.krs.profile import Profile, compare
from sorsync.sync.pages import PageStream, SnapshotSource
from sorsync.sync.results import DatatypeResult
from sorsync.sync.run import Run, log
from sorsync.sync.store import PageStore


def load(
    run: Run, pg: psycopg.Connection[Any], store: PageStore, res: DatatypeResult, offset: str
) -> str:
    """Fetch and store every page of `store.dt` after `offset`; return the last token seen.

    Checks the run's cancellation before the first page and after each stored one."""
    dt = store.dt
    run.check_cancel()
    token = offset
    unknown: set[str] = set()
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(run.source, SnapshotSource):
                # A complete dataset (sorsync.files): its pages, no offset, no paging rules.
                stream: Iterable[Page] = run.source.snapshot_pages(dt, run.page_size)
            else:
                stream = stack.enter_context(
                    PageStream(
                        run.source,
                        dt,
                        offset,
                        run.page_size,
                        prefetch=run.prefetch,
                        cancel=run.cancel,
                    )
                )
            for page in stream:
                stored = time.perf_counter()
                inserted, updated = store.store(pg, page)
                res.store_seconds += time.perf_counter() - stored
                token = page.last_token or token
                res.pages += 1
                res.records += len(page)
                res.inserted += inserted
                res.updated += updated
                if store.with_token:
                    res.token = token
                unknown |= page.unknown_elements
                if page.profile is not None:
                    if res.profile is None:
                        res.profile = Profile()
                    res.profile.merge(page.profile)
                run.progress(dt.key, "load", res)
                run.check_cancel()  # the page and its token are committed: a page boundary
    finally:
        res.seconds += time.perf_counter() - started
        _compare_fields(run, dt, res)
        if unknown:
            res.unknown_elements = sorted(unknown)
            log().warning(
                "KRS sent elements the datatype registry does not know; they are kept in"
                " column extra — add them to sorsync.datatypes to give them columns",
                datatype=dt.key,
                elements=res.unknown_elements,
            )
    return token


def _compare_fields(run: Run, dt: Datatype, res: DatatypeResult) -> None:
    """Compare the fields of the records loaded with the mapping; one warning per run."""
    expected = run.expected.get(dt.key)
    if expected is None or res.profile is None or res.profile.records == 0:
        return
    res.drift = compare(res.profile, expected)
    if res.drift.differs:
        log().warning(
            "the feed's fields differ from the mapping; every field is kept in column"
            " record, but the views miss what is not mapped — compare with"
            " `sorsync krs describe` and set SORSYNC_MAPPING_FILE",
            datatype=dt.key,
            fields=res.drift.summary(),
        )
