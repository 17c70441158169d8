"""The daemon's side of the manage hook: an AutoretryManage UserEvent becomes a call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ami_listener.config import Settings
from ami_listener.core.lifecycle import Notify, Schedule
from ami_listener.core.models import AttemptStatus, CallStatus
from ami_listener.errors import ValidationError
from ami_listener.manage import call_from_manage_event

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def settings(**extra: Any) -> Settings:
    raw: dict[str, Any] = {
        "ami": {"username": "autoretry", "secret": "s"},
        "api": {"token": "t"},
        "dialer": {"channel": "PJSIP/{number}@carrier", "number_pattern": "^[0-9]{3,6}$"},
        "targets": {
            "sales": {"context": "autoretry-connect", "extension": "sales", "trunk": "carrier"}
        },
        "profiles": {
            "default": {"enabled": True, "max_retries": 2, "retry_intervals_minutes": [5]},
            "off": {"enabled": False},
        },
    }
    raw.update(extra)
    return Settings.from_mapping(raw, {})


def event(**headers: str) -> dict[str, str]:
    base = {
        "Event": "UserEvent",
        "UserEvent": "AutoretryManage",
        "Channel": "PJSIP/alice-00000003",
        "Uniqueid": "1795861969.76",
        "CallerIDNum": "+14155550199",
        "PROFILE": "default",
        "NUMBER": "+14155550100",
        "TARGET": "sales",
        "DIALSTATUS": "BUSY",
        "HANGUPCAUSE": "17",
        "TECHCAUSE": "486",
    }
    return base | headers


def ids() -> str:
    return "call-1"


def test_busy_external_call_is_scheduled_for_retry() -> None:
    result = call_from_manage_event(event(), settings(), NOW, ids)
    assert result is not None
    call, effects = result
    assert (call.id, call.target, call.to_number) == ("call-1", "sales", "+14155550100")
    assert call.from_number == "+14155550199"
    assert call.status is CallStatus.SCHEDULED
    assert call.retry_count == 1
    assert call.scheduled_at == NOW + timedelta(minutes=5)
    (attempt,) = call.attempts
    assert attempt.id == attempt.uniqueid == "1795861969.76"
    assert attempt.status is AttemptStatus.BUSY
    assert (attempt.cause, attempt.tech_cause, attempt.dial_status) == (17, 486, "BUSY")
    assert effects == (
        Notify(CallStatus.QUEUED),
        Notify(CallStatus.INITIATED),
        Notify(CallStatus.SCHEDULED),
        Schedule(NOW + timedelta(minutes=5)),
    )


def test_permanent_failure_is_final() -> None:
    msg = event(DIALSTATUS="CHANUNAVAIL", HANGUPCAUSE="1", TECHCAUSE="404")
    result = call_from_manage_event(msg, settings(), NOW, ids)
    assert result is not None
    call, effects = result
    assert call.status is CallStatus.FAILED
    assert call.attempts[0].permanent
    assert not any(isinstance(e, Schedule) for e in effects)


def test_profile_without_retries_records_the_final_status() -> None:
    result = call_from_manage_event(event(PROFILE="off"), settings(), NOW, ids)
    assert result is not None
    assert result[0].status is CallStatus.BUSY


@pytest.mark.parametrize(
    "msg",
    [
        event(DIALSTATUS="ANSWER"),
        event(UserEvent="AutoretryAMD"),
        {"Event": "Hangup", "Uniqueid": "1.2"},
    ],
)
def test_nothing_to_manage(msg: dict[str, str]) -> None:
    assert call_from_manage_event(msg, settings(), NOW, ids) is None


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"PROFILE": "nosuch"}, "PROFILE"),
        ({"TARGET": "nosuch"}, "TARGET"),
        ({"NUMBER": "+1415555010"}, "NUMBER"),
        ({"NUMBER": "+14155550100\r\nAction: Originate"}, "NUMBER"),
        ({"NUMBER": "12,34"}, "NUMBER"),
        ({"Uniqueid": "<unknown>"}, "Uniqueid"),
        ({"Uniqueid": ";\r\n"}, "Uniqueid"),
        ({"DIALSTATUS": ""}, "DIALSTATUS"),
        ({"DIALSTATUS": "BUSY,X"}, "DIALSTATUS"),
    ],
)
def test_invalid_events_are_refused(headers: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        call_from_manage_event(event(**headers), settings(), NOW, ids)
    assert info.value.field == field


def test_operator_pattern_numbers_and_hostile_uniqueid() -> None:
    msg = event(NUMBER="4021", Uniqueid="1795.7;x\r\n", CallerIDNum="bogus")
    result = call_from_manage_event(msg, settings(), NOW, ids)
    assert result is not None
    call, _ = result
    assert call.to_number == "4021"
    assert call.from_number is None
    assert call.attempts[0].id == "1795.7x"


def test_single_target_is_the_default() -> None:
    result = call_from_manage_event(event(TARGET=""), settings(), NOW, ids)
    assert result is not None and result[0].target == "sales"
