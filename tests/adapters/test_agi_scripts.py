"""The process AGI scripts: light to import, and clear when copied alone into agi-bin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "aiohttp", "sqlite_utils", "panoramisk", "asyncio", "phonenumbers")


def test_agi_handlers_imports_nothing_heavy() -> None:
    code = "import sys, ami_listener.agi_handlers; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.split()
    assert "ami_listener.agi_handlers" in out
    loaded = {name.split(".")[0] for name in out}
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)
    assert not any(
        name.startswith("ami_listener.")
        and name not in ("ami_listener.agi_handlers", "ami_listener.agi_protocol")
        for name in out
    )


@pytest.mark.parametrize("route", ["amd", "manage", "report"])
def test_script_alone_without_the_package_fails_clearly(tmp_path: Path, route: str) -> None:
    script = tmp_path / f"autoretry-{route}.py"
    shutil.copy(ROOT / "agi" / script.name, script)
    assert os.access(ROOT / "agi" / script.name, os.X_OK)
    # -I: no PYTHONPATH, no user site; -S: no site-packages, so no ami_listener at all.
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(script)],
        input="agi_request: x\n\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stdout == "FAILURE\n"  # Asterisk: AGISTATUS=FAILURE
    assert "install it for" in done.stderr and "asterisk-autoretry" in done.stderr
