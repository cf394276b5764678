"""The generated parts of the docs (settings table, SOR2 fields) match the code."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_docs.py"


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_pages_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_every_setting_and_every_sor2_field_is_on_its_page() -> None:
    from sorsync.config import ENV_PREFIX, Settings
    from sorsync.mapping import DEFAULTS

    config = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in config
    sor = (ROOT / "docs" / "sor.md").read_text(encoding="utf-8")
    for mapping in DEFAULTS.values():
        for field in mapping.fields:
            assert f"| `{field.column}` | `{field.element}` |" in sor


def test_a_stale_page_is_reported(tmp_path: Path) -> None:
    module = gen_docs()
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    stale = page.replace("| `SORSYNC_API_PORT` |", "| `SORSYNC_API_PORTS` |")
    assert module.render(stale, "config", module.config_table()) == page


def test_a_setting_without_a_meaning_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    module = gen_docs()
    monkeypatch.delitem(module.MEANINGS, "api_port")
    with pytest.raises(SystemExit, match="api_port"):
        module.config_table()
