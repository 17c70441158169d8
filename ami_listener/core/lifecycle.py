"""The one place a call's status changes: ``advance(call, event) -> (call, effects)``.

Table-driven: ``_ALLOWED`` says which event kinds each status accepts and ``_HANDLERS``
maps each event kind to the handler that applies it; an event the table does not allow
raises ``IllegalTransition`` and changes nothing (h11's ``_state.py`` habit). The event and
effect types live in ``events`` and are re-exported here, the module callers import.
The caller commits the returned call and its ``Notify`` effects in one transaction
(``Store.transition``) and only then acts on ``Dial``/``Schedule``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..errors import IllegalTransition
from .events import (
    Answered,
    AttemptEnded,
    Cancel,
    Defer,
    Dial,
    Dispatch,
    Effect,
    Event,
    Notify,
    Ringing,
    Schedule,
)
from .models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    PENDING_STATUSES,
    Attempt,
    AttemptStatus,
    Call,
    CallRequest,
    CallStatus,
    OutcomeStatus,
    evolve,
)
from .policy import Retry, Rules, decide, first_dial_at

# The event and effect types are re-exported: engine, store, scheduler and tests import them
# from here.
__all__ = [
    "Answered",
    "AttemptEnded",
    "Cancel",
    "Defer",
    "Dial",
    "Dispatch",
    "Effect",
    "Event",
    "Notify",
    "Result",
    "Ringing",
    "Schedule",
    "advance",
    "allowed",
    "new_call",
]

Result = tuple[Call, tuple[Effect, ...]]

_ATTEMPT_STATUS = {
    OutcomeStatus.COMPLETED: AttemptStatus.COMPLETED,
    OutcomeStatus.NO_ANSWER: AttemptStatus.NO_ANSWER,
    OutcomeStatus.BUSY: AttemptStatus.BUSY,
    OutcomeStatus.FAILED: AttemptStatus.FAILED,
    OutcomeStatus.ERROR: AttemptStatus.ERROR,
    OutcomeStatus.CANCELED: AttemptStatus.CANCELED,
}


def new_call(
    call_id: str,
    request: CallRequest,
    now: datetime,
    *,
    batch_id: str | None = None,
    timezone: str | None = None,
) -> Result:
    """A new call from a validated request: ``queued``, due at ``scheduled_at`` (past = now)."""
    due = request.scheduled_at if request.scheduled_at and request.scheduled_at > now else now
    call = Call(
        id=call_id,
        target=request.agent_id,
        to_number=request.recipient_phone_number,
        from_number=request.from_phone_number,
        status=CallStatus.QUEUED,
        retry_config=request.retry_config,
        created_at=now,
        updated_at=now,
        scheduled_at=due,
        variables=dict(request.user_data),
        batch_id=batch_id,
        webhook_url=request.webhook_url,
        bypass_call_guardrails=request.bypass_call_guardrails,
        timezone=timezone,
    )
    return call, (Notify(CallStatus.QUEUED), Schedule(due))


def _live(call: Call, attempt_id: str, event: Event) -> Attempt:
    attempt = call.live_attempt
    if attempt is None or attempt.id != attempt_id:
        raise IllegalTransition(
            f"{type(event).__name__} for attempt {attempt_id} of call {call.id}: "
            f"that attempt is not live (status {call.status.value})"
        )
    return attempt


def _with_attempt(call: Call, attempt: Attempt) -> tuple[Attempt, ...]:
    return tuple(attempt if a.id == attempt.id else a for a in call.attempts)


def _dispatch(call: Call, event: Dispatch, rules: Rules) -> Result:
    if call.live_attempt is not None:  # invariant 1; a pending call never has one
        raise IllegalTransition(f"call {call.id} already has a live attempt")
    at, moved = first_dial_at(call, event.at, rules)
    if moved:
        if call.status is CallStatus.RESCHEDULED and call.scheduled_at == at:
            return call, (Schedule(at),)
        call = evolve(call, status=CallStatus.RESCHEDULED, scheduled_at=at, updated_at=event.at)
        return call, (Notify(CallStatus.RESCHEDULED), Schedule(at))
    attempt = Attempt(
        id=event.attempt_id,
        call_id=call.id,
        number=len(call.attempts) + 1,
        status=AttemptStatus.DIALING,
        started_at=event.at,
    )
    call = evolve(
        call,
        status=CallStatus.INITIATED,
        scheduled_at=None,
        updated_at=event.at,
        attempts=(*call.attempts, attempt),
    )
    return call, (Dial(attempt), Notify(CallStatus.INITIATED))


def _defer(call: Call, event: Defer, rules: Rules) -> Result:
    if event.until <= event.at:
        raise IllegalTransition(f"Defer of call {call.id} must move it later")
    return evolve(call, scheduled_at=event.until, updated_at=event.at), (Schedule(event.until),)


def _ringing(call: Call, event: Ringing, rules: Rules) -> Result:
    attempt = evolve(_live(call, event.attempt_id, event), status=AttemptStatus.RINGING)
    call = evolve(
        call,
        status=CallStatus.RINGING,
        updated_at=event.at,
        attempts=_with_attempt(call, attempt),
    )
    return call, (Notify(CallStatus.RINGING),)


def _answered(call: Call, event: Answered, rules: Rules) -> Result:
    attempt = evolve(
        _live(call, event.attempt_id, event),
        status=AttemptStatus.IN_PROGRESS,
        answered_at=event.at,
        uniqueid=event.uniqueid,
    )
    call = evolve(
        call,
        status=CallStatus.IN_PROGRESS,
        updated_at=event.at,
        attempts=_with_attempt(call, attempt),
    )
    return call, (Notify(CallStatus.IN_PROGRESS),)


def _ended(call: Call, event: AttemptEnded, rules: Rules) -> Result:
    live = _live(call, event.attempt_id, event)
    outcome, facts = event.outcome, event.outcome.facts
    attempt = evolve(
        live,
        status=_ATTEMPT_STATUS[outcome.status],
        ended_at=event.at,
        answered_at=live.answered_at or (event.at if outcome.answered else None),
        cause=facts.cause,
        cause_txt=facts.cause_txt,
        tech_cause=facts.tech_cause,
        dial_status=facts.dial_status,
        originate_reason=facts.originate_reason,
        amd_status=facts.amd_status,
        amd_cause=facts.amd_cause,
        answered_by_voice_mail=outcome.machine,
        permanent=outcome.permanent,
        reason=outcome.reason,
        uniqueid=event.uniqueid or live.uniqueid,
    )
    call = evolve(call, attempts=_with_attempt(call, attempt), updated_at=event.at)
    decision = decide(call, outcome, event.at, rules)
    attempt = evolve(attempt, decision=decision.why)
    call = evolve(call, attempts=_with_attempt(call, attempt))
    if isinstance(decision, Retry):
        status = CallStatus.RESCHEDULED if decision.rescheduled else CallStatus.SCHEDULED
        call = evolve(
            call,
            status=status,
            retry_count=call.retry_count + 1,
            scheduled_at=decision.at,
            error_message=None,
        )
        return call, (Notify(status), Schedule(decision.at))
    failed = decision.status in {CallStatus.ERROR, CallStatus.FAILED}
    call = evolve(
        call,
        status=decision.status,
        scheduled_at=None,
        answered_by_voice_mail=outcome.machine and decision.status is CallStatus.COMPLETED,
        error_message=outcome.reason if failed else None,
    )
    return call, (Notify(decision.status),)


def _cancel(call: Call, event: Cancel, rules: Rules) -> Result:
    if event.status not in {CallStatus.CANCELED, CallStatus.STOPPED}:
        raise IllegalTransition(f"Cancel to {event.status.value}: only canceled or stopped")
    if call.status in LIVE_STATUSES:
        # Never hang up on a person mid-call: let the attempt end, then do not retry.
        return evolve(call, cancel_requested=event.status.value, updated_at=event.at), ()
    call = evolve(
        call,
        status=event.status,
        scheduled_at=None,
        updated_at=event.at,
        error_message=event.reason,
    )
    return call, (Notify(event.status),)


_Handler = Callable[[Call, object, Rules], Result]
_PENDING = {s: {Dispatch, Defer, Cancel} for s in PENDING_STATUSES}
_ALLOWED: dict[CallStatus, set[type]] = {
    **_PENDING,
    CallStatus.INITIATED: {Ringing, Answered, AttemptEnded, Cancel},
    CallStatus.RINGING: {Answered, AttemptEnded, Cancel},
    CallStatus.IN_PROGRESS: {AttemptEnded, Cancel},
    **{s: set() for s in FINAL_STATUSES},
}
_HANDLERS: dict[type, _Handler] = {
    Dispatch: _dispatch,  # type: ignore[dict-item]
    Defer: _defer,  # type: ignore[dict-item]
    Ringing: _ringing,  # type: ignore[dict-item]
    Answered: _answered,  # type: ignore[dict-item]
    AttemptEnded: _ended,  # type: ignore[dict-item]
    Cancel: _cancel,  # type: ignore[dict-item]
}


def allowed(status: CallStatus, event_type: type) -> bool:
    """Whether ``advance`` accepts an event of ``event_type`` in ``status`` (for docs/tests)."""
    return event_type in _ALLOWED[status]


def advance(call: Call, event: Event, rules: Rules | None = None) -> Result:
    """Apply ``event`` to ``call``; return the new call and what to do about it.

    Raises ``IllegalTransition`` (and changes nothing: ``call`` is immutable) when the
    event is not allowed in the call's status or names an attempt that is not live.
    """
    if type(event) not in _ALLOWED[call.status]:
        raise IllegalTransition(
            f"{type(event).__name__} is not allowed for call {call.id} "
            f"in status {call.status.value}"
        )
    return _HANDLERS[type(event)](call, event, rules or Rules())
