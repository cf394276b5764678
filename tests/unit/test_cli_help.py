"""The command line's help: plain text re-wrapped to the terminal, no type noise on flags, and
one default seed for the two commands that generate fictive data."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

import sorsync.cli  # noqa: F401  (registers every command on the app)
from sorsync.cli.app import app
from sorsync.simulator.demo import DEMO_SEED

COMMANDS = [
    "run",
    "sync",
    "resolve",
    "status",
    "serve",
    "scheduler",
    "simulator",
    "generate",
    "db upgrade",
    "krs describe",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_type_noise(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "<int range>" not in result.output


def test_generate_and_simulator_default_to_the_demo_seed() -> None:
    click_app = get_command(app)
    defaults = {}
    for name in ("generate", "simulator"):
        command = click_app.commands[name]  # type: ignore[attr-defined]
        (seed,) = [p for p in command.params if p.name == "seed"]
        defaults[name] = seed.default
    assert defaults == {"generate": DEMO_SEED, "simulator": DEMO_SEED}
