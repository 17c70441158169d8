"""The README/CI contract: CI runs README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def test_readme_gives_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    run, test = commands
    assert "autoretry" in run and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, f"{test!r} not a line of .ci/run"


def test_ci_starts_from_a_fresh_virtual_environment() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "rm -rf .venv" in ci.split("python3 -m venv", 1)[0]
