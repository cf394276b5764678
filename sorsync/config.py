"""Configuration from the environment (prefix `SORSYNC_`, also read from `.env`).

`load_settings()` turns any invalid value into a `ConfigError` whose message is one line naming
the variable and what is allowed; the CLI prints that line and exits with status 2.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sorsync import datatypes
from sorsync.mapping import SorMapping, load_mapping

ENV_PREFIX = "SORSYNC_"

# NSP's public test environments (cNSP): SORSYNC_NSP_ENVIRONMENT fills the KRS and STS URLs.
# Production URLs come with the Sundhedsdatanet agreement and are always set explicitly.
_NSP_HOST = "http://{env}-cnsp.ekstern-test.nspop.dk:8080"
NSP_ENVIRONMENTS: dict[str, dict[str, str]] = {
    env: {
        "krs_url": _NSP_HOST.format(env=env)
        + "/stamdata-batch-copy-ws/service/StamdataReplication",
        "sts_url": _NSP_HOST.format(env=env) + "/sts/services/NewSecurityTokenService",
    }
    for env in ("test1", "test2")
}
# The public SOR2 file export (docs/sor2.md §5, no login): SORSYNC_FILES_URL's default.
FILES_PUBLIC_URL = "https://sor-filer.sundhedsdata.dk/sor2_produktion/V1_00/data/Sor_complete.zip"


class ConfigError(Exception):
    """A configuration value that cannot be used; the message is meant for a person."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset → embedded PostgreSQL"
    )
    krs_url: str | None = Field(
        default=None,
        description="KRS endpoint URL; unset → built-in simulator when no database is set either",
    )
    # A preset for krs_url and sts_url (NSP_ENVIRONMENTS); explicit URLs win.
    nsp_environment: Literal["test1", "test2"] | None = Field(
        default=None, description="test1 or test2"
    )
    # The built-in simulator and its fictive data: asked for here (or `--demo`), or implied when
    # neither a database nor a KRS URL is configured (see `demo_mode`).
    demo: bool = Field(default=False, description="1/true or 0/false")
    # Where SOR comes from: KRS (the default), or the public SOR2 file export (docs/files.md).
    # Unset: the export when SORSYNC_FILES_URL is set, else KRS.
    source: Literal["krs", "files"] | None = Field(default=None, description="krs or files")
    files_url: str | None = Field(
        default=None,
        description="an http(s) URL or a local path of Sor_complete.zip, SorEntity_daily.csv"
        " or a directory of the export's CSV files",
    )
    # Nightly, after the export's refresh window (01:00-04:30 Danish time, docs/files.md).
    files_cron: str = Field(default="45 4 * * *", description="a 5-field cron expression")
    files_retries: int = Field(default=3, ge=0, le=10, description="an integer from 0 to 10")
    # Set by `sorsync run --demo` for its children: the URL of the simulator it started.
    demo_krs_url: str | None = None
    # Empty = the default set: SOR2 against a configured KRS, SOR2 and v1 in the demo.
    krs_datatypes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma list of register/datatype/vN or register/vR/datatype/vN",
    )
    krs_page_size: int = Field(default=2000, ge=1, le=2000, description="an integer from 1 to 2000")
    krs_timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds, above 0")
    mapping_file: Path | None = Field(
        default=None, description="a TOML file of SOR2 mapping overrides (see docs/sor2.md)"
    )
    # One KRS answer, read at most this far (a page of 2000 records; see sorsync/krs/client.py).
    krs_max_answer_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="bytes, from 1048576 to 1073741824",
    )
    # A full sync that would remove more than this share of a datatype's rows is refused
    # unless allowed for that run (sorsync sync --full --allow-shrink).
    full_max_shrink: float = Field(default=0.2, ge=0, le=1, description="a share from 0 to 1")
    idcard_file: Path | None = None
    sts_url: str | None = None
    cert_file: Path | None = None
    cert_password: SecretStr | None = None
    cvr: str | None = Field(default=None, pattern=r"^\d{8}$", description="8 digits")
    system_name: str | None = None
    delta_interval: int = Field(default=15, ge=1, le=24 * 60, description="minutes, from 1 to 1440")
    full_cron: str = Field(default="30 3 * * *", description="a 5-field cron expression")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535, description="a TCP port, 1 to 65535")
    # The scheduler's Prometheus endpoint (it is a separate process from the API); binds
    # SORSYNC_API_HOST. 0 turns it off.
    metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="a TCP port, 1 to 65535, or 0 for off"
    )
    # Answers the API keeps in memory per worker for its hot lookups (SHAK, SOR); 0 = none.
    api_cache_entries: int = Field(
        default=10_000, ge=0, le=1_000_000, description="an integer from 0 to 1000000"
    )
    # The API under slow or many clients (api/guard.py, sorsync/cli/serve.py): seconds a
    # request's headers may take, seconds an idle kept-alive connection stays open, and
    # connections open at once per worker (beyond it: 503 and closed).
    api_header_timeout: float = Field(
        default=10.0, gt=0, le=300, description="seconds, above 0, at most 300"
    )
    api_keep_alive_timeout: int = Field(
        default=5, ge=1, le=300, description="seconds, from 1 to 300"
    )
    api_max_connections: int = Field(
        default=1000, ge=1, le=100_000, description="an integer from 1 to 100000"
    )
    test_database_url: str | None = None
    # Read by sorsync.logs.configure from the environment (logging starts before settings).
    log_level: Literal["debug", "info", "warning", "error"] | None = Field(
        default=None, description="debug, info, warning or error"
    )

    @field_validator("nsp_environment", mode="before")
    @classmethod
    def _lower_environment(cls, value: Any) -> Any:
        return value.strip().lower() or None if isinstance(value, str) else value

    @field_validator("krs_datatypes", mode="before")
    @classmethod
    def _split_datatypes(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("krs_datatypes")
    @classmethod
    def _known_datatypes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Any well-formed key is accepted: a datatype the registry does not know is replicated
        # as whole records. Aliases (sor/v1/sygehus/v1) become their canonical key.
        keys = []
        for key in value:
            try:
                keys.append(datatypes.lookup(key).key)
            except datatypes.KeyFormatError as exc:
                raise ValueError(str(exc)) from None
        return tuple(dict.fromkeys(keys))

    @field_validator("database_url", "test_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
            raise ValueError("must be a postgresql:// or postgresql+psycopg:// URL")
        # One driver everywhere: psycopg 3 (COPY, server-side cursors, pipeline mode).
        return f"postgresql+psycopg://{rest}"

    @field_validator("krs_url", "sts_url", "demo_krs_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("source", mode="before")
    @classmethod
    def _lower_source(cls, value: Any) -> Any:
        return value.strip().lower() or None if isinstance(value, str) else value

    @field_validator("files_url")
    @classmethod
    def _files_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if "://" in value and not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
            raise ValueError("must be an http:// or https:// URL or a local path")
        return value

    @field_validator("full_cron", "files_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="Europe/Copenhagen")
        except ValueError as exc:
            raise ValueError(f"must be a 5-field cron expression ({exc})") from None
        return value

    @field_validator("mapping_file")
    @classmethod
    def _mapping_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_mapping(value)  # a MappingError (ValueError) names the file and the entry
        return value

    @property
    def mapping(self) -> SorMapping:
        """The SOR2 mapping: the defaults with SORSYNC_MAPPING_FILE's overrides."""
        return load_mapping(self.mapping_file)

    @field_validator("idcard_file", "cert_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no readable file at {value}")
        return value

    @model_validator(mode="after")
    def _nsp_preset(self) -> Settings:
        if self.nsp_environment is not None:
            preset = NSP_ENVIRONMENTS[self.nsp_environment]
            if self.krs_url is None:
                self.krs_url = preset["krs_url"]
            if self.sts_url is None:
                self.sts_url = preset["sts_url"]
        return self

    @property
    def uses_files(self) -> bool:
        """SOR comes from the public SOR2 file export (sorsync.files), not from KRS."""
        return self.source == "files" or (self.source is None and self.files_url is not None)

    @property
    def files_location(self) -> str:
        """The export to import: SORSYNC_FILES_URL, else the public Sor_complete.zip."""
        return self.files_url or FILES_PUBLIC_URL

    @property
    def demo_mode(self) -> bool:
        """Syncing from the built-in simulator's fictive data: asked for, or nothing configured."""
        if self.uses_files and not self.demo:
            return False
        return self.demo or (self.database_url is None and self.krs_url is None)

    def source_problem(self) -> str | None:
        """One line saying what to set when no KRS source follows from the configuration (a
        configured database never silently gets the fictive demo data); None when one does."""
        if self.uses_files:
            if self.demo:
                return (
                    "SORSYNC_DEMO (or --demo) and the file export (SORSYNC_SOURCE=files or"
                    " SORSYNC_FILES_URL) are both set: the demo syncs the built-in simulator's"
                    " fictive data — unset one of them"
                )
            return None
        if self.demo and self.krs_url is not None:
            return (
                "SORSYNC_DEMO (or --demo) and SORSYNC_KRS_URL are both set: the demo syncs the"
                " built-in simulator's fictive data — unset one of them"
            )
        if self.krs_url is None and not self.demo_mode:
            return (
                "SORSYNC_DATABASE_URL is set but SORSYNC_KRS_URL is not: set SORSYNC_KRS_URL to"
                " the KopiRegisterService endpoint, or SORSYNC_DEMO=1 (--demo) to load the"
                " fictive demo data into this database"
            )
        return None

    @property
    def datatype_keys(self) -> tuple[str, ...]:
        """The configured datatypes, or the default set: SOR2 from a configured KRS; SOR2 and
        the v1 views from the built-in simulator (the demo serves both from one tree)."""
        if self.krs_datatypes:
            return self.krs_datatypes
        if self.uses_files or (self.krs_url is not None and not self.demo):
            return datatypes.DEFAULT_DATATYPES
        return datatypes.DEMO_DATATYPES

    @property
    def datatypes(self) -> tuple[datatypes.Datatype, ...]:
        return tuple(datatypes.lookup(key) for key in self.datatype_keys)

    @property
    def uses_sts(self) -> bool:
        return self.sts_url is not None


_SECRET_FIELDS = {"cert_password"}


# SORSYNC_ variables that are not settings but are read elsewhere (or by a build step).
OTHER_VARIABLES = frozenset(
    {
        "SORSYNC_RUN_PARENT",  # sorsync.cli.run, for its children
        "SORSYNC_NO_EXTENSION",  # setup.py: build without the compiled module
        "SORSYNC_MAPPING_FILE",  # sorsync.mapping's override file
        "SORSYNC_FUZZ_EXAMPLES",  # tests/reliability/test_hostile_api.py
    }
)


def known_variables() -> frozenset[str]:
    return frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields) | OTHER_VARIABLES


def _dotenv() -> dict[str, str]:
    """The variables `.env` (in the working directory, as Settings reads it) sets, upper-cased."""
    from dotenv import dotenv_values

    path = Path(".env")  # Settings.model_config's env_file
    if not path.is_file():
        return {}
    return {k.upper(): v or "" for k, v in dotenv_values(path).items()}


def unknown_variable_warnings() -> list[str]:
    """One line per SORSYNC_ variable (environment or .env) that nothing reads: a typo, most
    likely, which would otherwise leave its setting silently at the default."""
    known = known_variables()
    names = {k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    names |= {k for k in _dotenv() if k.startswith(ENV_PREFIX)}
    lines = []
    for name in sorted(names - known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"warning: {name} is not a sorsync setting and is ignored{hint}")
    return lines


def _describe(error: ErrorDetails, dotenv: dict[str, str]) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    variable = ENV_PREFIX + field.upper()
    given = "" if field in _SECRET_FIELDS else f"={error.get('input')!s}"
    info = Settings.model_fields.get(field)
    description = info.description if info else None
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    allowed = f" (allowed: {description})" if description and error["type"] != "value_error" else ""
    environ = {k.upper() for k in os.environ}
    origin = " (read from .env)" if variable not in environ and variable in dotenv else ""
    return f"invalid configuration: {variable}{given}{origin}: {message}{allowed}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the configuration; raise ConfigError with one line per problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        dotenv = _dotenv()
        raise ConfigError("\n".join(_describe(e, dotenv) for e in exc.errors())) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`). Warns once
    per process, on stderr, about SORSYNC_ variables nothing reads."""
    settings = load_settings()
    _warn_unknown_variables()
    return settings


@functools.cache
def _warn_unknown_variables() -> None:
    for line in unknown_variable_warnings():
        print(line, file=sys.stderr)  # noqa: T201 - before logging is configured, for people
