"""What ``lifecycle.advance`` takes and gives back: the events and the effects.

An event is something that happened to a call (the scheduler claimed it, the far end rang
or answered, the attempt ended, someone cancelled); an effect is what the caller must do
once the new call is committed (dial, write the webhook event, wake the scheduler). They
are plain frozen values, kept apart from ``lifecycle``'s transition table so a reader sees
the whole vocabulary in one place; ``lifecycle`` re-exports them and callers import them
from there. Pure, like the rest of ``core``: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .models import Attempt, CallStatus
from .outcomes import Outcome


# ---- effects: what the caller must do after committing the new call -------------
@dataclass(frozen=True, slots=True)
class Dial:
    """Dial this attempt (it is committed as ``dialing`` in the same transaction)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True)
class Notify:
    """The call's status changed to ``status``: one outbox event, same transaction."""

    status: CallStatus


@dataclass(frozen=True, slots=True)
class Schedule:
    """The call is pending again; wake the scheduler for ``at``."""

    at: datetime


Effect = Dial | Notify | Schedule


# ---- events -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dispatch:
    """The scheduler claimed the due call; ``attempt_id`` is the id the new attempt gets."""

    at: datetime
    attempt_id: str


@dataclass(frozen=True, slots=True)
class Defer:
    """The call is due but may not be dialled yet: its number has a call in progress
    (a person is never rung twice at once). It waits until ``until``; no status change."""

    at: datetime
    until: datetime
    why: str = "the number has a call in progress"


@dataclass(frozen=True, slots=True)
class Ringing:
    at: datetime
    attempt_id: str


@dataclass(frozen=True, slots=True)
class Answered:
    at: datetime
    attempt_id: str
    uniqueid: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    at: datetime
    attempt_id: str
    outcome: Outcome
    uniqueid: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel by API/CLI (``canceled``) or batch stop (``stopped``).

    A pending call ends at once; a call with a live attempt lets that attempt finish and
    then does not retry (``cancel_requested``).
    """

    at: datetime
    status: CallStatus = CallStatus.CANCELED
    reason: str = "canceled"


Event = Dispatch | Defer | Ringing | Answered | AttemptEnded | Cancel
