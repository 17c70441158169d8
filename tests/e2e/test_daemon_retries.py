"""daemon.run against the AMI simulator over TCP, with a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami_listener import daemon
from ami_listener.core.models import AttemptStatus, CallStatus
from ami_listener.simulator import Simulator
from ami_listener.store import Store

from .harness import SECRET, USER, Watch, place, settings_for

NUMBER = "+12025550123"
FAST_RETRY = {"enabled": True, "max_retries": 3, "retry_intervals_minutes": [0.001]}


async def test_busy_then_ring_out_then_answer(tmp_path: Path) -> None:
    script = {NUMBER: ["busy", "noanswer", "answer"]}
    async with Simulator(
        username=USER, secret=SECRET, time_scale=0.05, ring_s=0.2, script=script, seed=7
    ) as sim:
        settings = settings_for(sim, tmp_path)
        place(settings, "call-1", NUMBER, FAST_RETRY)
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch)
        )
        try:
            await watch.until(lambda: watch.final("call-1"))
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)

    with Store.open(settings.database.path) as store:
        call = store.get_call("call-1")
    assert call.status is CallStatus.COMPLETED
    assert call.retry_count == 2
    assert [a.status for a in call.attempts] == [
        AttemptStatus.BUSY,
        AttemptStatus.NO_ANSWER,
        AttemptStatus.COMPLETED,
    ]
    assert [a.cause for a in call.attempts][:2] == [17, 19]
    assert all(a.decision for a in call.attempts)
    # The simulator saw three dials of this number, none overlapping another.
    dials = [d for d in sim.originates if d.number == NUMBER]
    assert len(dials) == 3
    assert sim.max_concurrent(NUMBER) == 1
    statuses = [c.status for c, _ in watch.changes if c.id == "call-1"]
    assert statuses.count(CallStatus.INITIATED) == 3
    assert statuses.count(CallStatus.SCHEDULED) == 2
