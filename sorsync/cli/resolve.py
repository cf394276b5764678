"""`sorsync resolve`: back-map the codes of a CSV file against the local replica.

Reads a CSV file (or stdin), answers each row's (kind, code, date) with
sorsync.lookup.resolve — the same rules and answer columns as POST /v1/resolve's CSV answer
(docs/back-mapping.md) — and writes the rows with those columns added. It streams: CHUNK rows
at a time are read, answered in one query and written, at most CONNECTIONS chunks on the
database at once, so memory stays bounded whatever the file's size. This module owns the file
side: encoding and delimiter detection, naming the columns, progress and the summary.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED, app
from sorsync.cli.common import fail
from sorsync.lookup import resolve as rs
from sorsync.lookup import run_steps

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

SAMPLE = 1 << 16  # bytes read ahead to detect the encoding and the delimiter
DELIMITERS = (";", ",", "\t")
# Tried in order when no --encoding is given: UTF-8 (a BOM says so outright), then Windows'
# code page (what Excel writes on a Danish machine), then Latin-1, which decodes any byte.
ENCODINGS = ("utf-8", "cp1252", "latin-1")
CACHE = 150_000  # distinct (kind, code) timelines kept while streaming (TimelineCache)
# Chunks on the database at once, each on a connection of its own (as the API's streams).
CONNECTIONS = 2
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)+")
PLAIN = "-"


class InputError(Exception):
    """The input cannot be read as asked; the message says why and what to do."""


# --- detection (pure) ---------------------------------------------------------------------------


def detect_encoding(head: bytes, *, complete: bool = False) -> str:
    """The encoding of a file that starts with `head` (`complete`: the whole file): UTF-8 with
    a BOM ("utf-8-sig"), else UTF-8 if `head` decodes as UTF-8 (a character cut off at the
    end of a partial sample is allowed), else cp1252 if it decodes, else Latin-1."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for encoding in ENCODINGS:
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"  # not reached: Latin-1 decodes every byte


def _outside_quotes(line: str) -> str:
    """`line` with its double-quoted parts left out (a delimiter inside quotes is data)."""
    return "".join(part for n, part in enumerate(line.split('"')) if n % 2 == 0)


def sniff_delimiter(sample: str) -> str:
    """The delimiter of CSV text starting with `sample`: of `;`, `,` and tab, the one the
    header line has most of outside quotes; a tie goes to the one that recurs the same
    number of times on the next lines, then in that order. None at all (one column): `,`."""
    lines = [line for line in sample.splitlines() if line.strip()]
    if not lines:
        return ","
    header = _outside_quotes(lines[0])
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts.values())
    if best == 0:
        return ","
    tied = [d for d in DELIMITERS if counts[d] == best]
    if len(tied) > 1:
        body = [_outside_quotes(line) for line in lines[1:6]]
        steady = [d for d in tied if body and all(line.count(d) == best for line in body)]
        tied = steady or tied
    return tied[0]


def find_column(header: Sequence[str], name: str, option: str) -> int:
    """The index of column `name` in `header`: exactly as written, else ignoring case and
    surrounding blanks. Raises InputError naming the columns there are."""
    if name in header:
        return header.index(name)
    wanted = name.strip().casefold()
    loose = [n for n, col in enumerate(header) if col.strip().casefold() == wanted]
    if len(loose) == 1:
        return loose[0]
    present = ", ".join(repr(col) for col in header) or "none"
    if loose:
        raise InputError(f"column {name!r} appears {len(loose)} times in the header ({present})")
    raise InputError(f"the input has no column {name!r} ({option}); its columns: {present}")


@dataclass(frozen=True)
class Columns:
    """Where each row's code, kind and date are (None: the one value for all rows)."""

    code: int
    kind: int | None
    date: int | None


def pick_columns(
    header: Sequence[str],
    code_column: str,
    kind_column: str | None,
    date_column: str | None,
) -> Columns:
    """Resolve the column options against the header. A kind or date column that is not
    named is the column called `kind` / `date` when there is one (as POST /v1/resolve
    reads them), else none."""
    clash = [c for c in rs.CSV_COLUMNS if any(h.strip().casefold() == c for h in header)]
    if clash:
        raise InputError(
            f"the input already has the answer column(s) {', '.join(clash)} (is it an earlier"
            " answer?); drop or rename them first"
        )

    def optional(given: str | None, default: str, option: str) -> int | None:
        if given is not None:
            return find_column(header, given, option)
        try:
            return find_column(header, default, option)
        except InputError:
            return None

    return Columns(
        code=find_column(header, code_column, "--code-column"),
        kind=optional(kind_column, "kind", "--kind-column"),
        date=optional(date_column, "date", "--date-column"),
    )


# --- reading ------------------------------------------------------------------------------------


class _Counted(io.RawIOBase):
    """A binary stream: `head` (already read) and then the rest of `rest`; counts the bytes
    handed on, for the progress bar."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = memoryview(head)
        self.rest = rest
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.head:
            n = min(len(view), len(self.head))
            view[:n] = self.head[:n]
            self.head = self.head[n:]
        else:
            read1 = getattr(self.rest, "read1", self.rest.read)
            data = read1(len(view))
            n = len(data)
            view[:n] = data
        self.read_bytes += n
        return n


@dataclass
class Source:
    text: IO[str]
    raw: _Counted
    encoding: str
    delimiter: str
    newline: str
    size: int | None  # bytes, when known (a file)


def open_source(
    stream: BinaryIO, size: int | None, encoding: str | None, delimiter: str | None
) -> Source:
    """A text stream over `stream`, with the encoding and delimiter detected unless given."""
    head = stream.read(SAMPLE)
    complete = len(head) < SAMPLE
    if encoding is None:
        encoding = detect_encoding(head, complete=complete)
    elif encoding.lower().replace("_", "-") in ("utf-8", "utf8") and head.startswith(
        codecs.BOM_UTF8
    ):
        encoding = "utf-8-sig"
    try:
        sample = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    except LookupError:
        raise InputError(f"--encoding {encoding!r} is not an encoding Python knows") from None
    raw = _Counted(head, stream)
    text = io.TextIOWrapper(io.BufferedReader(raw, SAMPLE), encoding=encoding, newline="")
    return Source(
        text=text,
        raw=raw,
        encoding=encoding,
        delimiter=delimiter if delimiter is not None else sniff_delimiter(sample),
        newline="\r\n" if b"\r\n" in head else "\n",
        size=size,
    )


# --- answering ----------------------------------------------------------------------------------


@dataclass
class Summary:
    rows: int = 0
    seconds: float = 0.0
    counts: dict[str, int] | None = None

    def line(self) -> str:
        c = self.counts or dict.fromkeys(rs.STATUSES, 0)
        rate = f", {self.rows / self.seconds:,.0f} rows/s" if self.seconds > 0 else ""
        return (
            f"resolved {self.rows:,} rows in {self.seconds:.1f} s{rate}: {c['found']:,} found,"
            f" {c['not_found']:,} not found, {c['invalid']:,} invalid,"
            f" {c['ambiguous']:,} ambiguous"
        )


def _field(row: list[str], at: int | None) -> str | None:
    return row[at] if at is not None and at < len(row) else None


def resolve_rows(
    conns: Sequence[Any],
    rows: Iterator[list[str]],
    width: int,
    columns: Columns,
    kind: str | None,
    day: dt.date,
    write: Any,
    summary: Summary,
    on_chunk: Any = None,
) -> None:
    """Answer `rows` (the data rows after the header) CHUNK at a time and `write` each row
    with its answer cells; counts go to `summary`.

    One chunk is on each of `conns` while the next is parsed and the oldest written: worker
    threads send the queries (psycopg releases the GIL while it waits), so the parsing and
    PostgreSQL's work on its cores overlap instead of taking turns. Chunk k goes to connection
    k mod len(conns), once chunk k - len(conns) on it has been answered, and chunks are
    written in order."""
    cache = rs.TimelineCache(limit=CACHE)
    counts = summary.counts = dict.fromkeys(rs.STATUSES, 0)
    pending: list[list[str]] = []
    items: list[rs.Item] = []
    cells = rs.answer_cells
    in_flight: deque[tuple[list[list[str]], Future[list[rs.Answer]]]] = deque()
    sent = 0

    def finish(batch_rows: list[list[str]], future: Future[list[rs.Answer]]) -> None:
        answers = future.result()  # a failure surfaces here
        rs.counts(answers, counts)
        for row, a in zip(batch_rows, answers, strict=True):
            write([*row, *cells(a)])
        summary.rows += len(batch_rows)
        if on_chunk is not None:
            on_chunk(summary.rows)

    with ThreadPoolExecutor(max_workers=len(conns), thread_name_prefix="sorsync-resolve") as pool:

        def send() -> None:
            nonlocal pending, items, sent
            oldest = in_flight.popleft() if len(in_flight) >= len(conns) else None
            if oldest is not None:
                oldest[1].result()  # its connection is free again
            conn = conns[sent % len(conns)]
            sent += 1
            in_flight.append(
                (pending, pool.submit(run_steps, conn, rs.resolve_cached(items, cache)))
            )
            pending, items = [], []
            if oldest is not None:
                finish(*oldest)  # written while the newer chunks are in the database

        for row in rows:
            if not "".join(row).strip():
                continue  # a blank line
            if len(row) > width:
                extra = row[width:]
                row = row[:width]
                items.append(
                    rs.Item("", _field(row, columns.code) or "", None,
                            f"the row has {width + len(extra)} fields, the header {width}; the"
                            f" fields past the header: {extra!r}")
                )  # fmt: skip
            else:
                if len(row) < width:
                    row = row + [""] * (width - len(row))
                items.append(
                    rs.item(
                        kind if columns.kind is None else _field(row, columns.kind),
                        _field(row, columns.code),
                        _field(row, columns.date),
                        day,
                    )
                )
            pending.append(row)
            if len(items) >= rs.CHUNK:
                send()
        if items:
            send()
        while in_flight:
            finish(*in_flight.popleft())


@contextmanager
def snapshot_connections(engine: Engine, n: int) -> Iterator[list[Connection]]:
    """`n` connections that read one snapshot: the first's, exported to the others
    (pg_export_snapshot), so that a sync committing meanwhile changes no answer of the file
    whichever connection answers it."""
    from sqlalchemy import text

    with contextlib.ExitStack() as stack:

        def connect() -> Connection:
            conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
            return stack.enter_context(conn)

        first = connect()
        conns = [first]
        if n > 1:
            snapshot = first.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            # A utility statement takes no parameters; the id is the server's own, and checked.
            if not _SNAPSHOT_ID.fullmatch(snapshot):
                raise ValueError(f"unexpected snapshot id {snapshot!r}")
            for _ in range(n - 1):
                conn = connect()
                conn.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
                conns.append(conn)
        yield conns


class _Progress:
    """A bar on stderr while reading, on a terminal only (the style of `sorsync sync`)."""

    def __init__(self, size: int | None, raw: _Counted) -> None:
        self.size = size
        self.raw = raw
        self._live: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description:<24}"),
                BarColumn(),  # pulses when the size is unknown (stdin)
                TextColumn("{task.fields[rows]:>11,} rows"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._live.start()
            self._task = self._live.add_task("resolve", total=self.size, rows=0)
        return self

    def __call__(self, rows: int) -> None:
        if self._live is not None:
            self._live.update(self._task, completed=self.raw.read_bytes, rows=rows)

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.update(self._task, completed=self.raw.read_bytes)
            self._live.stop()


def _open_input(path: str) -> tuple[BinaryIO, int | None]:
    if path == PLAIN:
        return sys.stdin.buffer, None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
        return handle, os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_CONFIG) from None


def _parse_day(value: str | None) -> dt.date:
    from sorsync.lookup import today

    if value is None:
        return today()
    problem = rs.date_problem(value)
    if problem is not None:
        raise fail(f"--date: {problem}", EXIT_CONFIG)
    return dt.date.fromisoformat(value)


NO_REPLICA = (
    "the replica holds no SOR units yet: run `sorsync sync` (or `sorsync sync --full`) first,"
    " or point SORSYNC_DATABASE_URL at a synced replica"
)


@app.command("resolve")
def resolve_command(
    input_path: Annotated[
        str, typer.Argument(metavar="FILE", help="A CSV file with a header row, or - for stdin.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the answer here (default: stdout)."),
    ] = None,
    code_column: Annotated[
        str, typer.Option("--code-column", help="The column holding the codes.")
    ] = "code",
    kind_column: Annotated[
        str | None,
        typer.Option(
            "--kind-column",
            help="The column saying each code's kind (shak, sor, ean, ydernummer); default: a"
            " column named kind if there is one.",
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="One kind for every row (default shak), instead of a column."),
    ] = None,
    date_column: Annotated[
        str | None,
        typer.Option(
            "--date-column",
            help="The column holding each row's date (YYYY-MM-DD); default: a column named"
            " date if there is one. An empty cell means --date.",
        ),
    ] = None,
    date: Annotated[
        str | None,
        typer.Option("--date", help="The date for rows without one (default: today in Denmark)."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="The field delimiter; default: detected (; , or tab)."),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="The input's encoding; default: detected (UTF-8 with or without BOM, else"
            " cp1252, else latin-1). The answer is written in the same encoding.",
        ),
    ] = None,
) -> None:
    """Back-map the codes of a CSV file: each row gets the answer columns of POST /v1/resolve.

    Reads FILE (or stdin) against the local replica (SORSYNC_DATABASE_URL, else the embedded
    database), writes the rows with the columns status, sor_id, sor_name, … added, and prints
    a summary on stderr. The API need not be running.

    Exit status: 0 every row answered (a row may still be invalid or not found), 1 failed (the
    database cannot be reached, no replica yet, the input breaks off), 2 a problem with the
    options or the input's header (a missing column, an unreadable file).
    """
    from sorsync.logs import configure

    configure(level="WARNING")
    if kind is not None and kind_column is not None:
        raise fail("give --kind or --kind-column, not both", EXIT_CONFIG)
    if kind is not None and (problem := rs.kind_problem(kind.strip().lower())) is not None:
        raise fail(f"--kind: {problem}", EXIT_CONFIG)
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise fail("--delimiter is one character (or tab)", EXIT_CONFIG)
    day = _parse_day(date)
    stream, size = _open_input(input_path)
    try:
        try:
            source = open_source(stream, size, encoding, delimiter)
        except InputError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
        reader = csv.reader(source.text, delimiter=source.delimiter)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise fail(f"cannot read the header of {input_path}: {exc}", EXIT_CONFIG) from None
        if header is None:
            raise fail(f"{input_path} is empty: the first row names the columns", EXIT_CONFIG)
        try:
            columns = pick_columns(header, code_column, kind_column, date_column)
        except InputError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
        _run(source, reader, header, columns, kind, day, output)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _run(
    source: Source,
    reader: Iterator[list[str]],
    header: list[str],
    columns: Columns,
    kind: str | None,
    day: dt.date,
    output: Path | None,
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from sorsync.cli.common import migrated_engine
    from sorsync.db.connect import connect_problem, database_url

    # Written beside the output and renamed at the end: an answer cut off by an error is never
    # left under the name asked for.
    partial = None if output is None else output.with_name(output.name + ".partial")
    summary = Summary()
    started = time.perf_counter()
    with migrated_engine("sorsync-resolve") as engine:
        try:
            # One snapshot for the whole file: a sync that commits meanwhile changes no answer.
            with snapshot_connections(engine, CONNECTIONS) as conns:
                conn = conns[0]
                if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM sor.unit)")).scalar():
                    raise fail(NO_REPLICA, EXIT_FAILED)
                try:
                    # stdout too in the input's encoding: the answer is usually redirected
                    # to a file that goes where the input came from (Excel, a SAS job).
                    out: IO[str] = (
                        io.TextIOWrapper(sys.stdout.buffer, encoding=source.encoding,
                                         newline="", errors="replace")
                        if partial is None
                        else partial.open("w", encoding=source.encoding, newline="",
                                          errors="replace")
                    )  # fmt: skip
                except OSError as exc:
                    raise fail(f"cannot write {partial}: {exc.strerror}", EXIT_CONFIG) from None
                try:
                    writer = csv.writer(
                        out, delimiter=source.delimiter, lineterminator=source.newline
                    )
                    writer.writerow([*header, *rs.CSV_COLUMNS])
                    rs.collect_less_often()
                    with _Progress(source.size, source.raw) as progress:
                        resolve_rows(
                            conns, reader, len(header), columns,
                            None if kind is None else kind.strip().lower(), day,
                            writer.writerow, summary, progress,
                        )  # fmt: skip
                    out.flush()
                finally:
                    if partial is None:
                        out.flush()
                        out.detach()  # type: ignore[attr-defined]  # sys.stdout stays open
                    else:
                        out.close()
        except UnicodeDecodeError as exc:
            raise _broken(
                f"the input is not {source.encoding} after row {summary.rows:,} (byte"
                f" 0x{exc.object[exc.start]:02X}); give --encoding (e.g. cp1252)",
                partial,
            ) from None
        except csv.Error as exc:
            raise _broken(
                f"the CSV cannot be read after row {summary.rows:,}: {exc}", partial
            ) from None
        except DBAPIError as exc:
            raise _broken(connect_problem(database_url(), exc), partial) from None
    if output is not None and partial is not None:
        partial.replace(output)
    summary.seconds = time.perf_counter() - started
    typer.echo(summary.line(), err=True)


def _broken(message: str, partial: Path | None) -> typer.Exit:
    if partial is None:
        return fail(f"resolve stopped: {message}; the rows before it are on stdout", EXIT_FAILED)
    partial.unlink(missing_ok=True)
    return fail(f"resolve stopped: {message}; no output was written", EXIT_FAILED)
