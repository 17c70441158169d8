"""lifecycle.advance: every (status, event) pair, and the happy and retry paths."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ami_listener.core.lifecycle import (
    Answered,
    AttemptEnded,
    Cancel,
    Defer,
    Dial,
    Dispatch,
    Event,
    Notify,
    Ringing,
    Schedule,
    advance,
    allowed,
    new_call,
)
from ami_listener.core.models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    PENDING_STATUSES,
    Attempt,
    AttemptStatus,
    Call,
    CallRequest,
    CallStatus,
    OutcomeStatus,
    RetryConfig,
)
from ami_listener.core.outcomes import AttemptFacts, Outcome
from ami_listener.core.policy import Rules
from ami_listener.core.windows import CallingWindow
from ami_listener.errors import IllegalTransition

T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
RETRY = RetryConfig(enabled=True, max_retries=2, retry_intervals_minutes=(30,))
BUSY = Outcome(
    OutcomeStatus.BUSY, False, "SIP 486 / Q.850 17 User busy", facts=AttemptFacts(cause=17)
)
ANSWER = Outcome(OutcomeStatus.COMPLETED, False, "answered", answered=True)
MACHINE = Outcome(OutcomeStatus.COMPLETED, False, "AMD MACHINE", answered=True, machine=True)


def _request(**kw: object) -> CallRequest:
    body = {"agent_id": "sales-ivr", "recipient_phone_number": "+12025550123", **kw}
    return CallRequest.model_validate(body)


def _call(status: CallStatus) -> Call:
    """A call in ``status``, with a live attempt ``a1`` when the status is live."""
    call, _ = new_call("c1", _request(retry_config=RETRY.model_dump()), T0)
    live = Attempt(id="a1", call_id="c1", number=1, started_at=T0, status=AttemptStatus.DIALING)
    if status in LIVE_STATUSES:
        return replace(call, status=status, scheduled_at=None, attempts=(live,))
    if status in FINAL_STATUSES:
        ended = replace(live, status=AttemptStatus.BUSY, ended_at=T0)
        return replace(call, status=status, scheduled_at=None, attempts=(ended,))
    return replace(call, status=status)


AT = T0 + timedelta(seconds=5)
EVENTS: list[Event] = [
    Dispatch(AT, "a2"),
    Defer(AT, AT + timedelta(seconds=5)),
    Ringing(AT, "a1"),
    Answered(AT, "a1", "1795861722.0"),
    AttemptEnded(AT, "a1", BUSY),
    Cancel(AT),
]
EXPECTED = {
    CallStatus.QUEUED: {Dispatch, Defer, Cancel},
    CallStatus.SCHEDULED: {Dispatch, Defer, Cancel},
    CallStatus.RESCHEDULED: {Dispatch, Defer, Cancel},
    CallStatus.INITIATED: {Ringing, Answered, AttemptEnded, Cancel},
    CallStatus.RINGING: {Answered, AttemptEnded, Cancel},
    CallStatus.IN_PROGRESS: {AttemptEnded, Cancel},
}


@pytest.mark.parametrize("status", list(CallStatus), ids=str)
@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_status_event_pair(status: CallStatus, event: Event) -> None:
    call = _call(status)
    before = copy.deepcopy(call)
    expected = type(event) in EXPECTED.get(status, set())
    assert allowed(status, type(event)) is expected
    if not expected:
        with pytest.raises(IllegalTransition, match=status.value):
            advance(call, event)
        assert call == before
        return
    new, effects = advance(call, event)
    assert call == before  # the input is never changed
    assert new.updated_at == AT
    notified = [e.status for e in effects if isinstance(e, Notify)]
    if isinstance(event, Cancel) and status in LIVE_STATUSES:
        assert notified == [] and new.status is status and new.cancel_requested == "canceled"
    elif isinstance(event, Defer):  # waits, no status change: no event
        assert notified == [] and new.status is status and new.scheduled_at == event.until
    else:
        assert notified == [new.status] and new.status is not status


def test_event_for_a_stale_attempt_is_illegal() -> None:
    call = _call(CallStatus.RINGING)
    with pytest.raises(IllegalTransition, match="not live"):
        advance(call, AttemptEnded(AT, "old-attempt", BUSY))


def test_cancel_must_be_canceled_or_stopped() -> None:
    with pytest.raises(IllegalTransition, match="only canceled or stopped"):
        advance(_call(CallStatus.QUEUED), Cancel(AT, status=CallStatus.BUSY))


def test_new_call_is_queued_now_or_at_scheduled_time() -> None:
    call, effects = new_call("c1", _request(), T0)
    assert call.status is CallStatus.QUEUED and call.scheduled_at == T0
    assert effects == (Notify(CallStatus.QUEUED), Schedule(T0))
    later = T0 + timedelta(hours=2)
    call, _ = new_call("c2", _request(scheduled_at=later.isoformat()), T0)
    assert call.scheduled_at == later
    past = T0 - timedelta(hours=2)
    call, _ = new_call("c3", _request(scheduled_at=past.isoformat()), T0)
    assert call.scheduled_at == T0  # a past time means now


def _walk(outcomes: list[Outcome], config: RetryConfig = RETRY) -> list[Call]:
    """Dispatch and end one attempt per outcome; return the call after each end."""
    call, _ = new_call("c1", _request(retry_config=config.model_dump()), T0)
    seen = []
    now = T0
    for n, outcome in enumerate(outcomes, start=1):
        now = max(now, call.scheduled_at or now)
        call, effects = advance(call, Dispatch(now, f"a{n}"))
        assert isinstance(effects[0], Dial) and effects[0].attempt.number == n
        now += timedelta(seconds=20)
        call, _ = advance(call, AttemptEnded(now, f"a{n}", outcome))
        seen.append(call)
    return seen


def test_busy_busy_answer_retries_twice_then_completes() -> None:
    first, second, third = _walk([BUSY, BUSY, ANSWER])
    assert first.status is CallStatus.SCHEDULED and first.retry_count == 1
    assert first.scheduled_at == T0 + timedelta(seconds=20, minutes=30)
    assert first.attempts[0].status is AttemptStatus.BUSY
    assert first.attempts[0].decision and "retry" in first.attempts[0].decision
    assert second.retry_count == 2
    assert third.status is CallStatus.COMPLETED and third.retry_count == 2
    assert [a.status for a in third.attempts] == [
        AttemptStatus.BUSY,
        AttemptStatus.BUSY,
        AttemptStatus.COMPLETED,
    ]
    assert third.scheduled_at is None


def test_budget_exhausted_ends_with_the_last_status() -> None:
    *_, last = _walk([BUSY, BUSY, BUSY])
    assert last.status is CallStatus.BUSY and last.retry_count == 2
    assert last.error_message is None  # busy is not an error


def test_voicemail_completes_with_flag_unless_retry_on_voicemail() -> None:
    (done,) = _walk([MACHINE])
    assert done.status is CallStatus.COMPLETED and done.answered_by_voice_mail
    retry = RETRY.model_copy(update={"retry_on_voicemail": True})
    first, second = _walk([MACHINE, ANSWER], retry)
    assert first.status is CallStatus.SCHEDULED and first.attempts[0].answered_by_voice_mail
    assert second.status is CallStatus.COMPLETED and not second.answered_by_voice_mail


def test_failed_outcome_sets_error_message() -> None:
    unallocated = Outcome(OutcomeStatus.FAILED, True, "SIP 404 / Q.850 1 Unallocated")
    (done,) = _walk([unallocated])
    assert done.status is CallStatus.FAILED and done.retry_count == 0
    assert done.error_message == "SIP 404 / Q.850 1 Unallocated"


def test_cancel_during_a_live_attempt_lets_it_finish_then_stops() -> None:
    call = _call(CallStatus.RINGING)
    call, effects = advance(call, Cancel(AT, status=CallStatus.STOPPED))
    assert effects == () and call.status is CallStatus.RINGING
    call, effects = advance(call, AttemptEnded(AT, "a1", BUSY))
    assert call.status is CallStatus.BUSY and effects == (Notify(CallStatus.BUSY),)


def test_ringing_then_answered_tracks_the_attempt() -> None:
    call = _call(CallStatus.INITIATED)
    call, _ = advance(call, Ringing(AT, "a1"))
    assert call.attempts[0].status is AttemptStatus.RINGING
    call, _ = advance(call, Answered(AT, "a1", "1795861722.0"))
    assert call.attempts[0].answered_at == AT and call.attempts[0].uniqueid == "1795861722.0"
    end = AT + timedelta(seconds=42)
    call, _ = advance(call, AttemptEnded(end, "a1", ANSWER))
    assert call.status is CallStatus.COMPLETED
    assert call.attempts[0].answered_at == AT and call.attempts[0].ended_at == end


def test_dispatch_outside_calling_hours_reschedules_instead_of_dialling() -> None:
    window = CallingWindow(start_minute=9 * 60, end_minute=17 * 60)
    rules = Rules(window=window, default_timezone="UTC")
    night = datetime(2026, 1, 26, 22, 0, tzinfo=UTC)
    call = replace(_call(CallStatus.QUEUED), to_number="+442079460000", scheduled_at=night)
    moved, effects = advance(call, Dispatch(night, "a1"), rules)
    nine = datetime(2026, 1, 27, 9, 0, tzinfo=UTC)  # London is UTC in January
    assert moved.status is CallStatus.RESCHEDULED and moved.scheduled_at == nine
    assert effects == (Notify(CallStatus.RESCHEDULED), Schedule(nine))
    assert moved.attempts == ()
    # Claimed again before the window opens: same time, no second notification.
    again, effects = advance(moved, Dispatch(night, "a1"), rules)
    assert again == moved and effects == (Schedule(nine),)
    bypass = replace(call, bypass_call_guardrails=True)
    dialled, effects = advance(bypass, Dispatch(night, "a1"), rules)
    assert dialled.status is CallStatus.INITIATED and isinstance(effects[0], Dial)


def test_defer_must_move_the_call_later() -> None:
    with pytest.raises(IllegalTransition, match="later"):
        advance(_call(CallStatus.QUEUED), Defer(AT, AT))


def test_pending_statuses_are_exactly_the_dispatchable_ones() -> None:
    assert {s for s in CallStatus if allowed(s, Dispatch)} == set(PENDING_STATUSES)
