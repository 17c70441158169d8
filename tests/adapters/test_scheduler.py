"""The scheduler against a real SQLite file: pacing, waking, sleeping until due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ami_listener.core.lifecycle import AttemptEnded, advance, new_call
from ami_listener.core.models import Attempt, Call, CallRequest, OutcomeStatus
from ami_listener.core.outcomes import Outcome
from ami_listener.core.policy import Rules
from ami_listener.scheduler import Scheduler
from ami_listener.store import Store
from ami_listener.writer import Writer

REQUEST = CallRequest(agent_id="t", recipient_phone_number="+12025550123")
BUSY = Outcome(OutcomeStatus.BUSY, False, "busy")


def now() -> datetime:
    return datetime.now(UTC)


class Dials:
    """The dial callback: records each dial (call id, loop time) and wakes waiters."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.changed = asyncio.Event()

    async def __call__(self, call: Call, attempt: Attempt) -> None:
        self.seen.append((call.id, asyncio.get_running_loop().time()))
        self.changed.set()

    async def until(self, count: int) -> None:
        async def wait() -> None:
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), 10)


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    async with Writer(tmp_path / "s.db") as w:
        yield w


async def add(writer: Writer, call_id: str, due: datetime, number: str | None = None) -> None:
    # Each call its own number unless a test says otherwise: one number is never rung by
    # two calls at once, which would hold the second call back.
    request = REQUEST.model_copy(update={"recipient_phone_number": number or f"+1202555-{call_id}"})
    call, effects = new_call(call_id, request, due)
    await writer(lambda s: s.create_call(call, effects))


def scheduler(writer: Writer, dials: Dials, *, concurrent: int, cps: float) -> Scheduler:
    ids = iter(range(10**6))
    return Scheduler(
        writer,
        dials,
        rules=Rules(),
        max_concurrent=concurrent,
        max_cps=cps,
        clock=now,
        new_id=lambda: f"a{next(ids)}",
    )


async def test_max_concurrent_holds_until_an_attempt_ends(writer: Writer) -> None:
    for i in range(6):
        await add(writer, f"c{i}", now())
    dials = Dials()
    sched = scheduler(writer, dials, concurrent=3, cps=1000)
    task = asyncio.create_task(sched.run())
    try:
        await dials.until(3)
        assert len(dials.seen) == 3
        first = dials.seen[0][0]
        call = await writer(lambda s: s.get_call(first))
        attempt = call.live_attempt
        assert attempt is not None
        await writer(
            lambda s: s.transition(
                first, lambda c: advance(c, AttemptEnded(now(), attempt.id, BUSY))
            )
        )
        sched.wake()
        await dials.until(4)
        assert len(dials.seen) == 4  # one slot freed, one more dial, not two
        assert await writer(Store.count_live) == 3
    finally:
        task.cancel()


async def test_max_cps_spaces_dials(writer: Writer) -> None:
    for i in range(7):
        await add(writer, f"c{i}", now())
    dials = Dials()
    task = asyncio.create_task(scheduler(writer, dials, concurrent=100, cps=5).run())
    try:
        await dials.until(7)
    finally:
        task.cancel()
    times = [t for _, t in dials.seen]
    # a burst of 5 (the bucket), then one every 1/5 s
    assert times[5] - times[0] >= 0.15
    assert times[6] - times[5] >= 0.15


async def test_new_work_wakes_a_sleeping_scheduler(writer: Writer) -> None:
    dials = Dials()
    sched = scheduler(writer, dials, concurrent=10, cps=100)
    task = asyncio.create_task(sched.run())
    try:
        await asyncio.sleep(0)  # let it find nothing and go to sleep for an hour
        await add(writer, "late", now())
        sched.wake()
        await dials.until(1)
    finally:
        task.cancel()
    assert dials.seen[0][0] == "late"


async def test_sleeps_until_the_next_due_call(writer: Writer) -> None:
    dials = Dials()
    loop = asyncio.get_running_loop()
    await add(writer, "soon", now() + timedelta(seconds=0.3))
    started = loop.time()
    task = asyncio.create_task(scheduler(writer, dials, concurrent=10, cps=100).run())
    try:
        await dials.until(1)
    finally:
        task.cancel()
    assert dials.seen[0][1] - started >= 0.25  # not dialled before it was due
