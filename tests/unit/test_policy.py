"""Retry policy: a table per rule, first dial, preview, and whole-call hypothesis properties."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ami_listener.core.models import (
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    OutcomeStatus,
    RetryableStatus,
    RetryConfig,
)
from ami_listener.core.outcomes import AttemptFacts, Outcome
from ami_listener.core.policy import Retry, Rules, Stop, decide, first_dial_at, preview
from ami_listener.core.windows import CallingWindow

NY = ZoneInfo("America/New_York")
T0 = datetime(2024, 1, 8, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
DAY = CallingWindow(540, 1020)  # 09:00-17:00
NY_NUMBER = "+12025550123"
S = OutcomeStatus


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def config(**fields: Any) -> RetryConfig:
    return RetryConfig.model_validate(
        {"enabled": True, **fields}, context={"max_retries_limit": 10}
    )


def make_call(
    retry_config: RetryConfig | None = None,
    *,
    retry_count: int = 0,
    started_at: datetime = T0,
    created_at: datetime = T0,
    scheduled_at: datetime | None = None,
    **fields: Any,
) -> Call:
    """A call whose latest attempt (one per dial so far) started at ``started_at``."""
    attempts = tuple(
        Attempt(
            id=f"a{n}",
            call_id="c1",
            number=n,
            status=AttemptStatus.BUSY,
            started_at=started_at - timedelta(hours=retry_count + 1 - n),
        )
        for n in range(1, retry_count + 2)
    )
    values: dict[str, Any] = {
        "id": "c1",
        "target": "sales",
        "to_number": NY_NUMBER,
        "status": CallStatus.INITIATED,
        "retry_config": retry_config or config(),
        "created_at": created_at,
        "updated_at": created_at,
        "scheduled_at": scheduled_at,
        "retry_count": retry_count,
        "attempts": attempts,
    }
    values.update(fields)
    return Call(**values)


def outcome(
    status: OutcomeStatus = S.BUSY,
    *,
    permanent: bool = False,
    answered: bool = False,
    machine: bool = False,
    cause: int | None = None,
) -> Outcome:
    return Outcome(
        status,
        permanent,
        f"reason for {status.value}",
        answered=answered,
        machine=machine,
        facts=AttemptFacts(cause=cause),
    )


NOW = T0 + timedelta(seconds=40)
VOICEMAIL = outcome(S.COMPLETED, answered=True, machine=True)

# ---- decide: one row per rule, in decide()'s order -----------------------------------
RULE_CASES: list[tuple[str, Call, Outcome, Rules, type, CallStatus | None, str]] = [
    ("person", make_call(config(enabled=False)), outcome(S.COMPLETED, answered=True),
     Rules(), Stop, CallStatus.COMPLETED, "answered by a person"),
    ("machine, no voicemail retry", make_call(), VOICEMAIL,
     Rules(), Stop, CallStatus.COMPLETED, "retry_on_voicemail is off"),
    ("machine, voicemail retry", make_call(config(retry_on_voicemail=True)), VOICEMAIL,
     Rules(), Retry, None, "retry 1 of 3 in 30 min (voicemail)"),
    ("machine, budget spent", make_call(config(retry_on_voicemail=True), retry_count=3),
     VOICEMAIL, Rules(), Stop, CallStatus.COMPLETED, "max_retries 3 reached"),
    ("machine, disabled", make_call(config(enabled=False, retry_on_voicemail=True)), VOICEMAIL,
     Rules(), Stop, CallStatus.COMPLETED, "not enabled"),
    ("attempt canceled", make_call(), outcome(S.CANCELED),
     Rules(), Stop, CallStatus.CANCELED, "the attempt was canceled"),
    ("cancel requested", make_call(cancel_requested="stopped"), outcome(S.BUSY),
     Rules(), Stop, CallStatus.BUSY, "stop requested while the attempt was live"),
    ("cancel requested, machine", make_call(config(retry_on_voicemail=True),
     cancel_requested="canceled"), VOICEMAIL, Rules(), Stop, CallStatus.COMPLETED,
     "cancel requested"),
    ("not enabled", make_call(config(enabled=False)), outcome(S.NO_ANSWER),
     Rules(), Stop, CallStatus.NO_ANSWER, "retries are not enabled"),
    ("status not retried", make_call(config(retry_on_statuses=["no-answer"])), outcome(S.BUSY),
     Rules(), Stop, CallStatus.BUSY, "busy is not in retry_on_statuses"),
    ("error not in defaults", make_call(), outcome(S.ERROR),
     Rules(), Stop, CallStatus.ERROR, "error is not in retry_on_statuses"),
    ("error when listed", make_call(config(retry_on_statuses=["error"])), outcome(S.ERROR),
     Rules(), Retry, None, "retry 1 of 3 in 30 min (error)"),
    ("permanent cause", make_call(), outcome(S.FAILED, permanent=True, cause=1),
     Rules(), Stop, CallStatus.FAILED, "Q.850 1 is permanent (reason for failed)"),
    ("permanent, no cause", make_call(), outcome(S.FAILED, permanent=True),
     Rules(), Stop, CallStatus.FAILED, "failed is permanent"),
    ("permanent, operator retries", make_call(), outcome(S.FAILED, permanent=True, cause=1),
     Rules(retry_permanent=True), Retry, None, "retry 1 of 3 in 30 min (failed)"),
    ("budget spent", make_call(retry_count=3), outcome(S.NO_ANSWER),
     Rules(), Stop, CallStatus.NO_ANSWER, "max_retries 3 reached"),
    ("budget of one spent", make_call(config(max_retries=1), retry_count=1), outcome(S.BUSY),
     Rules(), Stop, CallStatus.BUSY, "max_retries 1 reached"),
    ("first retry", make_call(), outcome(S.BUSY),
     Rules(), Retry, None, "retry 1 of 3 in 30 min (busy)"),
    ("second retry", make_call(retry_count=1), outcome(S.BUSY),
     Rules(), Retry, None, "retry 2 of 3 in 60 min (busy)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "result", "rules", "kind", "status", "why"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_decide_rules(
    call: Call,
    result: Outcome,
    rules: Rules,
    kind: type,
    status: CallStatus | None,
    why: str,
) -> None:
    decision = decide(call, result, NOW, rules)
    assert isinstance(decision, kind)
    assert why in decision.why
    if isinstance(decision, Stop):
        assert decision.status is status
    else:
        assert isinstance(decision, Retry)
        assert decision.at > NOW
        assert not decision.rescheduled


@pytest.mark.parametrize("status", [S.NO_ANSWER, S.BUSY, S.FAILED, S.ERROR])
def test_stop_status_is_outcome_status_by_value(status: OutcomeStatus) -> None:
    decision = decide(make_call(config(enabled=False)), outcome(status), NOW)
    assert isinstance(decision, Stop)
    assert decision.status.value == status.value


@pytest.mark.parametrize(
    ("fields", "retry_count", "result", "minutes"),
    [
        ({}, 0, outcome(S.BUSY), 30),
        ({}, 1, outcome(S.BUSY), 60),
        ({}, 2, outcome(S.BUSY), 120),
        ({"max_retries": 6}, 5, outcome(S.BUSY), 120),  # a short list repeats its last item
        ({"retry_intervals_minutes": [0.5]}, 0, outcome(S.BUSY), 0.5),
        ({"retry_intervals_by_status": {"busy": [5, 7]}}, 1, outcome(S.BUSY), 7),
        ({"retry_intervals_by_status": {"busy": [5]}}, 1, outcome(S.NO_ANSWER), 60),
        ({"retry_on_voicemail": True, "retry_intervals_by_status": {"voicemail": [15]}}, 0,
         VOICEMAIL, 15),
        ({"retry_on_voicemail": True}, 1, VOICEMAIL, 60),
    ],
)  # fmt: skip
def test_interval_choice(
    fields: dict[str, Any], retry_count: int, result: Outcome, minutes: float
) -> None:
    decision = decide(make_call(config(**fields), retry_count=retry_count), result, NOW)
    assert isinstance(decision, Retry)
    assert decision.at == NOW + timedelta(minutes=minutes)
    assert f"in {minutes:g} min" in decision.why


@pytest.mark.parametrize("now", [T0, T0 - timedelta(minutes=5)])
def test_retry_is_strictly_after_the_previous_dial(now: datetime) -> None:
    # A zero interval (or a clock that stepped back) must not put the retry at or before
    # the dial it follows: it is pushed one second past it.
    decision = decide(make_call(config(retry_intervals_minutes=[0])), outcome(), now)
    assert isinstance(decision, Retry)
    assert decision.at == T0 + timedelta(seconds=1)


def test_call_without_attempts_uses_now() -> None:
    call = replace(make_call(config(retry_intervals_minutes=[0])), attempts=())
    decision = decide(call, outcome(), NOW)
    assert isinstance(decision, Retry)
    assert decision.at == NOW


# ---- ttl ------------------------------------------------------------------------------
def test_ttl_stops_before_window() -> None:
    decision = decide(make_call(config(ttl_minutes=20)), outcome(S.NO_ANSWER), NOW)
    assert decision == Stop(
        CallStatus.NO_ANSWER, "ttl_minutes 20 would be exceeded by retry 1 of 3 in 30 min "
        "(no-answer)"
    )  # fmt: skip


def test_ttl_rechecked_after_window() -> None:
    late = utc(2024, 1, 8, 21, 50)  # 16:50 EST; +30 min is outside, next window is tomorrow
    call = make_call(config(ttl_minutes=600), started_at=late - timedelta(minutes=1))
    decision = decide(call, outcome(), late, Rules(window=DAY))
    assert isinstance(decision, Stop)
    assert decision.status is CallStatus.BUSY
    assert "ttl_minutes 600 would be exceeded: next calling window is 09:00" in decision.why


def test_ttl_not_reached_keeps_the_retry() -> None:
    decision = decide(make_call(config(ttl_minutes=31)), outcome(), T0)
    assert decision == Retry(T0 + timedelta(minutes=30), False, "retry 1 of 3 in 30 min (busy)")


# ---- calling window -------------------------------------------------------------------
LATE = utc(2024, 1, 8, 21, 50)  # 16:50 in New York, 21:50 in London, 06:50+1 in Tokyo


@pytest.mark.parametrize(
    ("fields", "default", "expected", "why"),
    [
        ({}, "UTC", utc(2024, 1, 9, 14), "moved to next calling window 09:00 America/New_York"),
        ({"timezone": "Europe/London"}, "UTC", utc(2024, 1, 9, 9), "09:00 Europe/London"),
        ({"to_number": "+15005550006"}, "Asia/Tokyo", utc(2024, 1, 9, 0), "09:00 Asia/Tokyo"),
    ],
)
def test_window_moves_retry_to_next_start_in_recipient_zone(
    fields: dict[str, Any], default: str, expected: datetime, why: str
) -> None:
    call = make_call(started_at=LATE - timedelta(minutes=1), **fields)
    decision = decide(call, outcome(), LATE, Rules(window=DAY, default_timezone=default))
    assert isinstance(decision, Retry)
    assert decision.at == expected
    assert decision.rescheduled
    assert decision.why.startswith("retry 1 of 3 in 30 min (busy); ")
    assert why in decision.why


def test_window_inside_is_not_rescheduled() -> None:
    decision = decide(make_call(), outcome(), NOW, Rules(window=DAY))
    assert decision == Retry(NOW + timedelta(minutes=30), False, "retry 1 of 3 in 30 min (busy)")


def test_bypass_call_guardrails_skips_window_for_retries() -> None:
    call = make_call(started_at=LATE - timedelta(minutes=1), bypass_call_guardrails=True)
    decision = decide(call, outcome(), LATE, Rules(window=DAY))
    assert decision == Retry(LATE + timedelta(minutes=30), False, "retry 1 of 3 in 30 min (busy)")


# ---- rules, jitter, input checks ------------------------------------------------------
def _never() -> float:
    raise AssertionError("rng must not be called without jitter")


def test_jitter_adds_rng_fraction_of_jitter_s() -> None:
    decision = decide(make_call(), outcome(), NOW, Rules(jitter_s=10, rng=lambda: 0.5))
    assert isinstance(decision, Retry)
    assert decision.at == NOW + timedelta(minutes=30, seconds=5)
    assert decision.why == "retry 1 of 3 in 30 min (busy) +5.0 s jitter"


def test_no_jitter_does_not_touch_rng() -> None:
    decision = decide(make_call(), outcome(), NOW, Rules(rng=_never))
    assert isinstance(decision, Retry)
    assert decision.at == NOW + timedelta(minutes=30)


@pytest.mark.parametrize("value", [1.0, -0.1, 2.0])
def test_rng_out_of_range_is_a_bug(value: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        decide(make_call(), outcome(), NOW, Rules(jitter_s=1, rng=lambda: value))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jitter_s": 5.0}, "needs rng"),
        ({"jitter_s": -1.0, "rng": random.Random(1).random}, "jitter_s"),
        ({"jitter_s": float("nan"), "rng": random.Random(1).random}, "jitter_s"),
        ({"jitter_s": float("inf"), "rng": random.Random(1).random}, "jitter_s"),
        ({"default_timezone": "Nowhere/Zone"}, "Nowhere/Zone"),
    ],
)
def test_rules_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rules(**kwargs)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="now must be an aware"):
        decide(make_call(), outcome(), datetime(2024, 1, 8, 15))
    with pytest.raises(ValueError, match="now must be an aware"):
        first_dial_at(make_call(), datetime(2024, 1, 8, 15))
    with pytest.raises(ValueError, match="scheduled_at must be an aware"):
        first_dial_at(make_call(scheduled_at=datetime(2024, 1, 8, 15)), T0)


# ---- first_dial_at --------------------------------------------------------------------
EVENING = utc(2024, 1, 8, 23)  # 18:00 in New York


@pytest.mark.parametrize(
    ("scheduled_at", "now", "rules", "fields", "expected"),
    [
        (None, T0, Rules(), {}, (T0, False)),
        (T0 + timedelta(hours=1), T0, Rules(), {}, (T0 + timedelta(hours=1), False)),
        (T0 - timedelta(hours=1), T0, Rules(), {}, (T0, False)),  # overdue: dial now
        (T0, T0, Rules(window=DAY), {}, (T0, False)),
        (EVENING, T0, Rules(window=DAY), {}, (utc(2024, 1, 9, 14), True)),
        (T0, EVENING, Rules(window=DAY), {}, (utc(2024, 1, 9, 14), True)),  # overdue, closed
        (EVENING, T0, Rules(window=DAY), {"bypass_call_guardrails": True}, (EVENING, False)),
        (EVENING, T0, Rules(window=DAY), {"timezone": "Asia/Tokyo"}, (utc(2024, 1, 9, 0), True)),
        # Claimed before it is due: a window applies, so it is not dialled now either way.
        (utc(2024, 1, 9, 14), EVENING, Rules(window=DAY), {}, (utc(2024, 1, 9, 14), True)),
        (T0 + timedelta(hours=1), T0, Rules(window=DAY), {}, (T0 + timedelta(hours=1), True)),
    ],
)
def test_first_dial_at(
    scheduled_at: datetime | None,
    now: datetime,
    rules: Rules,
    fields: dict[str, Any],
    expected: tuple[datetime, bool],
) -> None:
    call = make_call(scheduled_at=scheduled_at, status=CallStatus.QUEUED, attempts=(), **fields)
    assert first_dial_at(call, now, rules) == expected


# ---- preview --------------------------------------------------------------------------
def minutes(*values: float) -> list[datetime]:
    return [T0 + timedelta(minutes=v) for v in values]


@pytest.mark.parametrize(
    ("cfg", "status", "rules", "attempt_minutes", "expected"),
    [
        (config(), "busy", Rules(), 0, [(1, *minutes(30), False), (2, *minutes(90), False),
                                         (3, *minutes(210), False)]),
        (config(), "busy", Rules(), 2, [(1, *minutes(30), False), (2, *minutes(92), False),
                                         (3, *minutes(214), False)]),
        (config(ttl_minutes=100), "no-answer", Rules(), 0, [(1, *minutes(30), False),
                                                             (2, *minutes(90), False)]),
        (config(retry_on_voicemail=True, max_retries=2,
                retry_intervals_by_status={"voicemail": [10]}), "voicemail", Rules(), 0,
         [(1, *minutes(10), False), (2, *minutes(20), False)]),
        (config(retry_intervals_minutes=[0], max_retries=2), "busy", Rules(), 0,
         [(1, T0 + timedelta(seconds=1), False), (2, T0 + timedelta(seconds=2), False)]),
        (config(enabled=False), "busy", Rules(), 0, []),
        (config(), "error", Rules(), 0, []),
        (config(), "voicemail", Rules(), 0, []),
        # 10:00 EST + 30 min; +60 = 11:30... all inside 09:00-12:00 except the third.
        (config(), "busy", Rules(window=CallingWindow(540, 720)), 0,
         [(1, *minutes(30), False), (2, *minutes(90), False),
          (3, utc(2024, 1, 9, 14), True)]),
    ],
)  # fmt: skip
def test_preview(
    cfg: RetryConfig,
    status: str,
    rules: Rules,
    attempt_minutes: float,
    expected: list[tuple[int, datetime, bool]],
) -> None:
    assert preview(cfg, T0, status, rules, NY, attempt_minutes) == expected


@pytest.mark.parametrize(
    ("failed_at", "attempt_minutes", "message"),
    [
        (datetime(2024, 1, 8, 15), 0, "failed_at must be an aware"),
        (T0, -1, "attempt_minutes"),
        (T0, float("nan"), "attempt_minutes"),
    ],
)
def test_preview_refuses_bad_input(
    failed_at: datetime, attempt_minutes: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        preview(config(), failed_at, "busy", Rules(), NY, attempt_minutes)


# ---- properties: simulate whole calls -------------------------------------------------
ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]
instants = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
intervals = st.lists(st.floats(0, 600, allow_nan=False), min_size=1, max_size=4).map(tuple)
outcomes = st.one_of(
    st.builds(
        outcome,
        st.sampled_from([S.NO_ANSWER, S.BUSY, S.FAILED, S.ERROR]),
        permanent=st.booleans(),
        cause=st.none() | st.integers(1, 127),
    ),
    st.just(VOICEMAIL),
    st.just(outcome(S.COMPLETED, answered=True)),
    st.just(outcome(S.CANCELED)),
)


@st.composite
def retry_configs(draw: st.DrawFn) -> RetryConfig:
    data = {
        "enabled": draw(st.sampled_from([True, True, True, False])),
        "max_retries": draw(st.integers(1, 6)),
        "retry_on_statuses": draw(st.lists(st.sampled_from(list(RetryableStatus)), max_size=4)),
        "retry_on_voicemail": draw(st.booleans()),
        "retry_intervals_minutes": draw(intervals),
        "retry_intervals_by_status": draw(
            st.none()
            | st.dictionaries(
                st.sampled_from([*(s.value for s in RetryableStatus), "voicemail"]),
                intervals,
                max_size=3,
            )
        ),
        "ttl_minutes": draw(st.none() | st.floats(1, 20000)),
    }
    return RetryConfig.model_validate(data, context={"max_retries_limit": 6})


@st.composite
def calling_windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440).filter(lambda e: e != start))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    holidays = draw(st.frozensets(st.dates(date(2023, 1, 1), date(2028, 6, 30)), max_size=6))
    return CallingWindow(start, end, days, holidays)


@settings(deadline=None, max_examples=300)
@given(
    cfg=retry_configs(),
    results=st.lists(outcomes, min_size=1, max_size=8),
    durations_us=st.lists(st.integers(1, 3_600_000_000), min_size=1, max_size=8),
    window=st.none() | calling_windows(),
    zone=st.sampled_from(ZONES),
    created_at=instants,
    retry_permanent=st.booleans(),
    seed=st.none() | st.integers(0, 2**32),
)
def test_whole_call_properties(
    cfg: RetryConfig,
    results: list[Outcome],
    durations_us: list[int],
    window: CallingWindow | None,
    zone: str,
    created_at: datetime,
    retry_permanent: bool,
    seed: int | None,
) -> None:
    rng = random.Random(seed).random if seed is not None else None
    rules = Rules(window=window, retry_permanent=retry_permanent, jitter_s=30 if rng else 0,
                  rng=rng)  # fmt: skip
    call = make_call(cfg, created_at=created_at, scheduled_at=created_at, timezone=zone,
                     status=CallStatus.QUEUED, attempts=())  # fmt: skip
    dial_at, _ = first_dial_at(call, created_at, rules)
    if window is not None:
        assert window.contains(dial_at, ZoneInfo(zone))
    retries: list[datetime] = []
    for n in range(cfg.max_retries + 2):
        attempt = Attempt(f"a{n}", call.id, n + 1, AttemptStatus.DIALING, dial_at)
        call = replace(call, attempts=(*call.attempts, attempt), status=CallStatus.INITIATED)
        result = results[n % len(results)]
        failed_at = dial_at + timedelta(microseconds=durations_us[n % len(durations_us)])
        decision = decide(call, result, failed_at, rules)
        if result.permanent and not rules.retry_permanent:
            assert isinstance(decision, Stop)
        if isinstance(decision, Stop):
            break
        assert decision.at > dial_at  # strictly after the dial it follows
        assert decision.at >= failed_at
        if retries:
            assert decision.at > retries[-1]
        if window is not None:
            assert window.contains(decision.at, ZoneInfo(zone))
            if not decision.rescheduled:
                assert "calling window" not in decision.why
        if cfg.ttl_minutes is not None:
            assert decision.at <= created_at + timedelta(minutes=cfg.ttl_minutes)
        retries.append(decision.at)
        call = replace(call, retry_count=call.retry_count + 1)
        dial_at = decision.at
    assert len(retries) <= cfg.max_retries
    assert call.retry_count == len(retries)


@settings(deadline=None)
@given(
    seed=st.integers(0, 2**32),
    jitter_s=st.floats(0.000001, 3600),
    retry_intervals=intervals,
    now=instants,
    retry_count=st.integers(0, 5),
)
def test_jitter_stays_within_bounds_and_is_reproducible(
    seed: int, jitter_s: float, retry_intervals: tuple[float, ...], now: datetime, retry_count: int
) -> None:
    cfg = config(max_retries=6, retry_intervals_minutes=retry_intervals)
    call = make_call(cfg, retry_count=retry_count, started_at=now - timedelta(seconds=1))
    rules = Rules(jitter_s=jitter_s, rng=random.Random(seed).random)
    decision = decide(call, outcome(), now, rules)
    assert isinstance(decision, Retry)
    base = now + timedelta(minutes=cfg.interval_minutes(retry_count + 1, "busy"))
    assert timedelta(0) <= decision.at - base <= timedelta(seconds=jitter_s)
    again = decide(call, outcome(), now, Rules(jitter_s=jitter_s, rng=random.Random(seed).random))
    assert again == decision
