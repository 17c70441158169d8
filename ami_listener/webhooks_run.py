"""The sender's bookkeeping around the per-event path: ``RunBookkeeping``, a part of
``WebhookSender``.

``_log_start`` says how the sender runs (once per ``run()``). ``_settled`` counts committed
results and hands them on (metrics, ``on_settled``), once per trip to the database, not
per event. ``drain`` and ``_flush`` run at a clean stop: let the requests on the wire get
their answer, then write the results in hand, so an event the receiver acknowledged is
not sent again after the restart.

Separate from webhooks.py, which keeps the per-event path (read ahead, workers, their
ordering and batching; the POST is in webhooks_post): nothing here runs per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from operator import itemgetter

from .config_sections import WebhooksSettings
from .metrics import Metrics
from .store_events import OutboxEvent, Settlement
from .webhooks_http import safe_url
from .webhooks_sign import Signer
from .writer import Writer

# The sender's logger: these lines kept the name they had when this code was in ``webhooks``.
log = logging.getLogger("ami_listener.webhooks")

OnSettled = Callable[[Settlement], None]
DONE_CALL_ID, DONE_RESULT = itemgetter(0), itemgetter(1)  # of the (call id, result) in _done
_STATE_ATTEMPTED = itemgetter(1, 4)  # Settlement's state and attempted


class RunBookkeeping:
    """The start-up log, counting committed results, stopping (see the module doc)."""

    _settings: WebhooksSettings
    _signer: Signer | None
    _writer: Writer
    _metrics: Metrics | None
    _on_settled: OnSettled | None
    _answered: asyncio.Event
    _stopping: bool
    _busy: set[str]
    _in_flight: int
    _ready: deque[OutboxEvent]
    _done: list[tuple[str, Settlement]]
    delivered: int
    failed: int
    dead: int

    def _log_start(self) -> None:
        s = self._settings
        log.info(
            "webhooks: default URL %s, %d at once, timeout %g s, give up after %g s",
            safe_url(s.url) if s.url else "none",
            s.concurrency,
            s.timeout_s,
            s.max_age_s,
        )
        if self._signer is None:
            log.warning("webhooks: no secret configured, deliveries are sent UNSIGNED")

    async def drain(self, timeout_s: float) -> None:
        """Before a clean stop: send nothing new, let requests on the wire get their answer
        (at most ``timeout_s``), so that an event the receiver acknowledged is recorded as
        delivered and not sent again after the restart. Then cancel ``run()``: it writes
        the results in hand."""
        self._stopping = True
        while self._ready:  # taken from the outbox but not sent: stay pending
            self._busy.discard(self._ready.popleft().call_id)
        try:
            async with asyncio.timeout(timeout_s):
                while self._in_flight:
                    self._answered.clear()
                    await self._answered.wait()
        except TimeoutError:
            log.warning("webhooks: stopping with %d requests unanswered", self._in_flight)

    def _settled(self, done: list[tuple[str, Settlement]]) -> None:
        # Counted by (state, attempted) in C: a trip settles hundreds of results, nearly
        # all alike, and a Python loop over them cost ~40 bytecodes a result on the loop.
        self._busy.difference_update(map(DONE_CALL_ID, done))
        for (state, attempted), n in Counter(map(_STATE_ATTEMPTED, map(DONE_RESULT, done))).items():
            if state == "delivered":
                self.delivered += n * attempted
            else:
                self.failed += n
                self.dead += n * (state == "dead")
            if self._metrics is not None:
                self._metrics.webhook_settled(state, attempted, n)
        if self._on_settled is not None:
            for _, result in done:
                self._on_settled(result)

    async def _flush(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            await self._writer(lambda store: store.outbox_settle([r for _, r in done]))
        except Exception as exc:  # shutting down: say what it means, do not mask the cause
            log.warning(
                "webhooks: %d results not recorded (%s); those events will be sent again",
                len(done),
                type(exc).__name__,
            )
            return
        self._settled(done)
