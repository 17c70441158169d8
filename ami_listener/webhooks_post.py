"""One delivery attempt: ``Posting._attempt``, a part of ``WebhookSender``.

The POST of one event and what its answer means: where it goes (the call's URL, its
batch's, the default; refused if not http(s) or not in ``allow_hosts``), its headers and
signature, its deadline (``webhooks_deadline``: one watchdog task, not an aiohttp timer
per request), and the ``Settlement`` it ends in. aiohttp's errors end here, as
``last_error`` text. Separate from webhooks.py, which reads the outbox ahead, runs the
workers and commits their results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import aiohttp

from .config_sections import WebhooksSettings
from .store_events import OutboxEvent, Settlement
from .webhooks_deadline import Deadlines
from .webhooks_http import check_url, describe_error, drain_body, safe_url
from .webhooks_sign import SIGNATURE_HEADER, Signer

# The sender's logger: these lines kept the name they had when this code was in ``webhooks``.
log = logging.getLogger("ami_listener.webhooks")

URL_CACHE_MAX = 4096
NO_URL = "no webhook URL"
NO_TIMEOUT = aiohttp.ClientTimeout()  # no aiohttp timer per request: see webhooks_deadline


class Posting:
    """``_attempt``: one event's POST and its result (see the module doc)."""

    _settings: WebhooksSettings
    _clock: Callable[[], datetime]
    _checked: dict[str, str | None]
    _allow: frozenset[str]
    _static: dict[str, str]
    _signer: Signer | None
    _deadlines: Deadlines

    if TYPE_CHECKING:  # RetryPolicy's (a stub here would shadow it at run time)

        def _failure(self, event: OutboxEvent, error: str) -> Settlement: ...

    async def _attempt(
        self, session: aiohttp.ClientSession, event: OutboxEvent, slot: int
    ) -> Settlement:
        url = event.webhook_url or self._settings.url
        if url is None:
            return Settlement(event.id, "delivered", self._clock(), NO_URL, attempted=False)
        problem = self._checked.get(url, "")
        if problem == "":  # not seen yet; URLs repeat (a batch's, the default), parsing costs
            if len(self._checked) >= URL_CACHE_MAX:
                self._checked.clear()
            problem = self._checked[url] = check_url(url, self._allow)
        if problem is not None:
            log.error("webhook %s is dead: %s", event.id, problem)
            return Settlement(event.id, "dead", self._clock(), problem)
        body = event.payload.encode()
        headers = {
            **self._static,
            "X-Autoretry-Event-Id": event.id,
            "X-Autoretry-Event": event.status,
        }
        if self._signer is not None:
            headers[SIGNATURE_HEADER] = self._signer(body, int(self._clock().timestamp()))
        # Content-Type comes with the body (a header less to loop over, as above).
        data = aiohttp.BytesPayload(body, content_type="application/json")
        timeout_s = self._settings.timeout_s
        deadlines = self._deadlines
        timed_out = False
        deadlines.start(slot, timeout_s)  # no await from here to the request
        try:
            try:
                async with session.post(
                    url, data=data, headers=headers, allow_redirects=False, timeout=NO_TIMEOUT
                ) as resp:
                    await drain_body(resp)
                    status = resp.status
            finally:
                timed_out = deadlines.end(slot)
        except asyncio.CancelledError:
            if not timed_out:
                raise  # a stop
            error = describe_error(TimeoutError(), timeout_s)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            error = describe_error(exc, timeout_s)
        else:
            if 200 <= status < 300:
                return Settlement(event.id, "delivered", self._clock())
            error = f"HTTP {status}"
        log.warning("webhook %s to %s failed: %s", event.id, safe_url(url), error)
        return self._failure(event, error)
