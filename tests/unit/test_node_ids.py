"""The collection guard of tests/conftest.py: no two tests may share a node id, or pytest-xdist
runs one of them and drops the rest silently. Shown on the case that did it, schemathesis's
operations under pytest 9.2, in a pytest of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = textwrap.dedent(
    """
    import schemathesis
    {extra}
    schema = schemathesis.openapi.from_dict({{
        "openapi": "3.0.0",
        "info": {{"title": "t", "version": "1"}},
        "paths": {{
            "/a": {{"get": {{"responses": {{"200": {{"description": "ok"}}}}}}}},
            "/b": {{"get": {{"responses": {{"200": {{"description": "ok"}}}}}}}},
        }},
    }})

    @schema.parametrize()
    {decorator}
    def test_operation(case, {argument}):
        pass
    """
)


def _collect(tmp_path: Path, *, fixed: bool) -> subprocess.CompletedProcess[str]:
    source = OPERATIONS.format(
        extra="from tests.fixtures.api import one_node_per_operation" if fixed else "",
        decorator="@one_node_per_operation" if fixed else "",
        argument="operation_node" if fixed else "",
    )
    (tmp_path / "test_ops.py").write_text(source)
    pytest_args = ["-p", "tests.conftest", "-p", "no:cacheprovider", "--collect-only", "-q"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tests_that_share_a_node_id_are_refused(tmp_path: Path) -> None:
    done = _collect(tmp_path, fixed=False)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "1 node ids are shared by several tests" in done.stderr
    assert "test_ops.py::test_operation" in done.stderr


def test_one_node_per_operation_gives_each_operation_its_own(tmp_path: Path) -> None:
    done = _collect(tmp_path, fixed=True)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert ids == [
        "test_ops.py::test_operation[GET /a][fuzz]",
        "test_ops.py::test_operation[GET /b][fuzz]",
    ]
