"""The embedded PostgreSQL is stopped by the last process using it, even after one of them was
killed with SIGKILL (which never tells the library it left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sorsync.db import embedded

JOIN_AND_WAIT = """
import sys, time
from pathlib import Path
from sorsync.db import embedded
embedded.start(Path(sys.argv[1]))
print("joined", flush=True)
time.sleep(600)
"""

JOIN_AND_LEAVE = """
import sys
from pathlib import Path
from sorsync.db import embedded
embedded.start(Path(sys.argv[1]))
"""


def _postmaster_running(datadir: Path) -> bool:
    pid_file = datadir / "postmaster.pid"
    if not pid_file.exists():
        return False
    return embedded._alive(int(pid_file.read_text().split()[0]))


def test_a_killed_user_does_not_keep_the_server_running(tmp_path: Path) -> None:
    datadir = tmp_path / "pg"
    with subprocess.Popen(
        [sys.executable, "-c", JOIN_AND_WAIT, str(datadir)], stdout=subprocess.PIPE, text=True
    ) as killed:
        try:
            assert killed.stdout is not None
            assert killed.stdout.readline().strip() == "joined"
            assert _postmaster_running(datadir)
        finally:
            killed.send_signal(signal.SIGKILL)
    assert json.loads((datadir / ".handle_pids.json").read_text()) == [killed.pid]

    # The next user joins the running server and, leaving last, stops it.
    subprocess.run([sys.executable, "-c", JOIN_AND_LEAVE, str(datadir)], check=True, timeout=120)
    deadline = time.monotonic() + 30
    while _postmaster_running(datadir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postmaster_running(datadir)


def test_forgetting_leaves_live_users_and_odd_files_alone(tmp_path: Path) -> None:
    users = tmp_path / ".handle_pids.json"
    embedded.forget_dead_users(tmp_path)  # no file: nothing to do
    assert not users.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    users.write_text(json.dumps([os.getpid(), int(dead)]))
    embedded.forget_dead_users(tmp_path)
    assert json.loads(users.read_text()) == [os.getpid()]
    users.write_text('{"not": "a list"}')
    embedded.forget_dead_users(tmp_path)
    assert users.read_text() == '{"not": "a list"}'
