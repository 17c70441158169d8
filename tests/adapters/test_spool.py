"""spool.write_callfile on a real filesystem."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ami_listener.spool import SpoolError, write_callfile


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "outgoing").mkdir()
    return tmp_path


def test_file_appears_complete_in_outgoing_with_its_mtime(spool: Path) -> None:
    at = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    path = write_callfile(spool, "a1b2", "Channel: PJSIP/1@x\n", dial_at=at)
    assert path == spool / "outgoing" / "a1b2.call"
    assert path.read_text() == "Channel: PJSIP/1@x\n"
    assert path.stat().st_mtime == at.timestamp()
    assert list((spool / "tmp").iterdir()) == []


def test_owner_is_applied_when_root(spool: Path) -> None:
    if os.geteuid() != 0:
        path = write_callfile(spool, "x", "a: b\n", owner="root")
        assert path.exists()
        return
    path = write_callfile(spool, "x", "a: b\n", owner="nobody")
    assert path.stat().st_uid != 0
    with pytest.raises(SpoolError, match="not a user"):
        write_callfile(spool, "y", "a: b\n", owner="no-such-user-here")
    assert not (spool / "tmp" / "y.call").exists()


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", "a b"])
def test_unsafe_names_are_refused(spool: Path, name: str) -> None:
    with pytest.raises(SpoolError, match="safe file name"):
        write_callfile(spool, name, "a: b\n")


def test_missing_spool_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="spool directory"):
        write_callfile(tmp_path / "nope", "x", "a: b\n")


def test_an_existing_staging_file_is_not_overwritten(spool: Path) -> None:
    (spool / "tmp" / "x.call").write_text("someone else's")
    with pytest.raises(SpoolError):
        write_callfile(spool, "x", "a: b\n")
