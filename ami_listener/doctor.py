"""``autoretry check-config``: the doctor. One line per check, ``ok``, ``warn`` or ``FAIL``.

In order: the config file and what needs no network (``doctor_local``: targets, dialer,
spool, database, calling hours, api, secrets file), then, unless ``offline`` (before
Asterisk is up), a short AMI session (``doctor_ami``: login, may originate, receives the
events we need, target contexts exist) and a signed test event posted to the default
webhook URL, as the sender would post it. The caller exits non-zero iff a line is FAIL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import aiohttp

from .config import Settings, WebhooksSettings
from .core.execution import iso
from .doctor_ami import ami_checks
from .doctor_local import Check, local_checks
from .webhooks_http import check_url, safe_url
from .webhooks_sign import SIGNATURE_HEADER, sign

__all__ = ["TEST_EVENT_ID", "Check", "run_checks", "webhook_check"]

TEST_EVENT_ID = "evt_test_check_config"
"""The test event's id: receivers de-duplicate on ids, so it stays the same every run."""


def run_checks(
    path: Path,
    environ: Mapping[str, str],
    *,
    offline: bool = False,
    now: datetime | None = None,
) -> list[Check]:
    """Every check on the config at ``path``; ``now`` dates the test event (default:
    the clock). Runs its own event loop: call it from synchronous code."""
    settings, checks = local_checks(path, environ)
    if settings is None:
        return checks
    if offline:
        url = settings.webhooks.url
        checks.append(
            Check(
                "ok",
                "webhooks",
                f"{safe_url(url)} (not posted: --offline)" if url else "no default URL",
            )
        )
        return checks
    return checks + asyncio.run(_network_checks(settings, now or datetime.now(UTC)))


async def _network_checks(settings: Settings, now: datetime) -> list[Check]:
    # One after the other: the lines keep their order, and each step has its own timeout.
    checks = await ami_checks(settings)
    checks.append(await webhook_check(settings.webhooks, now))
    return checks


def _user_agent() -> str:
    try:
        version = metadata.version("asterisk-autoretry")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"asterisk-autoretry/{version}"


async def webhook_check(settings: WebhooksSettings, now: datetime) -> Check:
    """POST a signed ``test`` event to the default URL with the sender's headers."""
    url = settings.url
    if url is None:
        return Check("ok", "webhooks", "no default URL")
    problem = check_url(url, frozenset(h.lower() for h in settings.allow_hosts))
    if problem is not None:
        return Check("FAIL", "webhooks", f"{problem}: fix [webhooks].url")
    where = safe_url(url)
    event = {
        "id": TEST_EVENT_ID,
        "status": "test",
        "message": "test event from autoretry check-config; answer 2xx",
        "created_at": iso(now),
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _user_agent(),
        "X-Autoretry-Event-Id": TEST_EVENT_ID,
        "X-Autoretry-Event": "test",
    }
    secret = settings.secret.get_secret_value().encode() if settings.secret else None
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body, int(now.timestamp()))
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as resp,
        ):
            status = resp.status
    except TimeoutError:
        error = f"no answer within {settings.timeout_s:g} s ([webhooks].timeout_s)"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # Not str(exc) of an InvalidURL: it is the URL, whose query may carry a token.
        text = "invalid URL" if isinstance(exc, aiohttp.InvalidURL) else str(exc)
        error = f"{type(exc).__name__}: {' '.join(text.split())[:200]}"
    else:
        if 200 <= status < 300:
            if secret is None:
                detail = f"{where} accepted an UNSIGNED test event: set [webhooks].secret"
                return Check("warn", "webhooks", detail)
            return Check("ok", "webhooks", f"{where} accepted a signed test event ({status})")
        return Check(
            "FAIL",
            "webhooks",
            f"{where} answered HTTP {status} to a test event: it must answer 2xx "
            "(a redirect is not followed); see the receiver's log",
        )
    return Check(
        "FAIL",
        "webhooks",
        f"cannot post to {where}: {error}: is the receiver up and [webhooks].url right?",
    )
