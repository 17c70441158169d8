"""The engine's side of the manage hook: commit, once, the call a dialplan handed over.

``manage.call_from_manage_event`` validates an ``AutoretryManage`` UserEvent and builds the
call (no I/O); this commits it, keyed on the event's Uniqueid, and counts its attempt.
Separate from ``engine`` because it is an input of its own: it has no attempt of ours in
flight and goes through ``Store.create_call``, not the lifecycle of a call we dialled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .config import Settings
from .core.lifecycle import Effect, Schedule
from .core.models import Call
from .core.policy import Rules
from .errors import ValidationError
from .manage import call_from_manage_event
from .metrics import Metrics
from .writer import Writer

# The engine's logger: these lines kept the name they had when this code was in ``engine``.
log = logging.getLogger("ami_listener.engine")


@dataclass(frozen=True, slots=True)
class ManageRequest:
    """A dialplan handed us a failed call of other software (UserEvent AutoretryManage)."""

    msg: Mapping[str, str]


async def take_over(
    msg: Mapping[str, str],
    *,
    settings: Settings,
    rules: Rules,
    now: datetime,
    new_id: Callable[[], str],
    writer: Writer,
    metrics: Metrics | None,
) -> tuple[Call, tuple[Effect, ...]] | None:
    """The call committed for ``msg`` and its effects; None when none was created (an
    invalid event, an answered call, or an event already taken over)."""
    try:
        made = call_from_manage_event(msg, settings, now, new_id, rules=rules)
    except ValidationError as exc:
        log.warning("manage hook event ignored: %s (%s)", exc, exc.field)
        return None
    if made is None:
        return None
    call, effects = made
    # A repeated event (the hook re-run, an AMI replay) must not create a second call.
    key = f"manage:{msg.get('Uniqueid')}"
    stored, created = await writer(
        lambda store: store.create_call(call, effects, idempotency_key=key)
    )
    if not created:
        return None
    log.info("call %s: handed over by the dialplan (%s)", stored.id, msg.get("PROFILE"))
    if metrics is not None and stored.last_attempt is not None:
        retried = any(isinstance(e, Schedule) for e in effects)
        metrics.attempt_ended(stored.last_attempt, retried=retried)
    return stored, effects
