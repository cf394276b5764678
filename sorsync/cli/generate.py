"""`sorsync generate` (docs/reference/design.md §4): write a fictive SOR snapshot (SorTree XML)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from sorsync.cli.app import EXIT_FAILED, app


@app.command()
def generate(
    units: Annotated[
        int, typer.Option("--units", min=5, metavar="N", help="Number of SOR units to generate.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the SorTree XML; a name ending in .gz is gzip-compressed.",
            dir_okay=False,
        ),
    ],
    # The demo data's seed (sorsync.simulator.demo.DEMO_SEED): `--units 3000` alone writes the
    # bundled demo snapshot, and `sorsync simulator --generate N` has the same default.
    seed: Annotated[
        int, typer.Option(metavar="S", help="Seed: the same seed gives the same bytes.")
    ] = 20250106,
    evolve: Annotated[
        int,
        typer.Option(
            "--evolve",
            min=0,
            metavar="K",
            help="Write the NEXT day's snapshot instead: the seed's tree after K changes"
            " (renames, moves, closures with successors, new units, SHAK moves, reopenings…).",
        ),
    ] = 0,
    steps: Annotated[
        int,
        typer.Option(
            "--steps",
            min=1,
            metavar="S",
            help="With --evolve: this many days of K changes each.",
        ),
    ] = 1,
) -> None:
    """Write a fictive but realistically shaped SOR snapshot for the simulator and tests.

    Without --evolve: day 0 of the seed's tree. With --evolve K: the snapshot --steps days later.

    Loading day 0 and then the evolved file gives the deltas a real KRS would deliver, e.g.
    `--units 3000 --out day0.xml`, then `--units 3000 --evolve 50 --out day1.xml`.
    """
    from sorsync.simulator.generator import evolve as evolve_model
    from sorsync.simulator.generator import generate as generate_model
    from sorsync.simulator.generator import write_sortree

    model = generate_model(units, seed=seed)
    if evolve:
        for step in range(steps):
            evolve_model(model, evolve, seed=seed + step)
    try:
        with out.open("wb") as raw:
            if out.suffix == ".gz":
                # mtime=0 and no file name inside: the same arguments give the same bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                    size = write_sortree(model, packed)  # type: ignore[arg-type]
            else:
                stream: BinaryIO = raw
                size = write_sortree(model, stream)
    except OSError as exc:
        typer.echo(f"cannot write {out}: {exc.strerror or exc}; check the path", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(
        f"wrote {out}: {len(model)} units, snapshot date {model.snapshot_date.isoformat()}, "
        f"{size} bytes of XML",
        err=True,
    )
