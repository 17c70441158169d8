"""The call-file dialer end to end: files land atomically in the simulator's spool, outcomes
come back over AMI correlated by our channel variables, retries are ours (MaxRetries 0)."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path

from ami_listener import daemon
from ami_listener.core.models import AttemptStatus, CallStatus
from ami_listener.simulator import Simulator
from ami_listener.store import Store

from .harness import SECRET, USER, Watch, place, settings_for

NUMBER = "+12025550486"


async def test_callfile_busy_then_answer(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "tmp").mkdir(parents=True)
    (spool / "outgoing").mkdir()
    async with Simulator(
        username=USER,
        secret=SECRET,
        time_scale=0.05,
        ring_s=0.2,
        spool_dir=spool,
        script={NUMBER: ["busy", "answer"]},
        seed=5,
    ) as sim:
        settings = settings_for(sim, tmp_path, method="callfile", asterisk_user=getpass.getuser())
        place(
            settings,
            "cf",
            NUMBER,
            {"enabled": True, "max_retries": 2, "retry_intervals_minutes": [0.001]},
        )
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch)
        )
        try:
            await watch.until(lambda: watch.final("cf"))
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)

    with Store.open(settings.database.path) as store:
        call = store.get_call("cf")
    assert call.status is CallStatus.COMPLETED and call.retry_count == 1
    assert [a.status for a in call.attempts] == [AttemptStatus.BUSY, AttemptStatus.COMPLETED]
    assert call.attempts[0].cause == 17
    assert [d.source for d in sim.originates] == ["callfile", "callfile"]
    assert sim.max_concurrent(NUMBER) == 1
    assert list((spool / "tmp").iterdir()) == []  # nothing left half-written
