"""`autoretry demo` runs the daemon against the simulator and exits 0 with the story told."""

from __future__ import annotations

import pytest

from ami_listener.cli import main


def test_demo_shows_retries_and_final_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    final = out.split("final:", 1)[1]
    assert "+12025550486  completed  retries 2" in final
    assert "+12025550408  no-answer  retries 2" in final
    assert "+12025550404  failed     retries 0" in final
    assert "+12025550100  completed  retries 0" in final
    assert "Q.850 17 User busy" in out and "retry 1 of 3" in out
    assert "Q.850 1 is permanent" in out
    assert "-> webhook 'scheduled' (retry_count 1)" in out
