"""Dial due calls: sleep until the next one is due, claim it, hand it to the dialer.

One timer at a time, whatever the number of pending retries: the next due instant comes
from the database's partial index (``Store.next_due_at``), so memory does not grow with
pending calls (ARCHITECTURE.md section 7: one ``call_at`` per retry would be ~300 B each).
New work wakes the loop early (``wake()``). Pacing: at most ``max_concurrent`` live
attempts, and a token bucket of ``max_cps`` dials per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from .core.lifecycle import Defer, Dial, Dispatch, Effect, advance
from .core.models import Attempt, Call
from .core.policy import Rules
from .metrics import Metrics
from .store import Store
from .writer import Writer

log = logging.getLogger(__name__)

DialFn = Callable[[Call, Attempt], Coroutine[Any, Any, None]]
BUSY_NUMBER_WAIT = timedelta(seconds=5)  # a due call whose number is on another call
MAX_SLEEP_S = 3600.0  # re-read the database at least hourly (clock jumps, other writers)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, now

    def available(self, now: float) -> int:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return math.floor(self._tokens)

    def take(self, n: int) -> None:
        self._tokens -= n

    def wait_s(self) -> float:
        """Seconds until one whole token is available."""
        return max(0.0, (1 - self._tokens) / self.rate)


class Scheduler:
    def __init__(
        self,
        writer: Writer,
        dial: DialFn,
        *,
        rules: Rules,
        max_concurrent: int,
        max_cps: float,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        ready: Callable[[], bool] = lambda: True,
        on_change: Callable[[Call, tuple[Effect, ...]], None] = lambda call, effects: None,
        metrics: Metrics | None = None,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._dial = dial
        self._rules = rules
        self._max_concurrent = max_concurrent
        self._clock = clock
        self._new_id = new_id
        self._ready = ready
        self._on_change = on_change
        self._bucket = TokenBucket(max_cps, max(1.0, max_cps), asyncio.get_running_loop().time())
        self._wake = asyncio.Event()
        self._dials: set[asyncio.Task[None]] = set()

    def reload(self, *, rules: Rules, max_concurrent: int, max_cps: float) -> None:
        self._rules = rules
        self._max_concurrent = max_concurrent
        loop_now = asyncio.get_running_loop().time()
        self._bucket = TokenBucket(max_cps, max(1.0, max_cps), loop_now)
        self.wake()

    def wake(self) -> None:
        """New work, freed capacity or a reconnect: look at the database again now."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                delay = await self._step()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        # asyncio.timeout, not wait_for: on 3.11 wait_for loses a
                        # cancellation that arrives as the event is set.
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
        finally:
            for task in self._dials:
                task.cancel()
            await asyncio.gather(*self._dials, return_exceptions=True)

    async def _step(self) -> float:
        """Dispatch what may be dispatched now; return how long to sleep (0 = go again)."""
        if not self._ready():
            return MAX_SLEEP_S  # woken on (re)connect
        loop_now = asyncio.get_running_loop().time()
        tokens = self._bucket.available(loop_now)
        live = await self._writer(Store.count_live)
        free = self._max_concurrent - live
        if free <= 0:
            return MAX_SLEEP_S  # woken when an attempt ends
        if tokens <= 0:
            return self._bucket.wait_s()
        now = self._clock()
        due: dict[str, datetime] = {}  # call id -> its due time before the claim (dial lag)
        claimed = await self._writer(lambda store: self._claim(store, now, min(free, tokens), due))
        dialled = 0
        for call, effects in claimed:
            self._on_change(call, effects)
            for effect in effects:
                if isinstance(effect, Dial):
                    dialled += 1
                    if self._metrics is not None and call.id in due:
                        self._metrics.dialled(due[call.id], effect.attempt.started_at)
                    self._start_dial(call, effect.attempt)
        self._bucket.take(dialled)
        if claimed:
            return 0.0  # there may be more due right now
        next_due = await self._writer(Store.next_due_at)
        if next_due is None:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, (next_due - self._clock()).total_seconds()))

    def _claim(
        self, store: Store, now: datetime, limit: int, due: dict[str, datetime]
    ) -> list[tuple[Call, tuple[Effect, ...]]]:
        """In the writer thread: claim due calls, never one whose number is being rung.

        A person is never rung twice at once (invariant 1), even by two calls (two API
        requests, a CSV with the same number twice): such a call waits ``BUSY_NUMBER_WAIT``
        and is looked at again; the live call's end wakes the scheduler anyway.
        """
        busy = store.live_numbers()
        return store.claim_due(now, limit, self._dispatch(now, due, busy))

    def _dispatch(
        self, now: datetime, due: dict[str, datetime], busy: set[str]
    ) -> Callable[[Call], tuple[Call, tuple[Effect, ...]]]:
        def fn(call: Call) -> tuple[Call, tuple[Effect, ...]]:
            if call.to_number in busy:
                return advance(call, Defer(now, now + BUSY_NUMBER_WAIT), self._rules)
            # The claimed call no longer carries its due time (a dialled call has none):
            # note it here, in the claim, for the dial-lag histogram.
            if call.scheduled_at is not None:
                due[call.id] = call.scheduled_at
            new, effects = advance(call, Dispatch(now, self._new_id()), self._rules)
            if any(isinstance(effect, Dial) for effect in effects):
                busy.add(call.to_number)  # and not twice within this claim either
            return new, effects

        return fn

    def _start_dial(self, call: Call, attempt: Attempt) -> None:
        # Dials run as their own tasks so a slow Originate reply never holds up the next
        # claim; the attempt is already committed as `dialing` (invariant 2).
        task = asyncio.create_task(self._dial(call, attempt), name=f"dial-{attempt.id}")
        self._dials.add(task)
        task.add_done_callback(partial(self._dial_done, call.id, attempt.number))

    def _dial_done(self, call_id: str, number: int, task: asyncio.Task[None]) -> None:
        self._dials.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s attempt %s: dial task failed: %r", call_id, number, task.exception())
