"""Write the generated parts of the docs from the code, so they cannot drift from it.

* docs/configuration.md: the table of settings, from `sorsync.config.Settings`;
* docs/sor.md: the SOR v1 field tables, from `sorsync.datatypes.DATATYPES`, and the SOR2 ones,
  from `sorsync.mapping.DEFAULTS`.

Each generated part sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`;
the rest of the page is written by hand. `--check` changes nothing and exits 1 when a page is
stale (tests/docs/test_generated.py runs it).

    .venv/bin/python scripts/gen_docs.py          # rewrite the pages
    .venv/bin/python scripts/gen_docs.py --check  # fail if they are stale
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from sorsync.config import ENV_PREFIX, Settings
from sorsync.datatypes import DATATYPES
from sorsync.mapping import DEFAULTS, DatatypeMapping

ROOT = Path(__file__).resolve().parent.parent

# What each setting is for. The settings model says what is allowed; the reason for a setting is
# written here, and a setting without one fails the generator (so a new one gets documented).
MEANINGS: dict[str, str] = {
    "database_url": "the PostgreSQL database of the replica",
    "krs_url": "NSP's KopiRegisterService endpoint",
    "krs_datatypes": "the KRS datatypes to replicate",
    "krs_page_size": "records asked for per KRS call (`maxRecords`)",
    "krs_timeout": "limit for one call: connecting, the headers and the whole answer together,"
    " however the server frames or trickles it",
    "krs_max_answer_bytes": "the largest KRS answer read; a larger one is refused while reading"
    " (a page of 2000 records fits many times over)",
    "full_max_shrink": "the share of a datatype's rows a full sync may remove; more is refused"
    " before the swap unless `sorsync sync --full --allow-shrink`",
    "idcard_file": "a file holding an STS-issued SOSI ID card, sent verbatim (mode 1)",
    "sts_url": "the SOSI STS that issues ID cards (mode 2)",
    "cert_file": "the FOCES/VOCES system certificate, PKCS#12 (mode 2)",
    "cert_password": "the certificate file's password (mode 2)",
    "cvr": "the organisation's CVR, as in the certificate (mode 2)",
    "system_name": "the IT system name written into the ID card (mode 2)",
    "delta_interval": "minutes between delta syncs; data older than twice this is stale",
    "full_cron": "when the full sync runs, Europe/Copenhagen time (after NSP's nightly import)",
    "api_host": "the address the API (and the scheduler's metrics) bind to",
    "api_port": "the API's port",
    "metrics_port": "the scheduler's Prometheus endpoint",
    "api_cache_entries": "SHAK and SOR answers each API worker keeps in memory",
    "api_header_timeout": "seconds a client may take to send a request's headers; then the"
    " connection is closed",
    "api_keep_alive_timeout": "seconds an idle kept-alive API connection stays open",
    "api_max_connections": "API connections open at once per worker; more get 503 and are closed",
    "test_database_url": "the PostgreSQL server the test suite creates its databases on",
    "mapping_file": "which record elements become which columns of the SOR2 views",
    "demo": "sync the built-in simulator's fictive demo data (as `--demo`)",
    "demo_krs_url": "set by `sorsync run` for its children: the simulator it started",
    "log_level": "the log level (debug also shows the embedded PostgreSQL's INFO lines)",
    "nsp_environment": "fills SORSYNC_KRS_URL and SORSYNC_STS_URL with NSP's public test hosts",
    "source": "where SOR comes from: KRS, or the public SOR2 file export (docs/files.md)",
    "files_url": "the SOR2 file export to import (`SORSYNC_SOURCE=files`)",
    "files_cron": "when the scheduler imports the file export, Europe/Copenhagen time (after"
    " the export's refresh window, 01:00-04:30)",
    "files_retries": "retries of a failed download of the file export, with backoff (2 s, 4 s,"
    " 8 s, …)",
}

# Defaults that mean something more than their value.
DEFAULT_NOTES: dict[str, str] = {
    "database_url": "unset: embedded PostgreSQL",
    "krs_url": "unset: refused with a database set; the demo's simulator when nothing is set",
    "krs_datatypes": "unset: SOR2 from NSP; SOR2 and the five v1 views in the demo",
    "test_database_url": "unset: embedded PostgreSQL",
    "source": "unset: the file export when SORSYNC_FILES_URL is set, else KRS",
    "files_url": "unset: the public Sor_complete.zip of sor-filer.sundhedsdata.dk",
}


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _type_name(args[0]) if len(args) == 1 else " or ".join(map(_type_name, args))
    if typing.get_origin(annotation) is tuple:
        return "comma list"
    names = {str: "text", int: "integer", float: "number", Path: "file", SecretStr: "secret"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(name: str, info: FieldInfo) -> str:
    if name in DEFAULT_NOTES:
        return DEFAULT_NOTES[name]
    if info.default is None:
        return "unset"
    value = info.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def config_table() -> str:
    missing = sorted(set(Settings.model_fields) - set(MEANINGS))
    if missing:
        raise SystemExit(f"scripts/gen_docs.py: say in MEANINGS what these settings are: {missing}")
    lines = [
        "| variable | what it is | value | default |",
        "|---|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        value = _type_name(info.annotation)
        allowed = info.description
        # Some descriptions say what the setting is (then MEANINGS says it better), most say
        # what is allowed; those that already name the type stand alone.
        if allowed and not allowed.startswith(("PostgreSQL", "KRS")):
            value = allowed if value.split()[-1] in allowed else f"{value}: {allowed}"
        lines.append(
            f"| `{ENV_PREFIX}{name.upper()}` | {_cell(MEANINGS[name])} | {_cell(value)}"
            f" | {_cell(_default(name, info))} |"
        )
    return "\n".join(lines)


def _mapping_table(m: DatatypeMapping) -> str:
    lines = [
        f"### `{m.role}` ({m.key})",
        "",
        f"{m.doc[:1].upper()}{m.doc[1:]}. View `sor.{m.view}`.",
        "",
        "| column | element | kind | sure | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in m.fields:
        lines.append(
            f"| `{f.column}` | `{f.element}` | {f.kind.value} | {f.confidence} | {_cell(f.doc)} |"
        )
    return "\n".join(lines)


def sor2_tables() -> str:
    return "\n\n".join(_mapping_table(m) for m in DEFAULTS.values())


# What the SOR v1 elements hold (NSP's importer fills them from SOR; docs/reference/krs-protocol.md
# §6.2). A new element without a line here stops the generator.
V1_MEANINGS: dict[str, str] = {
    "sorNummer": "SOR id of the unit",
    "eanLokationsnummer": "EAN/GLN location number (on a yder: the practice's, inherited)",
    "nummer": "SHAK code (sygehus, sygehusafdeling) or ydernummer without leading zeros (yder)",
    "navn": "name",
    "telefon": "phone",
    "vejnavn": "street name and building number",
    "postnummer": "postcode",
    "bynavn": "town",
    "email": "e-mail address",
    "www": "website",
    "validFrom": "first day of the version (SOR's FromDate at Danish midnight)",
    "validTo": "SOR's ToDate at Danish midnight, used as an exclusive end; year 2999 = open",
    "sygehusSorNummer": "the hospital, on top-level units only",
    "overafdelingSorNummer": "the parent unit, on sub-units only",
    "underlagtSygehusSorNummer": "the hospital, always",
    "afdelingTypeKode": "unit type (SNOMED CT)",
    "afdelingTypeTekst": "unit type in words (NSP's own table)",
    "hovedSpecialeKode": "main clinical speciality (SNOMED CT; the last one SOR lists)",
    "hovedSpecialeTekst": "main clinical speciality in words",
    "regionCode": "region (1081-1085), from the owner's EAN block",
    "praksisSorNummer": "the practice the yder unit belongs to",
    "apotekNummer": "pharmacy number (before the comma of SOR's PharmacyIdentifier)",
    "filialNummer": "branch number (after the comma)",
    "cvr": "never filled by NSP's importer",
    "pcvr": "never filled by NSP's importer",
}


def v1_tables() -> str:
    out = []
    for dt in DATATYPES.values():
        missing = [f.element for f in dt.fields if f.element not in V1_MEANINGS]
        if missing:
            raise SystemExit(f"scripts/gen_docs.py: say in V1_MEANINGS what {missing} hold")
        lines = [
            f"### `{dt.key}`",
            "",
            f"Table `krs.{dt.table}`, record element `{dt.datatype}` in `{dt.namespace}`.",
            "",
            "| element | column | type | meaning |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{f.element}` | `{f.column}` | {f.type.value} | {_cell(V1_MEANINGS[f.element])} |"
            for f in dt.fields
        ]
        out.append("\n".join(lines))
    return "\n\n".join(out)


PARTS: dict[str, tuple[str, Any]] = {
    "config": ("docs/configuration.md", config_table),
    "v1-fields": ("docs/sor.md", v1_tables),
    "sor2-fields": ("docs/sor.md", sor2_tables),
}


def render(page: str, name: str, body: str) -> str:
    start, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    pattern = re.compile(rf"({re.escape(start)}).*?({re.escape(end)})", re.DOTALL)
    if not pattern.search(page):
        raise SystemExit(f"scripts/gen_docs.py: no markers for {name!r}")
    return pattern.sub(lambda m: f"{m.group(1)}\n{body}\n{m.group(2)}", page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a page is stale")
    args = parser.parse_args(argv)
    stale = 0
    pages: dict[str, str] = {}
    for name, (path, make) in PARTS.items():
        old = pages.get(path) or (ROOT / path).read_text(encoding="utf-8")
        pages[path] = render(old, name, make())
    for path, new in pages.items():
        old = (ROOT / path).read_text(encoding="utf-8")
        if old == new:
            continue
        if args.check:
            stale += 1
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), path, f"{path} (generated)", lineterm=""
            )
            sys.stderr.write("\n".join(diff) + "\n")
        else:
            (ROOT / path).write_text(new, encoding="utf-8")
    if stale:
        sys.stderr.write("stale: run .venv/bin/python scripts/gen_docs.py\n")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
