"""Request deadlines for the webhook workers: ``Deadlines``, one watchdog task for all.

aiohttp's own ``ClientTimeout(total=...)`` schedules a timer per request and cancels it
when the answer comes: a heap push and pop on the event loop's timer heap, whose
comparisons are Python calls (``TimerHandle.__lt__``). A bare aiohttp client ran ~450 of
its ~4900 bytecodes a request there (bench/webhooks.py's client, counted with
``sys.settrace``). Here each worker writes its request's deadline into its slot, and one
task looks at the slots every ``timeout_s / 10`` (at most 0.5 s, at least 10 ms) and
cancels a worker whose deadline has passed; the worker takes that cancellation back
(``Task.uncancel``) and records a timeout. A request may so run up to one period past
``timeout_s``.

The watchdog cancels a worker only while the worker's slot holds a deadline, and the
worker fills the slot right before its request and empties it right after (no await in
between): the cancellation always lands inside the request. A stop that cancels the same
worker meanwhile is not taken back (``end`` says so, and the worker re-raises).
"""

from __future__ import annotations

import asyncio

MIN_PERIOD_S = 0.01
MAX_PERIOD_S = 0.5


class Deadlines:
    def __init__(self, slots: int, timeout_s: float) -> None:
        self._at: list[float | None] = [None] * slots  # loop.time() deadlines
        self._expired = [False] * slots  # cancelled by the watchdog, not yet taken back
        self._tasks: list[asyncio.Task[None] | None] = [None] * slots
        self._timeout_s = timeout_s  # the last request's: sets the watchdog's period
        self._loop = asyncio.get_running_loop()

    def bind(self, slot: int) -> None:
        """The calling task is the worker of ``slot``."""
        self._tasks[slot] = asyncio.current_task()

    def start(self, slot: int, timeout_s: float) -> None:
        """A request starts; it is cut off ``timeout_s`` from now."""
        self._timeout_s = timeout_s
        self._at[slot] = self._loop.time() + timeout_s

    def end(self, slot: int) -> bool:
        """The request ended: True if it was cut off by its deadline (the cancellation,
        taken back here, is then a timeout); False otherwise, and for a stop."""
        self._at[slot] = None
        if not self._expired[slot]:
            return False
        self._expired[slot] = False
        task = self._tasks[slot]
        return task is not None and task.uncancel() == 0

    async def watch(self) -> None:
        """Cancel the workers whose request is past its deadline; runs until cancelled."""
        while True:
            await asyncio.sleep(min(max(self._timeout_s / 10, MIN_PERIOD_S), MAX_PERIOD_S))
            self.expire(self._loop.time())

    def expire(self, now: float) -> None:
        """Cancel the workers whose deadline is ``now`` or earlier (``watch``'s look)."""
        at, expired, tasks = self._at, self._expired, self._tasks
        for slot, deadline in enumerate(at):
            task = tasks[slot]
            if deadline is not None and deadline <= now and task is not None:
                at[slot] = None
                expired[slot] = True
                task.cancel()
