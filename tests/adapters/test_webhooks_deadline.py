"""``Deadlines``: one watchdog task cuts off late requests; a stop stays a stop.

The worker below does what the sender's does around its request: fill the slot, wait
(here on an event, standing for the request), empty the slot, and take back the
watchdog's cancellation as a timeout."""

from __future__ import annotations

import asyncio

import pytest

from ami_listener.webhooks_deadline import Deadlines


async def worker(
    deadlines: Deadlines, slot: int, started: asyncio.Event, answer: asyncio.Event
) -> str:
    deadlines.bind(slot)
    deadlines.start(slot, 0.05)
    started.set()
    timed_out = False
    try:
        try:
            await answer.wait()
        finally:
            timed_out = deadlines.end(slot)
    except asyncio.CancelledError:
        if not timed_out:
            raise
        return "timed out"
    return "answered"


async def test_a_late_request_is_cut_off_by_the_watchdog_and_the_worker_goes_on() -> None:
    deadlines = Deadlines(2, 0.05)
    watch = asyncio.create_task(deadlines.watch())
    started, answer = asyncio.Event(), asyncio.Event()
    try:
        late = asyncio.create_task(worker(deadlines, 0, started, answer))
        assert await asyncio.wait_for(late, 5) == "timed out"
        assert late.cancelling() == 0  # the cancellation was taken back
        # An answer in time is an answer; the slot's deadline is gone with it.
        answer.set()
        on_time = asyncio.create_task(worker(deadlines, 1, asyncio.Event(), answer))
        assert await asyncio.wait_for(on_time, 5) == "answered"
    finally:
        watch.cancel()


async def test_a_stop_is_not_taken_for_a_timeout_even_when_the_deadline_also_passed() -> None:
    deadlines = Deadlines(1, 0.05)
    loop = asyncio.get_running_loop()
    started, answer = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker(deadlines, 0, started, answer))
    await started.wait()
    deadlines.expire(loop.time() + 1)  # the watchdog's look, past the deadline
    task.cancel()  # and a stop, before the worker runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    # A stop alone, no deadline passed: the same.
    started.clear()
    task = asyncio.create_task(worker(deadlines, 0, started, answer))
    await started.wait()
    deadlines.expire(loop.time())  # not yet due: nothing happens
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
