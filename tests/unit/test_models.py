"""RetryConfig and CallRequest: Bolna's field rules, field by field."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ami_listener.core.models import (
    Attempt,
    AttemptStatus,
    Call,
    CallRequest,
    CallStatus,
    OutcomeStatus,
    RetryableStatus,
    RetryConfig,
    check_variable,
    evolve,
    normalize_number,
)
from ami_listener.core.models import _plan as evolve_plan
from ami_listener.core.outcomes import Outcome


def test_defaults_are_bolnas() -> None:
    config = RetryConfig()
    assert config.enabled is False
    assert config.max_retries == 3
    assert list(config.retry_on_statuses) == ["no-answer", "busy", "failed"]
    assert config.retry_on_voicemail is False
    assert config.retry_intervals_minutes == (30, 60, 120)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_retries": 0}, "max_retries"),
        ({"max_retries": 4}, "max_retries"),
        ({"max_retries": "three"}, "max_retries"),
        ({"retry_on_statuses": ["voicemail"]}, "retry_on_statuses"),
        ({"retry_on_statuses": ["completed"]}, "retry_on_statuses"),
        ({"retry_intervals_minutes": []}, "retry_intervals_minutes"),
        ({"retry_intervals_minutes": [10, -1]}, "retry_intervals_minutes"),
        ({"retry_intervals_minutes": [float("inf")]}, "retry_intervals_minutes"),
        ({"retry_intervals_minutes": ["soon"]}, "retry_intervals_minutes"),
        ({"retry_intervals_minutes": [1e12]}, "retry_intervals_minutes"),
        ({"ttl_minutes": 1e12}, "ttl_minutes"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": 1}, "enabled"),
        ({"enabled": "maybe"}, "enabled"),
        ({"retry_on_voicemail": "often"}, "retry_on_voicemail"),
        ({"max_attempts": 3}, "max_attempts"),
        ({"retry_intervals_by_status": {"completed": [1]}}, "retry_intervals_by_status"),
        ({"retry_intervals_by_status": {"busy": []}}, "retry_intervals_by_status"),
        ({"ttl_minutes": 0}, "ttl_minutes"),
    ],
)
def test_bad_fields_are_rejected_by_name(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        RetryConfig.model_validate(body)
    locs = {str(err["loc"][0]) for err in info.value.errors()}
    assert locs == {field}


def test_operator_may_widen_max_retries_but_caller_may_not() -> None:
    with pytest.raises(ValidationError):
        RetryConfig.model_validate({"max_retries": 5})
    wide = RetryConfig.model_validate({"max_retries": 5}, context={"max_retries_limit": 6})
    assert wide.max_retries == 5


def test_fractional_intervals_and_last_item_repeats() -> None:
    config = RetryConfig(max_retries=3, retry_intervals_minutes=(0.5,))
    assert [config.interval_minutes(n, "busy") for n in (1, 2, 3)] == [0.5, 0.5, 0.5]
    config = RetryConfig(retry_intervals_minutes=(1, 2))
    assert [config.interval_minutes(n, "busy") for n in (1, 2, 3)] == [1, 2, 2]


def test_per_status_intervals_override_the_list() -> None:
    config = RetryConfig.model_validate(
        {"retry_intervals_minutes": [30], "retry_intervals_by_status": {"busy": [2, 5]}}
    )
    assert config.interval_minutes(2, "busy") == 5
    assert config.interval_minutes(2, "no-answer") == 30


def test_duplicate_statuses_collapse() -> None:
    config = RetryConfig.model_validate({"retry_on_statuses": ["busy", "busy", "error"]})
    assert config.retry_on_statuses == (RetryableStatus.BUSY, RetryableStatus.ERROR)


@given(st.lists(st.floats(min_value=0, max_value=43200), min_size=1, max_size=5))
def test_interval_lookup_never_fails(intervals: list[float]) -> None:
    config = RetryConfig(max_retries=3, retry_intervals_minutes=tuple(intervals))
    for n in (1, 2, 3):
        assert config.interval_minutes(n, "busy") in intervals


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("+12025550123", "+12025550123"), (" +442079460000 ", "+442079460000")],
)
def test_e164_numbers_are_accepted(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("2025550123", "not E.164"),
        ("+1202555012\r\n", "CR, LF"),
        ("+12025550123;x", "';'"),
        ("+1999", "not a valid number"),
        ("+0123456", "not E.164"),
        ("", "not E.164"),
    ],
)
def test_bad_numbers_say_why(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_number(raw)


def test_operator_pattern_admits_extensions() -> None:
    assert normalize_number("2001", allow_pattern=re.compile(r"\d{3,5}")) == "2001"
    with pytest.raises(ValueError):
        normalize_number("2001")
    loose = re.compile(r".*")
    for sneaky in ("1\r\nAction: Hangup", "1,2", "1;2", "1&PJSIP/2"):
        with pytest.raises(ValueError):
            normalize_number(sneaky, allow_pattern=loose)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bad name", "x"),
        ("X", "a\r\nAction: Hangup"),
        ("X", "a\x00"),
        ("X", "a,b"),
        ("X", "a;b"),
        ("X", "a" * 2000),
    ],
)
def test_unsafe_variables_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        check_variable(name, value)


def test_call_request_validates_every_field() -> None:
    ok = CallRequest.model_validate(
        {
            "agent_id": "sales-ivr",
            "recipient_phone_number": "+12025550123",
            "user_data": {"name": "Ann", "vip": True, "n": 3},
            "scheduled_at": "2026-01-26T10:00:00Z",
            "retry_config": {"enabled": True},
        }
    )
    assert ok.user_data == {"name": "Ann", "vip": "true", "n": "3"}
    bad_bodies = {
        "recipient_phone_number": {"recipient_phone_number": "12345"},
        "agent_id": {"agent_id": "../etc"},
        "scheduled_at": {"scheduled_at": "2026-01-26T10:00:00"},
        "user_data": {"user_data": {"AUTORETRY_CALL_ID": "x"}},
        "webhook_url": {"webhook_url": "ftp://x"},
        "retry_config": {"retry_config": {"max_retries": 9}},
        "surprise": {"surprise": 1},
    }
    for field, patch in bad_bodies.items():
        body = {"agent_id": "sales-ivr", "recipient_phone_number": "+12025550123", **patch}
        with pytest.raises(ValidationError) as info:
            CallRequest.model_validate(body)
        text = str(info.value)
        assert field in text or (field == "webhook_url" and "webhook_url" in text), field


# ---- evolve: dataclasses.replace for Call and Attempt, cheaper -------------------------
_T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
_ATTEMPT = Attempt(
    id="att-1",
    call_id="call-1",
    number=1,
    status=AttemptStatus.RINGING,
    started_at=_T0,
    uniqueid="1769421600.1",
)
_CALL = Call(
    id="call-1",
    target="sales-ivr",
    to_number="+14155550123",
    status=CallStatus.RINGING,
    retry_config=RetryConfig(enabled=True),
    created_at=_T0,
    updated_at=_T0,
    scheduled_at=None,
    variables={"name": "Ada"},
    attempts=(_ATTEMPT,),
)
_CHANGES: dict[type, dict[str, Any]] = {
    Call: {
        "status": CallStatus.COMPLETED,
        "updated_at": _T0 + timedelta(minutes=3),
        "scheduled_at": _T0 + timedelta(hours=1),
        "retry_count": 2,
        "error_message": "x",
        "attempts": (),
        "variables": {},
    },
    Attempt: {
        "status": AttemptStatus.COMPLETED,
        "ended_at": _T0 + timedelta(minutes=3),
        "cause": 16,
        "cause_txt": "Normal Clearing",
        "permanent": True,
        "decision": "completed: no retry",
    },
}


@pytest.mark.parametrize("obj", [_CALL, _ATTEMPT], ids=["Call", "Attempt"])
@given(data=st.data())
def test_evolve_equals_dataclasses_replace(obj: Any, data: st.DataObject) -> None:
    changes = data.draw(st.dictionaries(st.sampled_from(sorted(_CHANGES[type(obj)])), st.none()))
    changes = {name: _CHANGES[type(obj)][name] for name in changes}
    new = evolve(obj, **changes)
    assert type(new) is type(obj)
    assert new == replace(obj, **changes)
    for f in fields(obj):  # fields left alone are the same objects, as replace leaves them
        if f.name not in changes:
            assert getattr(new, f.name) is getattr(obj, f.name)
    assert obj == replace(new, **{f.name: getattr(obj, f.name) for f in fields(obj)})


def test_evolve_refuses_an_unknown_field_and_stays_frozen() -> None:
    with pytest.raises(TypeError, match="Call has no field nosuch"):
        evolve(_CALL, status=CallStatus.COMPLETED, nosuch=1)  # type: ignore[call-arg]
    new = evolve(_CALL, status=CallStatus.COMPLETED)
    with pytest.raises(FrozenInstanceError):
        new.status = CallStatus.RINGING  # type: ignore[misc]


def test_evolve_of_other_dataclasses_is_replace() -> None:
    config = RetryConfig(enabled=True)
    outcome = Outcome(OutcomeStatus.BUSY, permanent=False, reason="SIP 486")
    assert evolve(outcome, permanent=True) == replace(outcome, permanent=True)
    with pytest.raises(TypeError):
        evolve(config)  # not a dataclass: replace's own error


def test_evolve_is_only_planned_where_copying_slots_equals_replace() -> None:
    @dataclass(frozen=True, slots=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n")

    with pytest.raises(TypeError, match="__post_init__"):
        evolve_plan(Checked)
    with pytest.raises(ValueError, match="n"):
        evolve(Checked(1), n=-1)  # not planned: replace, so __post_init__ runs
