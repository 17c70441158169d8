"""The simulator drops the AMI connection during calls: the daemon reconnects and
reconciles. A call still up is followed to its real end; a call that ended while the daemon
was away is `outcome-lost`, and the policy retries it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami_listener import daemon
from ami_listener.core.models import AttemptStatus, CallStatus
from ami_listener.simulator import Simulator
from ami_listener.store import Store

from .harness import SECRET, USER, Watch, place, settings_for

LONG = "+12025550100"  # answered, still up when the connection comes back
RING = "+12025550408"  # rings out while the daemon is disconnected
RETRY = {
    "enabled": True,
    "max_retries": 2,
    "retry_on_statuses": ["no-answer", "error"],
    "retry_intervals_minutes": [0.005],
}


def _status(watch: Watch, call_id: str) -> CallStatus | None:
    call = watch.latest(call_id)
    return call.status if call else None


async def test_connection_drop_during_calls(tmp_path: Path) -> None:
    script = {LONG: ["answer"], RING: ["noanswer", "answer"]}
    async with Simulator(
        username=USER,
        secret=SECRET,
        time_scale=0.2,
        ring_s=0.2,
        answer_hold_s=15,  # 3 s scaled: outlives the 1 s disconnection with room to spare
        script=script,
        seed=11,
    ) as sim:
        settings = settings_for(
            sim, tmp_path, ami={"reconnect_max_s": 1}, ring_timeout_s=3
        )  # 0.6 s scaled
        place(settings, "long", LONG, RETRY)
        place(settings, "ring", RING, RETRY)
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch, first_backoff_s=1.0)
        )
        try:
            await watch.until(
                lambda: (
                    _status(watch, "long") is CallStatus.IN_PROGRESS
                    and _status(watch, "ring") is CallStatus.RINGING
                )
            )
            logins = len(sim.sessions)
            await sim.drop_connections()
            await watch.until(lambda: watch.final("long", "ring"))
            assert len(sim.sessions) == logins  # it came back
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)

    with Store.open(settings.database.path) as store:
        long, ring = store.get_call("long"), store.get_call("ring")
    assert long.status is CallStatus.COMPLETED
    assert [(a.status, a.cause) for a in long.attempts] == [(AttemptStatus.COMPLETED, 16)]
    assert ring.status is CallStatus.COMPLETED
    assert [a.status for a in ring.attempts] == [AttemptStatus.ERROR, AttemptStatus.COMPLETED]
    assert ring.attempts[0].reason == "outcome-lost"
    assert sim.max_concurrent(LONG) == 1 and sim.max_concurrent(RING) == 1
