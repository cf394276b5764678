"""`sorsync simulator`: the local KRS server (see docs/reference/design.md §4 and §7)."""

from __future__ import annotations

import gc
import io
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, BinaryIO

import typer

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED, app
from sorsync.logs import configure, get_logger

LISTENING = "KRS simulator listening on {url}"  # parsed by `sorsync run`; keep it stable


def _summary(report: Any) -> dict[str, Any]:
    from sorsync.simulator.server import jsonable

    data = jsonable(report)
    return data if isinstance(data, dict) else {"report": str(data)}


def _generated(units: int, seed: int) -> BinaryIO:
    from sorsync.simulator.generator import generate, write_sortree

    buffer = io.BytesIO()
    write_sortree(generate(units, seed=seed), buffer)
    buffer.seek(0)
    return buffer


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server like Ctrl-C does


@app.command()
def simulator(
    snapshot: Annotated[
        list[Path] | None,
        typer.Option(
            "--snapshot",
            metavar="FILE",
            help="SorTree XML snapshot to load; repeat for later days (each is one import run,"
            " later ones produce deltas).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    generate: Annotated[
        int | None,
        typer.Option(
            "--generate", min=1, metavar="N", help="Serve N generated fictive units instead."
        ),
    ] = None,
    # The demo data's seed (sorsync.simulator.demo.DEMO_SEED), as for `sorsync generate`: the
    # same arguments give the same tree in both commands.
    seed: Annotated[int, typer.Option(metavar="S", help="Seed for --generate.")] = 20250106,
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="TCP port; 0 picks a free one.")
    ] = 8080,
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST",
            help="Address to bind. The admin endpoints have no authentication: keep it on"
            " loopback.",
        ),
    ] = "127.0.0.1",
    enforce: Annotated[
        list[str] | None,
        typer.Option(
            "--enforce",
            metavar="CVR",
            help="Enforce DGWS like NSP: start a test STS and accept only level-3 ID cards it"
            " signed, for these CVRs (repeatable), each allowed every served datatype.",
        ),
    ] = None,
    sor2: Annotated[
        bool,
        typer.Option(
            "--sor2/--no-sor2",
            help="Also serve the SOR2 datatypes (sor/v2/sorentity|shaksormap|sorreplacedentity/v1)"
            " from the same snapshots; --no-sor2 serves the five v1 views only (less memory).",
        ),
    ] = True,
    v2_namespace: Annotated[
        str | None,
        typer.Option(
            "--v2-namespace", metavar="URI", help="Record namespace of the SOR2 datatypes."
        ),
    ] = None,
    v2_dates: Annotated[
        str | None,
        typer.Option(
            "--v2-dates",
            metavar="STYLE",
            help="SOR2 FromDate/ToDate…: mixed (default: ISO dates, every 5th row date-times"
            " with an offset), date or datetime.",
        ),
    ] = None,
    rename: Annotated[
        list[str] | None,
        typer.Option(
            "--rename",
            metavar="DATATYPE:OLD=NEW",
            help="Render a SOR2 element under another name, e.g. sorentity:EntityName=Name.",
        ),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            "--drop", metavar="DATATYPE:NAME", help="Leave a SOR2 element out (sorentity:LocalCode)"
        ),
    ] = None,
    add: Annotated[
        list[str] | None,
        typer.Option(
            "--add",
            metavar="DATATYPE:NAME=VALUE",
            help="Add an element with a fixed value to every record (sorentity:NewField=x).",
        ),
    ] = None,
) -> None:
    """Run a local stand-in for NSP's KopiRegisterService (KRS) serving SOR data.

    With neither --snapshot nor --generate it serves the bundled fictive demo data.
    Each snapshot is imported with its own CreatedAtTime as ModifiedDate, so a restart with
    the same data serves the same tokens. Prints the service URL, then serves until Ctrl-C
    or SIGTERM.
    """
    configure()
    log = get_logger("sorsync.simulator")
    if snapshot and generate:
        typer.echo("use either --snapshot or --generate, not both", err=True)
        raise typer.Exit(EXIT_CONFIG)

    from sorsync.datatypes import DATATYPES
    from sorsync.simulator.importer import load_snapshot
    from sorsync.simulator.server import serve
    from sorsync.simulator.sor2 import RecordShape, ShapeError
    from sorsync.simulator.store import SERVED, Store

    try:
        shape = RecordShape.from_options(
            namespace=v2_namespace, dates=v2_dates, rename=rename or (), drop=drop or (),
            add=add or (),
        )  # fmt: skip
    except ShapeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    store = Store(SERVED if sor2 else DATATYPES, shape=shape)
    sources: list[tuple[str, Path | BinaryIO]]
    if snapshot:
        sources = [(str(path), path) for path in snapshot]
    elif generate:
        sources = [(f"{generate} generated units (seed {seed})", _generated(generate, seed))]
    else:
        from sorsync.simulator.demo import demo_snapshot_path

        demo = demo_snapshot_path()
        sources = [(f"bundled demo data ({demo.name})", demo)]
    for name, source in sources:
        try:
            # Stamped with each snapshot's own time, not the clock: a restart with the same
            # inputs serves the same tokens, so a replica's next delta fetches nothing new.
            report = load_snapshot(store, source, reproducible=True)
        except Exception as exc:  # one readable line; the traceback helps nobody here
            typer.echo(f"could not load {name}: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from None
        log.info("snapshot loaded", source=name, **_summary(report))

    # The rows live as long as the process: keep them out of the cyclic GC's full passes,
    # which would otherwise stall a page now and then (~80 ms per million rows).
    gc.collect()
    gc.freeze()
    sts_handle = None
    enforcer = None
    if enforce:
        from sorsync.testing.enforce import make_enforcer
        from sorsync.testing.sts import serve_sts_in_thread

        sts_handle = serve_sts_in_thread(host=host)
        served = set(store.tables)
        enforcer = make_enforcer([sts_handle.cert], dict.fromkeys(enforce, served))
    try:
        server = serve(store, host=host, port=port, enforce=enforcer)
    except OSError as exc:
        typer.echo(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port", err=True
        )
        raise typer.Exit(EXIT_FAILED) from None
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("admin endpoints are reachable from the network", host=host)
    # SIGINT too: a parent may have started us with SIGINT ignored (background job)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    typer.echo(LISTENING.format(url=server.url))
    if sts_handle is not None:
        typer.echo(
            f"test STS listening on {sts_handle.url}"
            f" (enforcing DGWS for CVR {', '.join(enforce or [])})"
        )
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.close_connections()
        server.server_close()
        if sts_handle is not None:
            sts_handle.stop()
        log.info("simulator stopped")
