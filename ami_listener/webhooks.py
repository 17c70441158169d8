"""Webhook delivery: drain the outbox, POST each event, record what happened.

The store commits each status change with its outbox event; this module only reads the
due events and writes results, so a crash at any point loses nothing: an event is pending
until a 2xx is committed (at-least-once; receivers de-duplicate on the event id).

Order per call: ``outbox_due`` returns only each call's oldest pending event, and a call
stays *busy* here from the moment its event is sent until the result is committed, so the
next event of a call is fetched only after the previous one is settled. Calls are
independent of each other: up to ``concurrency`` are in flight at once.

Throughput (bench/webhooks.py): due events are read ahead in batches into a queue that
``concurrency`` long-lived workers take from (a few first when idle, so that the workers
start at once), skipping the calls already in hand; results are committed in batches
(``outbox_settle``, one transaction for those that came in within ``LINGER_S``), because
a commit costs a few hundred microseconds of CPU (and an fsync) however little it holds.
Both are one trip to the database thread, and each trip runs a handful of statements
whatever it holds (``store_outbox``): that thread gives up the GIL around every SQLite
step and must win it back from this loop, so a statement per event would cost a GIL
round trip per event. Signatures come from precomputed hash states (``Signer``). Request
timeouts are one watchdog task's (``webhooks_deadline``), not an aiohttp timer each.

Failures (non-2xx, timeouts, connection errors; a 3xx too: redirects are not followed)
are retried with backoff until the event is ``max_age_s`` old (``webhooks_retry``). At a
clean stop, ``drain`` lets the requests on the wire get their answer (``webhooks_run``).

Events with no destination (no call or batch URL, no default) are marked delivered with
``last_error = "no webhook URL"``: there was nowhere to send them, and keeping them
pending would block their call's later events for nothing. Events whose URL is not
http(s) or whose host is not in ``allow_hosts`` are dead at once, with the reason.

aiohttp's errors are caught here and become ``last_error`` text; URLs are logged as
scheme://host:port only (a query string may carry a token), the secret never.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import metadata

import aiohttp

from .config_sections import WebhooksSettings
from .metrics import Metrics
from .store import OutboxEvent, Store
from .store_outbox import Settlement
from .webhooks_deadline import Deadlines
from .webhooks_http import check_url, safe_url
from .webhooks_post import NO_TIMEOUT, NO_URL, Posting
from .webhooks_retry import RetryPolicy
from .webhooks_run import DONE_CALL_ID, DONE_RESULT, OnSettled, RunBookkeeping
from .webhooks_sign import Signer, sign, verify
from .writer import Writer

__all__ = ["NO_URL", "WebhookSender", "check_url", "safe_url", "sign", "verify"]

log = logging.getLogger(__name__)

PREFETCH_MIN = 1024  # due events read per query, at least
LINGER_S = 0.02  # how long a result may wait for others to share its commit (and fsync)
POLL_S = 30.0  # re-read the outbox at least this often: the CLI's replay cannot wake us
_EVERYTHING = datetime.max.replace(tzinfo=UTC)  # outbox_due(now=this): also the not-yet-due


def _version() -> str:
    try:
        return metadata.version("asterisk-autoretry")
    except metadata.PackageNotFoundError:
        return "unknown"


def _signer(settings: WebhooksSettings) -> Signer | None:
    secret = settings.secret
    return Signer(secret.get_secret_value().encode()) if secret else None


class WebhookSender(Posting, RetryPolicy, RunBookkeeping):
    def __init__(
        self,
        writer: Writer,
        settings: WebhooksSettings,
        *,
        clock: Callable[[], datetime],
        rng: Callable[[], float],
        session: aiohttp.ClientSession | None = None,
        on_settled: OnSettled | None = None,
        poll_s: float = POLL_S,
        metrics: Metrics | None = None,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._session = session
        self._on_settled = on_settled
        self._poll_s = poll_s
        self._signer = _signer(settings)
        self._allow = frozenset(h.lower() for h in settings.allow_hosts)
        self._max_age = timedelta(seconds=settings.max_age_s)
        self._user_agent = f"asterisk-autoretry/{_version()}"
        self._static: dict[str, str] = {}  # headers the session does not add itself
        self._deadlines: Deadlines  # made by run(), in the running loop
        self._poke = asyncio.Event()
        self._answered = asyncio.Event()  # a worker finished a request
        self._stopping = False
        self._busy: set[str] = set()  # calls with an event in flight or its result unwritten
        self._in_flight = 0
        self._checked: dict[str, str | None] = {}  # url -> check_url(url)
        self._ready: deque[OutboxEvent] = deque()  # read ahead: due, their calls busy
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for an event
        self._done: list[tuple[str, Settlement]] = []  # (call id, result) not yet committed
        self.delivered = 0  # events acknowledged with a 2xx
        self.failed = 0  # failed attempts (each non-2xx, timeout or network error)
        self.dead = 0  # events given up on

    def reload(self, settings: WebhooksSettings) -> None:
        """New URL, secret, allow-list, timeout and age apply to the next delivery
        (``concurrency`` keeps its value until a restart: the workers are running)."""
        self._settings = settings
        self._signer = _signer(settings)
        self._allow = frozenset(h.lower() for h in settings.allow_hosts)
        self._max_age = timedelta(seconds=settings.max_age_s)
        self._checked.clear()
        self.wake()

    def wake(self) -> None:
        """New events were committed (or replayed): look at the outbox now."""
        self._poke.set()

    async def run(self) -> None:
        """Deliver until cancelled. Results in hand when cancelled are still written."""
        self._log_start()
        s = self._settings
        self._busy.clear()  # a second run() (after a cancel) starts from the database
        self._ready = deque()
        self._idle = deque()
        self._stopping = False
        session = self._session
        owned = session is None
        if session is None:
            connector = aiohttp.TCPConnector(limit=s.concurrency)
            # The static header is the session's: aiohttp copies a session's headers in C,
            # and runs two Python loops per header passed with a request (~4k instructions
            # each, bench/webhooks.py's client measured under callgrind).
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=NO_TIMEOUT,  # Deadlines enforces timeout_s
                headers={"User-Agent": self._user_agent},
            )
        self._static = {} if owned else {"User-Agent": self._user_agent}
        # Long-lived workers, not a task per event: they take events from the queue the
        # pump fills, so a slot is refilled at once, without waiting for the next commit.
        self._deadlines = Deadlines(s.concurrency, s.timeout_s)
        workers = [
            asyncio.create_task(self._work(session, i), name=f"webhook worker {i}")
            for i in range(s.concurrency)
        ]
        workers.append(asyncio.create_task(self._deadlines.watch(), name="webhook deadlines"))
        try:
            await self._pump()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._flush()
            if owned:
                await session.close()

    async def _pump(self) -> None:
        concurrency = self._settings.concurrency
        batch = max(PREFETCH_MIN, 4 * concurrency)
        next_at: datetime | None = None
        while True:
            if (
                self._done
                and self._in_flight
                and len(self._done) < batch // 4
                and len(self._ready) >= batch // 4
            ):
                # More results are on their way: let them share this commit. A commit
                # costs ~0.5 ms of CPU whatever it holds, taken from the receiver's and
                # the loop's share of the machine; the calls wait LINGER_S longer. Not
                # when the queue runs low: the trip also refills it.
                await asyncio.sleep(LINGER_S)
            self._poke.clear()  # before reading: a wake from here on is not lost
            done, self._done = self._done, []
            # Read ahead while the queue is low (see the module's docstring), past the calls
            # with an event in hand (their heads are those events; the ones in ``done`` are
            # settled first, in the same trip, and their next events may come).
            queued = len(self._ready)
            want = batch - queued if queued < batch // 2 else 0
            # Ramp up: at most 4x what is queued (a few when idle), so the workers start at
            # once and each read takes less time than the queue lasts (a full batch takes
            # milliseconds); the next read follows at once.
            ramp = want > max(4 * concurrency, 4 * queued)
            if ramp:
                want = max(4 * concurrency, 4 * queued)
            skip = self._busy.difference(map(DONE_CALL_ID, done)) if want else ()
            # Shielded: a stop while this is queued for the database thread must not drop
            # the results taken out of self._done (they would be sent again after a restart).
            events = await asyncio.shield(
                self._writer(partial(_settle_and_fetch, done=done, limit=want, skip=skip))
            )
            self._settled(done)
            if want:
                next_at = self._queue(events) if not self._stopping else None
            # A full read of due events ramps on at once. One that reached events not yet
            # due does not: the sender waits for the soonest (reading them again at once
            # would spin while heads sit in backoff).
            ramp_on = ramp and len(events) == want and next_at is None and not self._stopping
            if self._done or ramp_on:
                continue
            timeout = self._poll_s
            if next_at is not None:
                timeout = min(timeout, max(0.0, (next_at - self._clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation
                # that arrives as the event is set, and shutdown would hang here.
                async with asyncio.timeout(timeout):
                    await self._poke.wait()

    def _queue(self, events: list[OutboxEvent]) -> datetime | None:
        """Hand the due ones of ``events`` (sorted by next_at) to the workers; the first
        instant not yet due, if any."""
        busy, ready, now = self._busy, self._ready, self._clock()
        soonest = None
        for event in events:
            call_id = event.call_id
            if call_id in busy:
                continue
            if event.next_at > now:
                soonest = event.next_at  # sorted by next_at: the first is the soonest
                break
            busy.add(call_id)
            ready.append(event)
        # Wake as many idle workers as there are events (a deque and futures, not an
        # asyncio.Queue: its put and get cost ~90 bytecodes an event on this loop).
        idle, waking = self._idle, len(ready)
        while idle and waking:
            waiter = idle.popleft()
            if not waiter.done():  # its worker was cancelled
                waiter.set_result(None)
                waking -= 1
        return soonest

    async def _work(self, session: aiohttp.ClientSession, slot: int) -> None:
        ready, idle = self._ready, self._idle
        loop = asyncio.get_running_loop()
        self._deadlines.bind(slot)
        while True:
            if not ready:
                waiter = loop.create_future()
                idle.append(waiter)
                await waiter
                continue
            event = ready.popleft()
            self._in_flight += 1
            try:
                result = await self._attempt(session, event, slot)
            except Exception as exc:  # a bug here must not stall the call's events
                log.exception("webhook %s: unexpected error", event.id)
                result = self._failure(event, f"internal error: {type(exc).__name__}")
            finally:
                self._in_flight -= 1
            self._done.append((event.call_id, result))
            self._poke.set()
            if self._stopping:  # drain() is waiting for the requests on the wire
                self._answered.set()


def _settle_and_fetch(
    store: Store, *, done: list[tuple[str, Settlement]], limit: int, skip: Collection[str]
) -> list[OutboxEvent]:
    # One trip to the database thread, one transaction: write the results in, read what
    # is next.
    return store.outbox_settle_and_due(list(map(DONE_RESULT, done)), _EVERYTHING, limit, skip=skip)
