"""`sorsync krs describe`: what a datatype really delivers, read from the source, stored nowhere.

The first thing to run against a new source (TEST2 on day one): it prints the record namespace,
every field seen (how often, a sample, the type it looks like) and how that differs from what
sorsync maps, so the inferred SOR2 names (docs/sor2.md) become facts for this installation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED, app
from sorsync.cli.common import fail
from sorsync.config import ConfigError, Settings, get_settings
from sorsync.datatypes import Datatype, KeyFormatError, document, lookup
from sorsync.krs import wire
from sorsync.krs.profile import Drift, Profile, compare
from sorsync.logs import configure
from sorsync.mapping import Expected

krs_app = typer.Typer(
    help="Look at a KRS source without storing anything.",
    no_args_is_help=True,
    rich_markup_mode=None,  # as the main app: plain, re-wrapped help
)
app.add_typer(krs_app, name="krs")


@dataclass(slots=True)
class Description:
    datatype: str
    source: str
    pages: int
    profile: Profile
    expected: Expected | None  # what sorsync maps (None: nothing to compare)
    drift: Drift | None

    def to_dict(self) -> dict[str, Any]:
        out = {"datatype": self.datatype, "source": self.source, "pages": self.pages}
        out.update(self.profile.to_dict())
        out["mapping"] = None if self.drift is None else self.drift.to_dict()
        return out


def expected_elements(settings: Settings, dt: Datatype) -> Expected | None:
    """The element names sorsync gives columns for `dt`: the mapping's for SOR2, the registry's
    for a v1 view; None for a datatype nothing maps (every field is still kept)."""
    mapped = settings.mapping.for_key(dt.key)
    if mapped is not None:
        return mapped.expected
    if not dt.is_document:
        return Expected.of(f.element for f in dt.fields)
    return None


def describe(
    settings: Settings, dt: Datatype, *, pages: int, page_size: int, krs_url: str | None = None
) -> Description:
    """Read up to `pages` pages of `dt` from the configured source (nothing is stored)."""
    from sorsync.cli.demo import BUILTIN
    from sorsync.sync.service import krs_source

    # Read as a document whatever the registry says, so that every element is seen.
    whole = document(dt.register, dt.register_version, dt.datatype, dt.version)
    profile = Profile()
    offset = wire.START_TOKEN
    read = 0
    with krs_source(settings, krs_url, builtin=BUILTIN) as source:
        for _ in range(pages):
            page = source.client.replicate(whole, offset, page_size)
            if not len(page) or page.last_token is None:
                break
            read += 1
            if page.profile is not None:
                profile.merge(page.profile)
            offset = page.last_token
        where = source.description
    expected = expected_elements(settings, dt)
    drift = None if expected is None or profile.records == 0 else compare(profile, expected)
    return Description(dt.key, where, read, profile, expected, drift)


def render(d: Description) -> str:
    p = d.profile
    lines = [f"{d.datatype}: {p.records} records in {d.pages} page(s) from {d.source}"]
    if not p.records:
        lines.append("  no records: the datatype is empty at this source (or not yet imported)")
        return "\n".join(lines)
    for ns, n in sorted(p.namespaces.items()):
        names = ", ".join(sorted(p.record_names))
        lines.append(f"  record element: {names} in namespace {ns or '(none)'} ({n} records)")
    width = max(len(name) for name in p.fields)
    lines.append(f"  {'field':<{width}}  {'seen':>7}  {'looks like':<10}  sample")
    for name, seen in sorted(p.fields.items()):
        sample = "" if seen.sample is None else seen.sample
        lines.append(f"  {name:<{width}}  {seen.count:>7}  {seen.looks_like:<10}  {sample}")
    if d.expected is not None:
        absent = sorted(d.expected.known - d.expected.required - set(p.fields))
        if absent:
            lines.append("  optional, not in these records: " + ", ".join(absent))
    if d.drift is None:
        lines.append("  nothing maps this datatype: every field is kept in column record")
    elif not d.drift.differs:
        lines.append("  fields as mapped: every mapped field was seen, every field seen is mapped")
    else:
        if d.drift.missing:
            lines.append("  mapped but never seen: " + ", ".join(d.drift.missing))
        if d.drift.unmapped:
            lines.append("  seen but not mapped (kept in record): " + ", ".join(d.drift.unmapped))
        lines.append("  to map a field under another name, set SORSYNC_MAPPING_FILE (docs/sor2.md)")
    return "\n".join(lines)


@krs_app.command("describe")
def describe_command(
    datatypes: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY",
            help="register/datatype/vN or register/vR/datatype/vN; default: all.",
        ),
    ] = None,
    pages: Annotated[
        int, typer.Option(min=1, max=100, metavar="N", help="Pages to read per datatype.")
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Read the first pages of each datatype from the configured source without storing
    anything, and show the fields seen and how they differ from the mapping."""
    from sorsync.krs.errors import KrsError
    from sorsync.sync.service import SourceError

    configure(level="WARNING")
    try:
        settings = get_settings()
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    try:
        dts = [lookup(key) for key in datatypes] if datatypes else list(settings.datatypes)
    except KeyFormatError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    out: list[Description] = []
    failed = False
    for dt in dts:
        try:
            out.append(describe(settings, dt, pages=pages, page_size=settings.krs_page_size))
        except (KrsError, SourceError) as exc:
            failed = True
            message = exc.message if isinstance(exc, KrsError) else str(exc)
            typer.echo(f"{dt.key}: {message}", err=True)
    if as_json:
        typer.echo(json.dumps([d.to_dict() for d in out], indent=2, ensure_ascii=False))
    else:
        typer.echo("\n\n".join(render(d) for d in out))
    if failed:
        raise typer.Exit(EXIT_FAILED)
