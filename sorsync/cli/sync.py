"""`sorsync sync` (one delta or full run) and `sorsync status` (where the replica stands)."""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED, EXIT_FOREIGN_SOURCE, EXIT_LOCKED, app
from sorsync.cli.common import DEMO_HELP, fail, migrated_engine, source_settings
from sorsync.config import ConfigError, Settings, get_settings
from sorsync.datatypes import Datatype, KeyFormatError, lookup
from sorsync.logs import configure

if TYPE_CHECKING:
    from sorsync.sync.cancel import Cancellation
    from sorsync.sync.results import Kind

PLAIN_PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


LOCK_HELD = (
    "another sorsync sync is running (it holds the sync lock); nothing was done —"
    " try again when it has finished"
)


def _stop_on_signals(cancel: Cancellation) -> None:
    """SIGTERM (systemd, Kubernetes) and Ctrl-C cancel the run: it ends after the page in
    flight and is recorded as interrupted instead of being left "running". A second signal acts
    as it would without this (Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        cancel.cancel(signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _interrupted(result: Any, what: str, kept: str) -> typer.Exit:
    # Exit 1, as when Ctrl-C ended the command by KeyboardInterrupt.
    return fail(f"{what} {result.error} ({kept}); run the {what} again", EXIT_FAILED)


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None


def _datatypes(settings: Settings, keys: list[str] | None) -> list[Datatype]:
    if not keys:
        return list(settings.datatypes)
    try:
        return list(dict.fromkeys(lookup(k) for k in keys))
    except KeyFormatError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None


class _Progress:
    """Progress on stderr: a live display on a terminal, a line every few seconds otherwise."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tty = sys.stderr.isatty()
        self._live: Any = None
        self._tasks: dict[str, Any] = {}
        self._last_line = 0.0

    def __enter__(self) -> _Progress:
        if self.tty:
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
                BarColumn(),  # pulses: KRS does not say how many records will come
                TextColumn("{task.completed:>9,.0f} records"),
                TextColumn("{task.fields[pages]:>5} pages"),
                TextColumn("{task.fields[phase]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.stop()

    def download(self, got: int, total: int | None) -> None:
        """The file export's download (bytes so far, of `total` when the server says)."""
        if self._live is not None:
            task = self._tasks.get("download")
            if task is None:
                task = self._tasks["download"] = self._live.add_task(
                    "download", total=None, pages=0, phase="MB"
                )
            self._live.update(task, completed=got / 1e6, total=total / 1e6 if total else None)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_PROGRESS_EVERY or (total and got >= total):
            self._last_line = now
            of = f" of {total / 1e6:.1f}" if total else ""
            typer.echo(f"download: {got / 1e6:.1f}{of} MB", err=True)

    def __call__(self, p: Any) -> None:
        if self._live is not None:
            task = self._tasks.get(p.key)
            if task is None:
                task = self._tasks[p.key] = self._live.add_task(
                    p.key, total=None, pages=0, phase=""
                )
            phase = {"load": "", "swap": "applying", "done": "done", "failed": "FAILED"}[p.phase]
            finished = p.phase in ("done", "failed")
            self._live.update(
                task,
                completed=p.records,
                pages=p.pages,
                phase=phase,
                total=p.records if finished else None,
            )
            return
        now = time.monotonic()
        if p.phase != "load" or now - self._last_line >= PLAIN_PROGRESS_EVERY:
            self._last_line = now
            state = {"load": "loading", "swap": "applying", "done": "done", "failed": "failed"}
            typer.echo(
                f"{self.kind} sync {p.key}: {state[p.phase]}, {p.records} records, {p.pages} pages",
                err=True,
            )


def _summary(result: Any, source: str) -> str:
    lines = [
        f"{result.kind} sync {result.status}: run {result.run_id}, {result.records} records in"
        f" {result.pages} pages, {result.seconds:.1f} s (from {source})"
    ]
    if result.error:
        lines.append(f"  reason: {result.error}")
    for d in result.datatypes:
        detail = f"{d.records} records, {d.inserted} new, {d.updated} changed"
        if result.kind == "full":
            detail += f", {d.deleted} removed"
        lines.append(f"  {d.key:<24} {d.status:<8} {detail}, {d.seconds:.1f} s")
        if d.reconciliation is not None:
            lines.append(f"  {'':<24} reconciliation: {d.reconciliation.summary()}")
            for which, pids in d.reconciliation.examples.items():
                keys = d.reconciliation.example_keys.get(which)
                named = "; ".join(keys) if keys else f"PIDs {', '.join(map(str, pids))}"
                lines.append(f"  {'':<24}   e.g. {which}: {named}")
        if d.unknown_elements:
            lines.append(
                f"  {'':<24} unknown elements kept in column extra: "
                + ", ".join(d.unknown_elements[:10])
                + (f" … ({len(d.unknown_elements)} in all)" if len(d.unknown_elements) > 10 else "")
            )
        if d.drift is not None and d.drift.differs:
            lines.append(
                f"  {'':<24} fields differ from the mapping ({d.drift.summary()}); every field"
                " is kept in column record — see `sorsync krs describe`"
            )
    return "\n".join(lines)


@app.command("sync")
def sync_command(
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Replay everything from token 0 into shadow tables, then apply it in one"
            " transaction and report the differences (reconciliation).",
        ),
    ] = False,
    datatype: Annotated[
        list[str] | None,
        typer.Option(
            "--datatype",
            metavar="register/datatype/vN",
            help="Sync only this datatype (repeatable). Default: SORSYNC_KRS_DATATYPES.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
    ] = False,
    demo: Annotated[bool, typer.Option("--demo", help=DEMO_HELP)] = False,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="With --full: apply the result even if it removes more than"
            " SORSYNC_FULL_MAX_SHRINK of a datatype's rows (the source really shrank).",
        ),
    ] = False,
) -> None:
    """Run one sync: a delta (continue from the stored token) or --full.

    The replica is bound to the source it was synced from: a delta against another source is
    refused; --full rebuilds from the new one and rebinds.

    Exit status: 0 ok, 1 failed, 2 configuration problem, 3 the replica is bound to another
    source (run --full), 75 another sync is running.
    """
    interactive = sys.stderr.isatty()
    configure(level="WARNING" if interactive else "INFO")
    from sorsync.sync.cancel import Cancellation

    cancel = Cancellation()
    _stop_on_signals(cancel)
    settings = source_settings(demo)
    dts = _datatypes(settings, datatype)
    kind: Kind = "full" if full else "delta"

    from sorsync.cli.demo import BUILTIN
    from sorsync.db.locks import LockHeld
    from sorsync.sync.binding import ForeignSource
    from sorsync.sync.service import SourceError, krs_source, run_sync

    if settings.uses_files and not demo:
        _files_sync(settings, dts, full, allow_shrink, json_output, cancel)
        return
    with migrated_engine("sorsync-cli", writer=True) as engine:
        try:
            with krs_source(settings, builtin=BUILTIN) as source, _Progress(kind) as progress:
                result = run_sync(
                    engine,
                    settings,
                    kind=kind,
                    datatypes=dts,
                    on_progress=progress,
                    source=source,
                    rebind=full,
                    allow_shrink=allow_shrink,
                    cancel=cancel,
                )
        except SourceError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
        except ForeignSource as exc:
            raise fail(f"sync refused: {exc}", EXIT_FOREIGN_SOURCE) from None
        except LockHeld:
            raise fail(LOCK_HELD, EXIT_LOCKED) from None
    if result.interrupted:
        raise _interrupted(
            result, "sync", "the replica and its token stay at the last committed page"
        )
    if json_output:
        body = {**result.to_dict(), "source": source.identity, "fictive": source.fictive}
        typer.echo(json.dumps(body, ensure_ascii=False))
    else:
        typer.echo(_summary(result, source.description))
    if not result.ok:
        hint = (
            "this looks temporary: run the sync again later"
            if result.transient
            else "fix the cause, then run the sync again"
        )
        raise fail(
            f"sync failed: {result.error} (the replica and its token stay at the last committed"
            f" page; {hint})",
            EXIT_FAILED,
        )


def _files_sync(
    settings: Settings,
    dts: list[Datatype],
    full: bool,
    allow_shrink: bool,
    json_output: bool,
    cancel: Cancellation,
) -> None:
    """One import of the SOR2 file export (always a full; --full rebinds the replica and
    downloads even an unchanged export)."""
    from sorsync.db.locks import LockHeld
    from sorsync.files.load import identity
    from sorsync.sync.binding import ForeignSource
    from sorsync.sync.service import run_sync

    problem = settings.source_problem()
    if problem is not None:
        raise fail(problem, EXIT_CONFIG)
    location = settings.files_location
    with migrated_engine("sorsync-cli", writer=True) as engine:
        try:
            with _Progress("full") as progress:
                result = run_sync(
                    engine,
                    settings,
                    kind="full",
                    datatypes=dts,
                    on_progress=progress,
                    rebind=full,
                    allow_shrink=allow_shrink,
                    on_download=progress.download,
                    cancel=cancel,
                )
        except ForeignSource as exc:
            raise fail(f"import refused: {exc}", EXIT_FOREIGN_SOURCE) from None
        except LockHeld:
            raise fail(LOCK_HELD, EXIT_LOCKED) from None
    if result.interrupted:
        raise _interrupted(result, "import", "the replica is unchanged")
    export = result.export or {}
    if json_output:
        body = {**result.to_dict(), "source": identity(location), "fictive": False}
        typer.echo(json.dumps(body, ensure_ascii=False))
    elif export.get("not_modified"):
        typer.echo(
            f"import skipped: run {result.run_id}, the export at {export.get('location')} has"
            " not changed since the last import (nothing downloaded); --full imports it anyway"
        )
    else:
        typer.echo(_summary(result, str(export.get("location") or location)))
    if not result.ok:
        hint = (
            "this looks temporary: run the import again later"
            if result.transient
            else "fix the cause, then run the import again"
        )
        raise fail(f"import failed: {result.error} (the replica is unchanged; {hint})", EXIT_FAILED)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@app.command("status")
def status_command(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the status as one JSON object on stdout.")
    ] = False,
) -> None:
    """Show per datatype: token, last success, rows, last error; and the data's age."""
    configure(level="WARNING")
    settings = _settings()
    from sorsync.sync.status import status

    with migrated_engine("sorsync-cli") as engine:
        report = status(engine, settings)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    freshness = "STALE" if report.stale else "fresh"
    lines = [
        f"data age: {_age(report.data_age_seconds)} ({freshness}; stale after"
        f" {_age(report.stale_after_seconds)})"
    ]
    if report.data_age_seconds is None:
        lines[0] += " — run `sorsync sync` (or `sorsync sync --full`)"
    if report.fictive:
        lines[0] += " — FICTIVE demo data from the built-in simulator, not SOR"
    repl = report.replication
    if repl.role == "standby":
        lag = "unknown" if repl.lag_seconds is None else f"{repl.lag_seconds:.1f} s"
        lines.append(
            f"server: hot standby, replication lag {lag} (included in the data age),"
            f" WAL receiver {repl.wal_receiver or 'NOT CONNECTED'}"
        )
    lines.append(f"{'datatype':<28} {'rows':>9}  {'last success':<25} {'token':<21} last error")
    for d in report.datatypes:
        success = d.last_success_at.isoformat(timespec="seconds") if d.last_success_at else "-"
        lines.append(
            f"{d.key:<28} {d.rows:>9}  {success:<25} {d.token or '-':<21} {d.last_error or '-'}"
        )
        drift = d.drift or {}
        for label, key in (
            ("mapped, not seen", "mapped_not_seen"),
            ("not mapped", "seen_not_mapped"),
        ):
            if drift.get(key):
                lines.append(f"{'':<28} fields {label}: {', '.join(drift[key][:10])}")
    for source in dict.fromkeys(d.source.rsplit(" ", 1)[0] for d in report.datatypes if d.source):
        lines.append(f"source: {source}")
    if report.last_run is not None:
        run = report.last_run
        lines.append(
            f"last run: #{run.id} {run.kind} {run.status}, started"
            f" {run.started_at.isoformat(timespec='seconds')}, {run.records} records"
            + (f" — {run.error}" if run.error else "")
        )
    typer.echo("\n".join(lines))
