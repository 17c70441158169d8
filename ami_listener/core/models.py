"""The values the rest of the program passes around.

Here: the status enums and ``Call``/``Attempt``. These are frozen dataclasses: they are
built by the store and by ``lifecycle.advance`` from already-validated data, millions of
times on hot paths, so they skip validation. The pydantic input models (``RetryConfig``,
``CallRequest``), which validate what came from outside, live in ``inputs``, and the
phone-number and channel-variable checks in ``validation``; both are re-exported here so
that importers need only this module. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from .inputs import (
    BOLNA_MAX_RETRIES,
    MAX_INTERVAL_MINUTES,
    VOICEMAIL,
    CallRequest,
    PhoneNumber,
    RetryableStatus,
    RetryConfig,
)
from .validation import (
    CONTROL_CHARS,
    MAX_VARIABLE_VALUE,
    VARIABLE_NAME,
    check_variable,
    normalize_number,
)

__all__ = [
    "BOLNA_MAX_RETRIES",
    "CONTROL_CHARS",
    "FINAL_STATUSES",
    "LIVE_ATTEMPT_STATUSES",
    "LIVE_STATUSES",
    "MAX_INTERVAL_MINUTES",
    "MAX_VARIABLE_VALUE",
    "PENDING_STATUSES",
    "VARIABLE_NAME",
    "VOICEMAIL",
    "Attempt",
    "AttemptStatus",
    "Call",
    "CallRequest",
    "CallStatus",
    "OutcomeStatus",
    "PhoneNumber",
    "RetryConfig",
    "RetryableStatus",
    "check_variable",
    "evolve",
    "normalize_number",
]


class CallStatus(StrEnum):
    """A call's (Bolna: execution's) status. Values are Bolna's strings."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RESCHEDULED = "rescheduled"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    CALL_DISCONNECTED = "call-disconnected"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"
    STOPPED = "stopped"
    ERROR = "error"


PENDING_STATUSES = frozenset({CallStatus.QUEUED, CallStatus.SCHEDULED, CallStatus.RESCHEDULED})
"""Waiting for a dial at ``scheduled_at``; the scheduler claims calls in these statuses."""

LIVE_STATUSES = frozenset({CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS})
"""An attempt is on the wire."""

FINAL_STATUSES = frozenset(set(CallStatus) - PENDING_STATUSES - LIVE_STATUSES)


class AttemptStatus(StrEnum):
    """One dial attempt. ``dialing``/``ringing``/``in-progress`` are live, the rest final."""

    DIALING = "dialing"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"


LIVE_ATTEMPT_STATUSES = frozenset(
    {AttemptStatus.DIALING, AttemptStatus.RINGING, AttemptStatus.IN_PROGRESS}
)


class OutcomeStatus(StrEnum):
    """What one finished attempt amounted to (``outcomes.classify``)."""

    COMPLETED = "completed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One dial of a call. ``id`` is ours: ActionID, ChannelId and channel variable."""

    id: str
    call_id: str
    number: int  # 1 for the first dial, 2 for the first retry, ...
    status: AttemptStatus
    started_at: datetime
    ended_at: datetime | None = None
    answered_at: datetime | None = None
    cause: int | None = None  # Q.850 cause of the far-end leg
    cause_txt: str | None = None
    tech_cause: int | None = None  # SIP status code, when Asterisk gives it
    dial_status: str | None = None  # DialEnd DialStatus / DIALSTATUS
    originate_reason: int | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    answered_by_voice_mail: bool = False
    permanent: bool = False
    reason: str | None = None  # short human reason ("SIP 486 / Q.850 17 User busy")
    decision: str | None = None  # what the policy decided after this attempt, and why
    uniqueid: str | None = None  # Asterisk Uniqueid of the far-end leg (provider_call_id)

    @property
    def live(self) -> bool:
        return self.status in LIVE_ATTEMPT_STATUSES


@dataclass(frozen=True, slots=True)
class Call:
    """A call (Bolna: execution) and its attempts, oldest first."""

    id: str
    target: str  # Bolna agent_id: the configured dial target
    to_number: str
    status: CallStatus
    retry_config: RetryConfig
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None  # next dial (pending) or None
    from_number: str | None = None
    retry_count: int = 0  # retries dialled or planned (first attempt is not a retry)
    variables: dict[str, str] = field(default_factory=dict)
    batch_id: str | None = None
    webhook_url: str | None = None
    bypass_call_guardrails: bool = False
    answered_by_voice_mail: bool = False
    error_message: str | None = None
    timezone: str | None = None  # recipient's IANA zone, when known
    cancel_requested: str | None = None  # "canceled"/"stopped" while an attempt is live
    attempts: tuple[Attempt, ...] = ()

    @property
    def live_attempt(self) -> Attempt | None:
        for attempt in reversed(self.attempts):
            if attempt.live:
                return attempt
        return None

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


# ``evolve(obj, **changes)`` is ``dataclasses.replace`` for ``Call`` and ``Attempt``, at
# about a third of its cost: replace calls the frozen ``__init__``, which sets each field
# through ``object.__setattr__``; evolve fills the slots of a bare instance directly.
# Every state change makes two to four of these, on the write path. The type checker
# sees ``dataclasses.replace`` itself, so it still checks field names and types.
_T = TypeVar("_T")
_Plan = tuple[tuple[str, Callable[[Any, Any], None], Callable[[Any], Any]], ...]


def _plan(cls: type) -> _Plan:
    """How to copy ``cls`` slot by slot; only for classes where that equals ``replace``."""
    if hasattr(cls, "__post_init__") or not all(f.init for f in fields(cls)):
        raise TypeError(f"{cls.__name__}: evolve would skip __post_init__ or init=False")
    return tuple(
        (f.name, getattr(cls, f.name).__set__, getattr(cls, f.name).__get__) for f in fields(cls)
    )


_PLANS: dict[type, _Plan] = {Call: _plan(Call), Attempt: _plan(Attempt)}

if TYPE_CHECKING:
    from dataclasses import replace as evolve
else:

    def evolve(obj: _T, /, **changes: Any) -> _T:
        plan = _PLANS.get(type(obj))
        if plan is None:
            return replace(obj, **changes)
        new = object.__new__(type(obj))
        for name, put, get in plan:
            put(new, changes.pop(name) if name in changes else get(obj))
        if changes:
            raise TypeError(f"{type(obj).__name__} has no field {', '.join(sorted(changes))}")
        return new
