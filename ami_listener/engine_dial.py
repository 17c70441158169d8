"""How an attempt goes out to Asterisk: the request built from the configured target and
dialer, sent as an AMI Originate or as a call file in the spool.

Separate from ``engine``, which decides what to follow and commits what comes back: this is
the outgoing half, settings in and a dial out, with no state of its own. ``engine`` turns
what it raises into an ``error`` outcome: ``ValueError`` for a call that cannot be dialled
as configured, ``AmiError`` / ``SpoolError`` for a dial refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from .ami import AmiClient
from .config import Settings
from .config_sections import DialerSettings
from .core.callfile import render
from .core.dialing import DialRequest, Target, build_request, originate_headers
from .core.models import Attempt, Call
from .errors import AmiError
from .spool import write_callfile


def dial_request(settings: Settings, call: Call, attempt: Attempt) -> DialRequest:
    """The validated dial of ``attempt`` to its call's target; ValueError if there is none."""
    dialer = settings.dialer
    target_settings = settings.targets.get(call.target)
    if target_settings is None:
        raise ValueError(f"target {call.target!r} is not configured")
    target = Target(
        context=target_settings.context,
        extension=target_settings.extension,
        priority=target_settings.priority,
        application=target_settings.application,
        data=target_settings.data,
    )
    return build_request(
        call,
        attempt,
        template=dialer.channel,
        target=target,
        ring_timeout_s=dialer.ring_timeout_s,
        caller_id=dialer.caller_id,
    )


async def send_dial(dialer: DialerSettings, ami: AmiClient | None, request: DialRequest) -> None:
    """Write the call file, or send the Originate (its outcome comes later, as events)."""
    if dialer.method == "callfile":
        await asyncio.to_thread(
            write_callfile,
            dialer.spool_dir,
            request.attempt_id,
            render(request),
            owner=dialer.asterisk_user,
        )
    else:
        if ami is None:
            raise AmiError("no AMI connection configured")
        await ami.originate(originate_headers(request))


def callfile_pending(dialer: DialerSettings, attempt_id: str) -> bool:
    """The attempt's call file is still in the spool, waiting for Asterisk to dial it."""
    return (
        dialer.method == "callfile"
        and (Path(dialer.spool_dir) / "outgoing" / f"{attempt_id}.call").exists()
    )
