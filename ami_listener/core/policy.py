"""Retry policy: after an attempt ends, retry at T or stop with a final status, and why.

Pure: ``now`` and the random source are arguments. ``decide`` applies the rules in a fixed
order (the first that stops wins) so that every ``why`` names exactly one rule:

1. answered by a person -> completed;  2. answered by a machine -> completed unless
   ``retry_on_voicemail``;  3. attempt canceled;  4. cancel requested;  5. not enabled;
6. status not in ``retry_on_statuses``;  7. permanent failure (unless the operator's
   ``retry_permanent``);  8. ``max_retries``;  9. ``ttl_minutes``;  10. calling window
   (may move T to the next window start: ``rescheduled``), then ``ttl_minutes`` again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .models import (
    VOICEMAIL,
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    OutcomeStatus,
    RetryConfig,
    evolve,
)
from .outcomes import Outcome
from .windows import CallingWindow, recipient_zone

MIN_GAP = timedelta(seconds=1)
"""A retry is never due at or before the previous dial; it is pushed at least this far."""


@dataclass(frozen=True, slots=True)
class Rules:
    """Operator-level knobs (from config), passed down."""

    window: CallingWindow | None = None
    default_timezone: str = "UTC"
    retry_permanent: bool = False  # operator says: retry permanent failures too
    jitter_s: float = 0.0  # max extra delay; needs rng
    rng: Callable[[], float] | None = None  # explicit random source, returns [0, 1)

    def __post_init__(self) -> None:
        if not math.isfinite(self.jitter_s) or self.jitter_s < 0:
            raise ValueError(f"jitter_s must be a finite number >= 0, got {self.jitter_s!r}")
        if self.jitter_s > 0 and self.rng is None:
            # The core has no randomness of its own: jitter needs an explicit source.
            raise ValueError("jitter_s > 0 needs rng (an explicit random source)")
        recipient_zone("", self.default_timezone, "UTC")  # ValueError if unknown


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime
    rescheduled: bool
    why: str


@dataclass(frozen=True, slots=True)
class Stop:
    status: CallStatus
    why: str


Decision = Retry | Stop


def _minutes(value: float) -> str:
    return f"{value:g} min"


def _jitter(rules: Rules) -> timedelta:
    if rules.jitter_s <= 0 or rules.rng is None:
        return timedelta(0)
    fraction = rules.rng()
    if not 0 <= fraction < 1:
        raise ValueError(f"rng must return a float in [0, 1), returned {fraction!r}")
    return timedelta(seconds=fraction * rules.jitter_s)


def _local(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return f"{local:%H:%M} {zone.key} on {local:%Y-%m-%d}"


def _require_aware(at: datetime, name: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {at!r}")


def decide(call: Call, outcome: Outcome, now: datetime, rules: Rules = Rules()) -> Decision:
    """What to do after ``call``'s latest attempt ended with ``outcome`` at ``now``."""
    return _decide(call, outcome, now, rules, None)


def _decide(
    call: Call, outcome: Outcome, now: datetime, rules: Rules, zone: ZoneInfo | None
) -> Decision:
    _require_aware(now, "now")
    now = now.astimezone(UTC)
    config = call.retry_config
    if outcome.answered and not outcome.machine:
        return Stop(CallStatus.COMPLETED, "answered by a person")
    if outcome.machine:
        if not config.retry_on_voicemail:
            return Stop(CallStatus.COMPLETED, "answered by voicemail; retry_on_voicemail is off")
        # A machine answered: the call counts as completed unless a retry happens.
        final, key = CallStatus.COMPLETED, VOICEMAIL
    else:
        final, key = CallStatus(outcome.status.value), outcome.status.value
    if outcome.status is OutcomeStatus.CANCELED:
        return Stop(CallStatus.CANCELED, "the attempt was canceled")
    if call.cancel_requested is not None:
        asked = "stop" if call.cancel_requested == "stopped" else "cancel"
        return Stop(final, f"{asked} requested while the attempt was live")
    if not config.enabled:
        return Stop(final, "retries are not enabled (retry_config.enabled is false)")
    if not outcome.machine:
        if key not in {s.value for s in config.retry_on_statuses}:
            return Stop(final, f"{key} is not in retry_on_statuses")
        if outcome.permanent and not rules.retry_permanent:
            cause = outcome.facts.cause
            subject = f"Q.850 {cause}" if cause is not None else key
            return Stop(final, f"{subject} is permanent ({outcome.reason})")
    if call.retry_count >= config.max_retries:
        return Stop(final, f"max_retries {config.max_retries} reached")

    number = call.retry_count + 1
    interval = config.interval_minutes(number, key)
    jitter = _jitter(rules)
    at = now + timedelta(minutes=interval) + jitter
    last = call.last_attempt
    if last is not None and at <= last.started_at:
        at = last.started_at.astimezone(UTC) + MIN_GAP
    why = f"retry {number} of {config.max_retries} in {_minutes(interval)} ({key})"
    if jitter:
        why += f" +{jitter.total_seconds():.1f} s jitter"

    deadline = _deadline(call.created_at, config)
    if deadline is not None and at > deadline:
        return Stop(final, f"ttl_minutes {config.ttl_minutes:g} would be exceeded by {why}")

    rescheduled = False
    if rules.window is not None and not call.bypass_call_guardrails:
        if zone is None:
            zone = recipient_zone(call.to_number, call.timezone, rules.default_timezone)
        opened = rules.window.next_open(at, zone)
        if opened != at:
            at, rescheduled = opened, True
            why += f"; moved to next calling window {_local(at, zone)}"
            if deadline is not None and at > deadline:
                return Stop(
                    final,
                    f"ttl_minutes {config.ttl_minutes:g} would be exceeded: next calling "
                    f"window is {_local(at, zone)}",
                )
    return Retry(at=at, rescheduled=rescheduled, why=why)


def _deadline(created_at: datetime, config: RetryConfig) -> datetime | None:
    if config.ttl_minutes is None:
        return None
    return created_at.astimezone(UTC) + timedelta(minutes=config.ttl_minutes)


def first_dial_at(call: Call, now: datetime, rules: Rules = Rules()) -> tuple[datetime, bool]:
    """When the pending ``call`` may be dialled: ``(at, moved_by_window)``, aware UTC.

    ``at`` is the first instant inside the calling window that is neither before ``now``
    (an overdue call is dialled now) nor before ``call.scheduled_at``.
    ``moved_by_window`` means "a window applies and the call may not be dialled at
    ``now``": the dispatcher then (re)schedules it as ``rescheduled`` instead of dialling,
    which also covers a call claimed again before its window opens. With no window (or
    ``bypass_call_guardrails``) it is always False.
    """
    _require_aware(now, "now")
    now = now.astimezone(UTC)
    at = now
    if call.scheduled_at is not None:
        _require_aware(call.scheduled_at, "call.scheduled_at")
        at = max(at, call.scheduled_at.astimezone(UTC))
    if rules.window is None or call.bypass_call_guardrails:
        return at, False
    zone = recipient_zone(call.to_number, call.timezone, rules.default_timezone)
    opened = rules.window.next_open(at, zone)
    return opened, opened != now


def preview(
    config: RetryConfig,
    failed_at: datetime,
    status: str,
    rules: Rules,
    zone: ZoneInfo,
    attempt_minutes: float = 0,
) -> list[tuple[int, datetime, bool]]:
    """Every retry ``config`` would produce if every attempt failed with ``status``.

    The first attempt fails at ``failed_at`` (it was dialled ``attempt_minutes`` earlier,
    which is when ``ttl_minutes`` starts); each retry fails ``attempt_minutes`` after it is
    dialled. ``status`` is an outcome status or ``"voicemail"``. Returns
    ``(retry_number, at, rescheduled)``; runs ``decide``'s own rules, so it cannot drift.
    """
    _require_aware(failed_at, "failed_at")
    if not math.isfinite(attempt_minutes) or attempt_minutes < 0:
        raise ValueError(f"attempt_minutes must be >= 0, got {attempt_minutes!r}")
    if status == VOICEMAIL:
        outcome = Outcome(OutcomeStatus.COMPLETED, False, "voicemail", answered=True, machine=True)
    else:
        outcome = Outcome(OutcomeStatus(status), False, f"preview {status}")
    duration = timedelta(minutes=attempt_minutes)
    started_at = failed_at.astimezone(UTC) - duration
    call = Call(
        id="preview",
        target="preview",
        to_number="",
        status=CallStatus.INITIATED,
        retry_config=config,
        created_at=started_at,
        updated_at=started_at,
        scheduled_at=None,
        timezone=zone.key,
    )
    plan: list[tuple[int, datetime, bool]] = []
    now = failed_at.astimezone(UTC)
    while True:
        attempt = Attempt(
            id=f"preview-{len(call.attempts) + 1}",
            call_id=call.id,
            number=len(call.attempts) + 1,
            status=AttemptStatus.FAILED,
            started_at=started_at,
            ended_at=now,
        )
        call = evolve(call, attempts=(*call.attempts, attempt))
        decision = _decide(call, outcome, now, rules, zone)
        if isinstance(decision, Stop):
            return plan
        plan.append((call.retry_count + 1, decision.at, decision.rescheduled))
        call = evolve(call, retry_count=call.retry_count + 1)
        started_at = decision.at
        now = started_at + duration
