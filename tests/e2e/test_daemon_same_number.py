"""Two calls to one number (two API requests, a CSV listing a person twice) are dialled one
after the other, never at once: a person is never rung twice at the same time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami_listener import daemon
from ami_listener.core.models import CallStatus
from ami_listener.simulator import Simulator

from .harness import SECRET, USER, Watch, place, settings_for

NUMBER = "+12025550123"


async def test_second_call_waits_for_the_first(tmp_path: Path) -> None:
    async with Simulator(
        username=USER,
        secret=SECRET,
        time_scale=0.05,
        ring_s=0.2,
        answer_hold_s=20,  # 1 s scaled: the second call is due while the first is up
        script={NUMBER: ["answer"]},
    ) as sim:
        settings = settings_for(sim, tmp_path)
        place(settings, "one", NUMBER)
        place(settings, "two", NUMBER)
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch)
        )
        try:
            await watch.until(lambda: watch.final("one", "two"), limit_s=30)
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)
    assert len(sim.originates) == 2
    assert sim.max_concurrent(NUMBER) == 1
    assert {watch.latest(i).status for i in ("one", "two")} == {CallStatus.COMPLETED}  # type: ignore[union-attr]
