"""ami_listener/core does no I/O and reads no clock (house rule 1), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "ami_listener" / "core"
FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "sqlite3",
    "sqlite_utils",
    "aiohttp",
    "panoramisk",
    "asterisk",
    "subprocess",
    "threading",
    "time",
    "random",
    "os",
    "secrets",
    "uuid",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
FILES = sorted(CORE.glob("*.py"))


def test_core_has_modules() -> None:
    names = {f.stem for f in FILES}
    assert {"models", "outcomes", "policy", "windows", "lifecycle"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_core_module_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert not roots & FORBIDDEN_MODULES, f"{path.name}:{node.lineno} imports {roots}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_core_module_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"datetime", "date", "time"}
        ):
            raise AssertionError(f"{path.name}:{node.lineno} reads the clock")


def test_purity_check_catches_a_violation(tmp_path: Path) -> None:
    # The checks above must be able to fail: feed them a bad module.
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom datetime import datetime\nx = datetime.now()\n")
    with pytest.raises(AssertionError):
        test_core_module_imports_nothing_impure(bad)
    with pytest.raises(AssertionError):
        test_core_module_reads_no_clock(bad)
