"""What a failed delivery becomes: ``RetryPolicy``, a part of ``WebhookSender``.

Failures (non-2xx, timeouts, connection errors; redirects are not followed, so a 3xx is a
failure) are retried with exponential backoff and full jitter, 1 s, 2 s, 4 s ... capped at
5 minutes, until the event is ``max_age_s`` old; the last try is made at that age, then
the event is dead (``autoretry webhooks list --state dead``, ``... replay``). A replayed
event older than ``max_age_s`` gets one try per replay.

Separate from webhooks.py and webhooks_post, which keep the per-event path (read ahead,
workers, the POST):
this runs only for an event that failed, and is the policy one reads or tunes on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from .store_events import OutboxEvent, Settlement

# The sender's logger: these lines kept the name they had when this code was in ``webhooks``.
log = logging.getLogger("ami_listener.webhooks")

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
MIN_BACKOFF_S = 0.1  # full jitter may draw ~0: never hammer a failing receiver in a loop


class RetryPolicy:
    """``_failure``: retry later with backoff, or dead (see the module doc)."""

    _clock: Callable[[], datetime]
    _rng: Callable[[], float]
    _max_age: timedelta

    def _failure(self, event: OutboxEvent, error: str) -> Settlement:
        """Retry later with backoff, or dead once the event has reached max age."""
        now = self._clock()
        deadline = event.created_at + self._max_age
        if now >= deadline:
            log.error(
                "webhook %s is dead after %d attempts: %s", event.id, event.attempts + 1, error
            )
            return Settlement(event.id, "dead", now, error)
        ceiling = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** min(event.attempts, 30))
        delay = timedelta(seconds=max(MIN_BACKOFF_S, ceiling * self._rng()))
        return Settlement(event.id, "pending", min(now + delay, deadline), error)
