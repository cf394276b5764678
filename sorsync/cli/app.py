"""The `sorsync` Typer application; command modules register themselves on it."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="sorsync",
    help="A PostgreSQL replica of SOR from NSP's KopiRegisterService, with SHAK→SOR lookups.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: it re-wraps docstrings to the terminal (rich keeps their line breaks,
    # which then fall mid-sentence) and shows no type for flags (rich prints `<bool>`).
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # one-line summaries on a wide terminal
)
db_app = typer.Typer(
    help="Database migrations (Alembic, under an advisory lock).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FOREIGN_SOURCE = 3  # the replica is bound to another KRS source: `sorsync sync --full`
EXIT_FOREIGN_SOURCE = 3  # the replica is bound to another KRS source: `sorsync sync --full`
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock


def _show_version(value: bool | None) -> None:
    if value:
        from sorsync.cli.version import show_version

        show_version(value)


@app.callback()
def _options(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Show the version, the page walk in use and, with SORSYNC_DATABASE_URL set,"
            " the PostgreSQL server and schema revision; then exit.",
        ),
    ] = None,
) -> None:
    """A PostgreSQL replica of SOR from NSP's KopiRegisterService, with SHAK→SOR lookups."""
