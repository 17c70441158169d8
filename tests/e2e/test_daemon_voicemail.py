"""An answered attempt whose AMD says MACHINE (the simulator publishes the same UserEvent our
AGI hook does) is retried when retry_on_voicemail is true, and otherwise ends `completed`
with answered_by_voice_mail."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ami_listener import daemon
from ami_listener.core.models import AttemptStatus, CallStatus
from ami_listener.simulator import Simulator
from ami_listener.store import Store

from .harness import SECRET, USER, Watch, place, settings_for

NUMBER = "+12025550666"


@pytest.mark.parametrize("retry_on_voicemail", [True, False])
async def test_machine_answer(tmp_path: Path, retry_on_voicemail: bool) -> None:
    async with Simulator(
        username=USER,
        secret=SECRET,
        time_scale=0.05,
        ring_s=0.2,
        script={NUMBER: ["machine", "human"]},
        seed=9,
    ) as sim:
        settings = settings_for(sim, tmp_path)
        retry = {
            "enabled": True,
            "max_retries": 2,
            "retry_on_voicemail": retry_on_voicemail,
            "retry_intervals_minutes": [0.001],
        }
        place(settings, "vm", NUMBER, retry)
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch)
        )
        try:
            await watch.until(lambda: watch.final("vm"))
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)

    with Store.open(settings.database.path) as store:
        call = store.get_call("vm")
    first = call.attempts[0]
    assert first.amd_status == "MACHINE" and first.answered_by_voice_mail
    assert call.status is CallStatus.COMPLETED
    if retry_on_voicemail:
        assert [a.status for a in call.attempts] == [AttemptStatus.COMPLETED] * 2
        assert call.retry_count == 1 and not call.answered_by_voice_mail
        assert call.attempts[1].amd_status == "HUMAN"
    else:
        assert len(call.attempts) == 1 and call.retry_count == 0
        assert call.answered_by_voice_mail
