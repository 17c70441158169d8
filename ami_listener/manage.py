"""The daemon's side of the "manage" hook: a failed call someone else placed becomes ours.

``agi_handlers.manage_hook`` publishes ``UserEvent: AutoretryManage`` after a failed
Dial() in another application's outbound route. ``call_from_manage_event`` turns that
event into a new call whose first attempt is the failed external call (already over,
classified like any of ours) and whose status is what lifecycle and policy decide, so
the scheduler retries it under the named retry profile. No I/O, no clock: the daemon
passes ``now`` and commits the result with ``Store.create_call``.

Everything in the event came through the dialplan from outside and is validated here:
the profile and target must exist in the config, the number must pass the same check
as an API call, and the attempt id is the channel's Uniqueid reduced to a safe alphabet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

import pydantic

from .agi_handlers import MANAGE_EVENT
from .config import Settings
from .core.lifecycle import (
    AttemptEnded,
    Dial,
    Dispatch,
    Effect,
    Notify,
    advance,
    new_call,
)
from .core.models import Call, CallRequest, normalize_number
from .core.outcomes import AttemptFacts, cause_text, classify
from .core.policy import Rules
from .errors import ValidationError

_UNIQUEID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 4 else None


def _field(msg: Mapping[str, str], key: str) -> str:
    return (msg.get(key) or "").strip()


def call_from_manage_event(
    msg: Mapping[str, str],
    settings: Settings,
    now: datetime,
    new_id: Callable[[], str],
    *,
    rules: Rules | None = None,
) -> tuple[Call, tuple[Effect, ...]] | None:
    """The call to create for an ``AutoretryManage`` UserEvent, with its effects.

    None when there is nothing to manage (not that event, or the call was answered).
    Raises ``ValidationError`` (``field`` = the event header) for an event we must not
    act on: unknown profile or target, invalid number, no usable Uniqueid or DIALSTATUS.
    ``rules`` defaults to ``settings.rules()`` (no jitter: pass the daemon's rules).
    Effects: the ``Notify`` of each status the call passed through and the retry's
    ``Schedule``; never a ``Dial`` (the first attempt was dialled by someone else).
    """
    if msg.get("Event") != "UserEvent" or msg.get("UserEvent") != MANAGE_EVENT:
        return None
    dial_status = _field(msg, "DIALSTATUS").upper()
    if dial_status == "ANSWER":
        return None
    if not dial_status.isalpha():
        raise ValidationError("no usable DIALSTATUS", field="DIALSTATUS")
    profile = settings.profiles.get(_field(msg, "PROFILE"))
    if profile is None:
        raise ValidationError("unknown retry profile", field="PROFILE")
    target_name = _field(msg, "TARGET") or _only(settings.targets)
    target = settings.targets.get(target_name)
    if target is None:
        raise ValidationError("unknown target (and more than one configured)", field="TARGET")
    uniqueid = _UNIQUEID_UNSAFE.sub("", _field(msg, "Uniqueid"))[:80]
    if not uniqueid or uniqueid == "unknown":
        raise ValidationError("no usable Uniqueid", field="Uniqueid")
    pattern = settings.dialer.number_pattern
    try:
        number = normalize_number(_field(msg, "NUMBER"), allow_pattern=pattern)
    except ValueError as exc:
        raise ValidationError(str(exc), field="NUMBER") from None
    context = {"number_pattern": pattern, "max_retries_limit": settings.dialer.max_retries_limit}
    data = {
        "agent_id": target_name,
        "recipient_phone_number": number,
        "from_phone_number": _caller(msg, pattern),
        "retry_config": profile,
    }
    try:
        request = CallRequest.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"not a valid call: {exc.error_count()} error(s)") from None

    cause = _int(msg.get("HANGUPCAUSE"))
    facts = AttemptFacts(
        cause=cause,
        cause_txt=cause_text(cause) if cause is not None else None,
        tech_cause=_int(msg.get("TECHCAUSE")),
        dial_status=dial_status,
        trunk=target.trunk,
    )
    outcome = classify(facts, settings.cause_overrides())
    if outcome.answered:
        return None
    call, created = new_call(new_id(), request, now)
    # The first dial already happened: no calling window applies to it (Rules()).
    call, started = advance(call, Dispatch(now, uniqueid), Rules())
    call, ended = advance(
        call, AttemptEnded(now, uniqueid, outcome, uniqueid), rules or settings.rules()
    )
    # Keep each status's Notify (one outbox event per status change) and the retry's
    # Schedule; drop new_call's "due now" Schedule and the Dial of a call already made.
    effects = (*(e for e in created if isinstance(e, Notify)), *started, *ended)
    return call, tuple(e for e in effects if not isinstance(e, Dial))


def _only(names: Mapping[str, object]) -> str:
    return next(iter(names)) if len(names) == 1 else ""


def _caller(msg: Mapping[str, str], pattern: re.Pattern[str] | None) -> str | None:
    """The caller id the other software used, when it is a valid number (kept for retries)."""
    try:
        return normalize_number(_field(msg, "CallerIDNum"), allow_pattern=pattern)
    except ValueError:
        return None
