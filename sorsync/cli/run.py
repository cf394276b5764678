"""`sorsync run`: the main job in one process tree.

The parent process owns the embedded PostgreSQL (when no SORSYNC_DATABASE_URL is set) and starts
the built-in KRS simulator as a child (when no SORSYNC_KRS_URL is set), migrates, runs a full
sync when the replica is empty, then starts `sorsync scheduler` and `sorsync serve` as children
with the resolved URLs in their environment. Ctrl-C or SIGTERM stops every child, then the
parent (which stops the embedded server last). A child that dies stops everything with exit 1.

Children run in their own process group: a Ctrl-C on the terminal reaches only the parent,
which then stops each child exactly once (a second signal would make the scheduler hurry). If
the parent dies without stopping them (SIGKILL, OOM killer), the kernel sends each child SIGTERM
(Linux; `tie_to_parent`), so no orphaned API keeps answering from a replica nobody syncs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy import make_url

from sorsync.cli.app import EXIT_CONFIG, EXIT_FAILED, EXIT_FOREIGN_SOURCE, EXIT_OK, app
from sorsync.cli.common import DEMO_HELP, source_settings
from sorsync.config import Settings, known_variables
from sorsync.logs import configure, get_logger

if TYPE_CHECKING:
    from sorsync.sync.cancel import Cancellation

PARENT_ENV = "SORSYNC_RUN_PARENT"  # set for the children: the pid of `sorsync run`
CHILD_STOP_TIMEOUT = 30.0  # seconds for children to stop before they are killed
SIMULATOR_START_TIMEOUT = 60.0
API_READY_TIMEOUT = 60.0
POLL = 0.2


class Abort(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Child:
    name: str  # for people: "the API (sorsync serve)"
    proc: subprocess.Popen[bytes]


def _cancellation() -> Cancellation:
    from sorsync.sync.cancel import Cancellation  # the sync package, only when it runs

    return Cancellation()


@dataclass
class Supervisor:
    """The children and the signal state of `sorsync run`."""

    children: list[Child] = field(default_factory=list)
    # A stop was requested. Startup checks it between its steps and while it waits; the first
    # full sync is cancelled through it (and rolls back as a whole).
    stop: Cancellation = field(default_factory=_cancellation)
    hurry: bool = False  # a second signal: kill instead of waiting

    def stop_requested(self) -> bool:
        return self.stop.cancelled

    def install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.stop.cancelled:
                self.hurry = True
                return
            self.stop.cancel(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def spawn(
        self, name: str, args: Sequence[str], env: dict[str, str], stdout: int | None = None
    ) -> Child:
        # Spawned from the main thread only: the kernel's parent-death signal fires when the
        # spawning *thread* ends.
        proc = subprocess.Popen(
            [sys.executable, "-m", "sorsync", *args],
            env={**env, PARENT_ENV: str(os.getpid())},
            stdout=stdout,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        child = Child(name, proc)
        self.children.append(child)
        return child

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited with status {code}"
                )
                raise Abort(f"{child.name} {how}; stopping everything — see its log above")

    def stop_all(self) -> None:
        """SIGTERM to every child, wait, SIGKILL whatever is still running."""
        running = [c for c in self.children if c.proc.poll() is None]
        for child in running:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT
        while any(c.proc.poll() is None for c in running):
            if self.hurry or time.monotonic() > deadline:
                for child in running:
                    if child.proc.poll() is None:
                        _log().warning("killing a child that did not stop", child=child.name)
                        child.proc.kill()
                break
            time.sleep(0.05)
        for child in running:
            child.proc.wait()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def tie_to_parent() -> None:
    """In a child of `sorsync run`: have the kernel send SIGTERM when that parent dies, however
    it dies. The child's SIGTERM handling then stops it as cleanly as the parent would have.

    A no-op outside Linux and outside `sorsync run`. The variable is removed, so the child's
    own children (uvicorn workers) are tied to the child, by their own means, not to `run`.
    """
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        tied = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # an unusual libc: as on other systems
        return
    if tied != 0:
        return  # not fatal: the parent's normal shutdown still stops this process
    if os.getppid() != int(parent):  # the parent died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _log() -> Any:
    return get_logger("sorsync.run")


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _browse_host(host: str) -> str:
    """The host part of a URL a person (or the readiness probe) can use for a bind address."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - a comparison, not a bind
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise Abort(
                f"cannot serve the API on {host}:{port} ({exc.strerror or exc}); another program"
                " uses the port — set SORSYNC_API_PORT (and SORSYNC_API_HOST) to a free one",
                EXIT_CONFIG,
            ) from None


def _simulator_url(sim: Child, supervisor: Supervisor) -> str | None:
    """Read `KRS simulator listening on <url>` from the simulator's stdout (None: stopping)."""
    assert sim.proc.stdout is not None
    stdout = sim.proc.stdout
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        for raw in stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not found and "listening on " in line:
                found.append(line.rsplit("listening on ", 1)[1].strip())
                done.set()
            elif line:
                _say(line)  # keep draining, so the child never blocks on a full pipe
        done.set()

    threading.Thread(target=read, name="simulator-stdout", daemon=True).start()
    deadline = time.monotonic() + SIMULATOR_START_TIMEOUT
    while not done.wait(POLL):
        if supervisor.stop_requested():
            return None
        if time.monotonic() > deadline:
            raise Abort(
                f"the built-in KRS simulator did not start within {SIMULATOR_START_TIMEOUT:.0f}"
                " s; run `sorsync simulator` to see why"
            )
    if not found:
        supervisor.check_children()
        raise Abort("the built-in KRS simulator stopped before it was ready; see its log above")
    return found[0]


def _wait_for_api(base: str, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + API_READY_TIMEOUT
    while time.monotonic() < deadline:
        if supervisor.stop_requested():
            return
        supervisor.check_children()
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL)
    raise Abort(f"the API did not answer {base}/readyz within {API_READY_TIMEOUT:.0f} s")


def _database(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url
    from sorsync.db import embedded

    try:
        url = embedded.start()
    except Exception as exc:
        raise Abort(
            f"could not start the embedded PostgreSQL in {embedded.data_dir()} ({exc}); set"
            " SORSYNC_DATABASE_URL to use your own PostgreSQL instead"
        ) from None
    _say(f"embedded PostgreSQL: data in {embedded.data_dir()}")
    return url


def _migrate(url: str) -> None:
    from sorsync.db import migrate

    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        migrate.upgrade(url)
    except Exception as exc:
        where = make_url(url).render_as_string(hide_password=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Abort(
            f"could not migrate the database at {where} ({first}); check SORSYNC_DATABASE_URL"
            " and that the server is running"
        ) from None


def _first_sync(url: str, krs_url: str | None, settings: Settings, stop: Cancellation) -> None:
    from sorsync.cli.demo import BUILTIN
    from sorsync.sync.binding import ForeignSource
    from sorsync.sync.service import SourceError, sync_if_empty

    try:
        result = sync_if_empty(url, krs_url, settings, builtin=BUILTIN, cancel=stop)
    except SourceError as exc:
        raise Abort(str(exc), EXIT_CONFIG) from None
    except ForeignSource as exc:
        raise Abort(str(exc), EXIT_FOREIGN_SOURCE) from None
    if result is None or result.interrupted:
        return
    if result.ok:
        _say(
            f"first full sync done: {result.records} records in {result.seconds:.1f} s"
            f" (run {result.run_id})"
        )
    else:
        _say(
            f"the first full sync failed: {result.error}. Starting anyway; the scheduler will"
            " try again"
        )


def _interrupted() -> int:
    _say("interrupted; stopping sorsync …")
    return EXIT_OK


def _main(settings: Settings, supervisor: Supervisor) -> int:
    """Start everything, then watch the children until a stop is requested. A signal during
    startup ends it after the step in flight (a first full sync at its next page)."""
    started = time.monotonic()
    stopping = supervisor.stop_requested
    _check_port_free(settings.api_host, settings.api_port)
    # Unknown SORSYNC_ variables were reported once, here; the children need not repeat it.
    known = known_variables()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_") or k in known}

    # The simulator loads its data while the database starts and migrates.
    sim = None
    if settings.demo_mode:
        sim = supervisor.spawn(
            "the built-in KRS simulator (sorsync simulator)",
            ["simulator", "--port", "0"],
            env,
            stdout=subprocess.PIPE,
        )
    url = _database(settings)
    env["SORSYNC_DATABASE_URL"] = url
    if stopping():
        return _interrupted()
    _migrate(url)
    if stopping():
        return _interrupted()
    if sim is not None:
        demo_url = _simulator_url(sim, supervisor)
        if demo_url is None:
            return _interrupted()
        _say(f"built-in KRS simulator with fictive demo data: {demo_url}")
        # The children sync the simulator started here, bound as the built-in one (by its
        # data, not its port, which changes with every start).
        env.update(SORSYNC_DEMO="1", SORSYNC_DEMO_KRS_URL=demo_url)
        settings = settings.model_copy(
            update={"demo": True, "demo_krs_url": demo_url, "database_url": url}
        )
        _first_sync(url, None, settings, supervisor.stop)
    else:
        _first_sync(url, settings.krs_url, settings, supervisor.stop)
    if stopping():
        return _interrupted()

    supervisor.spawn("the scheduler (sorsync scheduler)", ["scheduler"], env)
    supervisor.spawn("the API (sorsync serve)", ["serve"], env)
    base = f"http://{_browse_host(settings.api_host)}:{settings.api_port}"
    _wait_for_api(base, supervisor)
    if stopping():
        return _interrupted()
    typer.echo(
        f"sorsync is running (ready in {time.monotonic() - started:.1f} s)\n"
        f"  web UI:  {base}/\n"
        f"  API:     {base}/v1   e.g. {base}/v1/status\n"
        f"  docs:    {base}/docs\n"
        "  Ctrl-C stops everything."
    )
    sys.stdout.flush()
    while not supervisor.stop_requested():
        supervisor.check_children()
        time.sleep(POLL)
    _say("stopping sorsync …")
    return EXIT_OK


@app.command()
def run(demo: Annotated[bool, typer.Option("--demo", help=DEMO_HELP)] = False) -> None:
    """The main job: migrate, full sync if the replica is empty, then scheduler + API.

    With no configuration at all (or --demo) it uses the built-in KRS simulator with fictive
    demo data, and without SORSYNC_DATABASE_URL an embedded PostgreSQL. A database configured
    without SORSYNC_KRS_URL is refused (exit 2). Ctrl-C stops everything, child processes
    included.
    """
    configure()
    # The embedded server's INFO narration is hidden by sorsync.logs unless SORSYNC_LOG_LEVEL=debug.
    settings = source_settings(demo)
    supervisor = Supervisor()
    supervisor.install_signals()
    code = EXIT_FAILED
    try:
        code = _main(settings, supervisor)
    except Abort as exc:
        _say(f"sorsync run: {exc}")
        code = exc.code
    finally:
        supervisor.stop_all()  # a signal from here on only hurries the stop
    raise typer.Exit(code)
