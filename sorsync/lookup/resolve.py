"""Back-mapping in bulk: (kind, code, date) items answered by the SQL function `sor.resolve`.

The rules (which units a code has on a date, which of them the answer is, when it is ambiguous)
live in that one function (sorsync/db/views.py, docs/back-mapping.md); this module validates
items with the single lookups' messages, sends the valid ones in one query per chunk, and
renders answers as JSON or CSV cells. The API (api/routes/resolve.py) and `sorsync resolve`
(sorsync/cli/resolve.py) both use it; the analysts' SQL functions call `sor.resolve` directly.
The streams answer from each code's timeline (`resolve_cached`, sor.resolve_timeline): the
same rules, asked once per code. `resolve_cached` is Steps (sorsync/lookup/query.py), the same
logic whoever runs it: `run_steps(conn, …)` on a Connection, `await aio.arun_steps(conn, …)` on
the loop.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import gc
import itertools
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sorsync import identifiers
from sorsync.lookup.query import Query, Rows, Steps, comma_text

CODE_KINDS = ("shak", "sor", "ean", "ydernummer")
STATUSES = ("found", "not_found", "invalid", "ambiguous")
# How many items one query answers when streaming: large enough that a round trip is a small
# part of it, small enough that a chunk's rows stay a few MB.
CHUNK = 5000

# kind → (what the single lookup calls the code, its validator)
_RULES: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "shak": ("a SHAK code", identifiers.shak_problem),
    "sor": ("a SOR id", identifiers.sor_id_problem),
    "ean": ("a GLN", identifiers.gln_problem),
    "ydernummer": ("a ydernummer", identifiers.ydernummer_problem),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Answering a batch makes a few small tuples per item, all freed by their reference counts; at
# CPython's default (a young collection every 700 allocations) the collector took two thirds
# of grouping 10 000 answers (docs/performance.md). Fewer young collections, same cycles freed.
YOUNG_COLLECTION_EVERY = 20_000


def collect_less_often() -> None:
    """For a process that answers batches (the API worker, `sorsync resolve`): the objects made
    so far are kept out of every collection (gc.freeze), and young ones are collected less
    often."""
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_COLLECTION_EVERY), middle, old)


def code_problem(kind: str, code: str) -> str | None:
    """What the single lookup of `kind` would answer for `code` (its 422 detail), or None."""
    what, validator = _RULES[kind]
    problem = identifiers.identifier_problem(code, validator)
    return None if problem is None else f"{code!r} is not {what}: {problem}."


def date_problem(value: str) -> str | None:
    """The single lookups' message for a `date` that is not an ISO calendar date, or None."""
    if not _DATE.match(value):
        return f"date {value!r} is not an ISO date YYYY-MM-DD."
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return f"date {value!r} is not a calendar date."
    return None


def kind_problem(kind: str) -> str | None:
    if kind in CODE_KINDS:
        return None
    return f"kind {kind!r} is not one of {', '.join(CODE_KINDS)}."


# Item and Answer are NamedTuples, not frozen dataclasses: a stream makes two of each per
# item, and a frozen dataclass's __init__ (object.__setattr__ per field) and __eq__ cost
# several times a tuple's (docs/performance.md).
class Item(NamedTuple):
    """One (kind, code, date) to answer: normalised when valid, else as given with `problem`
    (and `date_text`, the date as sent, when it was sent but could not be read)."""

    kind: str
    code: str
    day: dt.date | None
    problem: str | None = None
    date_text: str | None = None

    @property
    def date_shown(self) -> str | None:
        """The date an answer echoes: the item's, or as sent when it is not a date."""
        return self.day.isoformat() if self.day is not None else self.date_text

    @property
    def key(self) -> Key | None:
        """(kind, code, day) to ask the database for, or None: the item is answered invalid."""
        return (
            None
            if self.problem is not None or self.day is None
            else (self.kind, self.code, self.day)
        )


# Batches repeat codes and dates (a year of records has 365 dates): each distinct text is
# checked once. Bounded, so a stream of distinct codes cannot grow them.
@functools.lru_cache(maxsize=1 << 16)
def _checked_code(kind: str, code: str) -> tuple[str, str | None]:
    """(the code normalised, its problem or None) for a known kind."""
    code = code.strip()
    if kind == "shak":
        code = identifiers.normalise_shak(code)
    return code, code_problem(kind, code)


@functools.lru_cache(maxsize=1 << 14)
def _date_text(text: str) -> tuple[dt.date | None, str | None]:
    if (problem := date_problem(text.strip())) is not None:
        return None, problem
    return dt.date.fromisoformat(text.strip()), None


def _day(day: Any, default_day: dt.date) -> tuple[dt.date | None, str | None, str | None]:
    """(date, date as sent if unreadable, problem) of an item's date as given."""
    if day is None or day == "":
        return default_day, None, None
    if isinstance(day, dt.date):
        return day, None, None
    if not isinstance(day, str):
        return None, str(day), f"date {day!r} is not an ISO date YYYY-MM-DD."
    on, problem = _date_text(day)
    return (on, None, None) if problem is None else (None, day, problem)


def item(kind: Any, code: Any, day: Any, default_day: dt.date) -> Item:
    """Validate one item as given (strings, or None for "not given"): kind, then code, then
    date, the first problem found wins. The date defaults to `default_day`; an invalid item
    still carries its date (or the date as sent), so that its answer echoes it."""
    on, date_text, day_problem = _day(day, default_day)
    if not isinstance(code, str):
        code_text = "" if code is None else str(code)
        return Item(str(kind or ""), code_text, on, "code is missing.", date_text)
    if kind is None or kind == "":
        kind = "shak"  # what the existing SHAK jobs send
    if not isinstance(kind, str):
        return Item(str(kind), code, on, kind_problem(str(kind)), date_text)
    if kind not in _RULES:
        if kind_problem(kind.strip().lower()) is not None:
            return Item(kind, code, on, kind_problem(kind), date_text)
        kind = kind.strip().lower()
    code, problem = _checked_code(kind, code)
    return Item(kind, code, on, problem if problem is not None else day_problem, date_text)


class ResolvedUnit(NamedTuple):
    """A unit in an answer: the columns of `sor.resolve` after ord and status."""

    sor_id: int
    name: str | None
    kind: str
    shak: str | None
    health_institution_sor_id: int | None
    health_institution_name: str | None
    organisational_level_code: str | None
    organisational_level_name: str | None
    valid_from: dt.date | None
    valid_to: dt.date | None


class Answer(NamedTuple):
    item: Item
    status: str  # one of STATUSES
    units: list[ResolvedUnit]

    @property
    def detail(self) -> str | None:
        return self.item.problem


# The keys travel as three comma-separated texts (query.comma_text): as three arrays they cost a
# stream's worker 12.7 ms of CPU for 5 000 keys, against 5.4 ms (docs/performance.md).
RESOLVE = (
    "SELECT * FROM sor.resolve(string_to_array(%(kinds)s, ','),"
    " string_to_array(%(codes)s, ','), string_to_array(%(days)s, ',')::date[])"
)

Key = tuple[str, str, dt.date]


def query_params(keys: Sequence[Key]) -> dict[str, str]:
    """RESOLVE's parameters for `keys` (valid items: identifiers.identifier_problem leaves
    ASCII letters and digits)."""
    return {
        "kinds": ",".join(k[0] for k in keys),
        "codes": comma_text(k[1] for k in keys),
        "days": ",".join(k[2].isoformat() for k in keys),
    }


def group_rows(keys: Sequence[Key], rows: Iterable[tuple[Any, ...]]) -> dict[Key, Answer]:
    """sor.resolve's rows (ord from 1) as one answer per key (valid items only)."""
    statuses: dict[int, str] = {}
    units: dict[int, list[ResolvedUnit]] = {}
    make = ResolvedUnit._make
    for row in rows:
        ord_ = row[0]
        statuses[ord_] = row[1]
        if row[2] is not None:
            units.setdefault(ord_, []).append(make(row[2:]))
    return {
        key: Answer(Item(*key), statuses.get(n, "not_found"), units.get(n, []))
        for n, key in enumerate(keys, start=1)
    }


def answer(items: Sequence[Item], found: Mapping[Key, Answer]) -> list[Answer]:
    """The answers in the items' order (invalid items answered by their problem)."""
    out = []
    for it in items:
        if (key := it.key) is None:
            out.append(Answer(it, "invalid", []))
        else:
            got = found[key]
            out.append(got if got.item == it else Answer(it, got.status, got.units))
    return out


def distinct_keys(items: Iterable[Item]) -> list[Key]:
    """The valid items' (kind, code, day), each once, in order."""
    return list(dict.fromkeys(key for it in items if (key := it.key) is not None))


def resolve_query(keys: Sequence[Key]) -> Query[dict[Key, Answer]]:
    """sor.resolve for `keys` (distinct, valid), answered one Answer per key."""

    def grouped(rows: Rows) -> dict[Key, Answer]:
        return group_rows(keys, rows)

    return Query(RESOLVE, query_params(keys), grouped)


# The streams ask per code, not per (code, date): sor.resolve_timeline gives what a code means on
# every day, so a stream of years of records with a few thousand codes asks the database once
# per code however many dates it holds (docs/back-mapping.md).
TIMELINE = (
    "SELECT * FROM sor.resolve_timeline(string_to_array(%(kinds)s, ','),"
    " string_to_array(%(codes)s, ','))"
)

Code = tuple[str, str]  # (kind, code)


class Timeline(NamedTuple):
    """What one code answers over time: `answers[i]` from day `starts[i]` until the next
    start; the first also before its start."""

    starts: list[dt.date]
    answers: list[tuple[str, list[ResolvedUnit]]]  # (status, units)

    def on(self, day: dt.date) -> tuple[str, list[ResolvedUnit]]:
        return self.answers[max(bisect.bisect_right(self.starts, day) - 1, 0)]


def group_timelines(codes: Sequence[Code], rows: Iterable[tuple[Any, ...]]) -> dict[Code, Timeline]:
    """sor.resolve_timeline's rows (ord from 1, then from_day, both ascending) as one Timeline
    per code."""
    found: dict[int, Timeline] = {}
    make = ResolvedUnit._make
    # A stream's cache holds tens of thousands of timelines: the values that repeat (kinds,
    # statuses, hospitals, levels, dates) are kept once, not once per row as psycopg made them.
    once: dict[Any, Any] = {}
    share = once.setdefault
    last: tuple[int, dt.date] | None = None
    units: list[ResolvedUnit] = []
    for row in rows:
        ord_, day = row[0], row[1]
        if (ord_, day) != last:
            last = (ord_, day)
            units = []
            timeline = found.get(ord_)
            if timeline is None:
                timeline = found[ord_] = Timeline([], [])
            timeline.starts.append(share(day, day))
            timeline.answers.append((share(row[2], row[2]), units))
        if row[3] is not None:
            units.append(make(v if v is None else share(v, v) for v in row[3:]))
    nothing = Timeline([dt.date.min], [("not_found", [])])
    return {code: found.get(n, nothing) for n, code in enumerate(codes, start=1)}


def timeline_query(codes: Sequence[Code]) -> Query[dict[Code, Timeline]]:
    """sor.resolve_timeline for `codes` (distinct, valid)."""

    def grouped(rows: Rows) -> dict[Code, Timeline]:
        return group_timelines(codes, rows)

    params = {"kinds": ",".join(c[0] for c in codes), "codes": comma_text(c[1] for c in codes)}
    return Query(TIMELINE, params, grouped)


class TimelineCache:
    """The timelines of the codes one stream has asked for, so that each code goes to the
    database once; bounded, oldest dropped first. Safe to share between threads (`sorsync
    resolve` answers two chunks at once, each on a thread)."""

    def __init__(self, limit: int = 150_000) -> None:
        self.limit = limit
        self.timelines: dict[Code, Timeline] = {}
        self._lock = threading.Lock()

    def known(self, codes: Iterable[Code]) -> dict[Code, Timeline]:
        """The timelines it holds of `codes`."""
        with self._lock:
            held = self.timelines
            return {code: held[code] for code in codes if code in held}

    def add(self, found: dict[Code, Timeline]) -> None:
        with self._lock:
            self.timelines.update(found)
            excess = len(self.timelines) - self.limit
            if excess > 0:
                # The oldest first (dicts keep insertion order); not list(self.timelines),
                # which copied every key for every chunk.
                for code in list(itertools.islice(self.timelines, excess)):
                    del self.timelines[code]


def resolve_cached(items: Sequence[Item], cache: TimelineCache) -> Steps[list[Answer]]:
    """Answer `items` in order with one query, asking only for the timelines of the distinct
    valid codes `cache` does not hold (no query if it holds them all)."""
    # The timelines this chunk takes from the cache are held from the start: while its query
    # runs, another chunk's may evict them (streams have two chunks on the database).
    codes = list(dict.fromkeys(key[:2] for it in items if (key := it.key) is not None))
    timelines = cache.known(codes)
    missing = [code for code in codes if code not in timelines]
    if missing:
        fresh: dict[Code, Timeline] = yield timeline_query(missing)
        cache.add(fresh)
        timelines.update(fresh)
    out = []
    for it in items:
        if (key := it.key) is None:
            out.append(Answer(it, "invalid", []))
        else:
            status, units = timelines[key[:2]].on(key[2])
            out.append(Answer(it, status, units))
    return out


# --- rendering ----------------------------------------------------------------------------------


def unit_json(u: ResolvedUnit) -> dict[str, Any]:
    institution = None
    if u.health_institution_sor_id is not None or u.health_institution_name is not None:
        sid = u.health_institution_sor_id
        institution = {
            "sor_id": None if sid is None else str(sid),
            "name": u.health_institution_name,
        }
    level = None
    if u.organisational_level_code is not None or u.organisational_level_name is not None:
        level = {"code": u.organisational_level_code, "name": u.organisational_level_name}
    return {
        "sor_id": str(u.sor_id),
        "name": u.name,
        "kind": u.kind,
        "shak": u.shak,
        "health_institution": institution,
        "organisational_level": level,
        "valid_from": None if u.valid_from is None else u.valid_from.isoformat(),
        "valid_to": None if u.valid_to is None else u.valid_to.isoformat(),
    }


def answer_json(a: Answer) -> dict[str, Any]:
    it = a.item
    out: dict[str, Any] = {
        "code": it.code,
        "kind": it.kind,
        "date": it.date_shown,
        "status": a.status,
        "units": [unit_json(u) for u in a.units],
    }
    if it.problem is not None:
        out["detail"] = it.problem
    return out


# The answer columns of CSV output (the API's and `sorsync resolve`'s). Several units (an
# ambiguous answer) share a cell, their values joined by " | " in the same order in every column.
CSV_COLUMNS = (
    "status",
    "sor_id",
    "sor_name",
    "sor_kind",
    "sor_shak",
    "health_institution_sor_id",
    "health_institution_name",
    "organisational_level_code",
    "organisational_level_name",
    "detail",
)
JOIN = " | "


def _cell(values: list[Any]) -> str:
    return JOIN.join("" if v is None else str(v) for v in values)


def answer_cells(a: Answer) -> list[str]:
    units = a.units
    if not units:
        return [a.status, "", "", "", "", "", "", "", "", a.item.problem or ""]
    if len(units) == 1:
        u = units[0]
        return [
            a.status,
            str(u.sor_id),
            u.name or "",
            u.kind,
            u.shak or "",
            "" if u.health_institution_sor_id is None else str(u.health_institution_sor_id),
            u.health_institution_name or "",
            u.organisational_level_code or "",
            u.organisational_level_name or "",
            "",
        ]
    return [
        a.status,
        _cell([u.sor_id for u in units]),
        _cell([u.name for u in units]),
        _cell([u.kind for u in units]),
        _cell([u.shak for u in units]),
        _cell([u.health_institution_sor_id for u in units]),
        _cell([u.health_institution_name for u in units]),
        _cell([u.organisational_level_code for u in units]),
        _cell([u.organisational_level_name for u in units]),
        f"{len(units)} units carry the code on that day; see docs/back-mapping.md",
    ]


def counts(answers: Iterable[Answer], into: dict[str, int] | None = None) -> dict[str, int]:
    out = into if into is not None else dict.fromkeys(STATUSES, 0)
    for a in answers:
        out[a.status] += 1
    return out
