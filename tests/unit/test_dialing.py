"""Dial requests, AMI Originate headers and call files: everything validated, nothing injected."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ami_listener.core.callfile import render
from ami_listener.core.dialing import (
    DialRequest,
    Target,
    build_request,
    check_template,
    dial_string,
    originate_headers,
)
from ami_listener.core.models import Attempt, AttemptStatus, Call, CallStatus, RetryConfig

T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
CALL = Call(
    id="c1",
    target="sales-ivr",
    to_number="+12025550123",
    status=CallStatus.INITIATED,
    retry_config=RetryConfig(),
    created_at=T0,
    updated_at=T0,
    scheduled_at=None,
    variables={"customer": "Ann"},
)
ATTEMPT = Attempt(id="a1b2", call_id="c1", number=2, status=AttemptStatus.DIALING, started_at=T0)
CONNECT = Target(context="autoretry-connect", extension="s", priority=1)


def _request(**kw: object) -> DialRequest:
    args: dict[str, object] = {
        "template": "PJSIP/{number}@carrier",
        "target": CONNECT,
        "ring_timeout_s": 30,
    }
    args.update(kw)
    return build_request(CALL, ATTEMPT, **args)  # type: ignore[arg-type]


def test_originate_carries_our_ids_and_inherited_variables() -> None:
    headers = originate_headers(_request(caller_id='"Sales" <1000>'))
    assert headers[:4] == [
        ("Action", "Originate"),
        ("ActionID", "a1b2"),
        ("ChannelId", "a1b2"),
        ("Channel", "PJSIP/+12025550123@carrier"),
    ]
    assert ("Timeout", "30000") in headers and ("Async", "true") in headers
    assert ("Exten", "s") in headers and ("CallerID", '"Sales" <1000>') in headers
    variables = [v for k, v in headers if k == "Variable"]
    assert variables == [
        "__customer=Ann",
        "__AUTORETRY_CALL_ID=c1",
        "__AUTORETRY_ATTEMPT_ID=a1b2",
        "__AUTORETRY_ATTEMPT=2",
    ]


def test_application_target_and_from_number_as_caller_id() -> None:
    call = replace(CALL, from_number="+14155550100")
    request = build_request(
        call,
        ATTEMPT,
        template="Local/{number}@outbound",
        target=Target(application="Playback", data="hello-world"),
        ring_timeout_s=20,
    )
    headers = dict(originate_headers(request))
    assert headers["Application"] == "Playback" and headers["Data"] == "hello-world"
    assert headers["CallerID"] == "+14155550100" and "Context" not in headers


def test_callfile_renders_pbx_spool_format() -> None:
    text = render(_request())
    lines = text.splitlines()
    assert lines[0] == "Channel: PJSIP/+12025550123@carrier"
    assert "MaxRetries: 0" in lines and "WaitTime: 30" in lines
    assert "Setvar: __AUTORETRY_ATTEMPT_ID=a1b2" in lines
    assert lines[-1] == "Archive: yes" and text.endswith("\n")
    app = render(replace(_request(), target=Target(application="Echo")))
    assert "Application: Echo" in app and "Context:" not in app


@pytest.mark.parametrize(
    "template",
    [
        "PJSIP/carrier",
        "PJSIP/{number}{number}",
        "PJSIP/{number}@a,b",
        "PJSIP/{number}@a;b",
        "PJSIP/{number}&SIP/x",
        "PJSIP/{number} @x",
        "{number}",
        "PJSIP/{number}\r\nAction: Hangup",
    ],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        check_template(template)


@pytest.mark.parametrize("number", ["+1202,555", "+1;2", "1\r\n2", "", "a" * 40, "1&2"])
def test_numbers_that_would_split_the_dial_string_are_refused(number: str) -> None:
    with pytest.raises(ValueError):
        dial_string("PJSIP/{number}@carrier", number)


@pytest.mark.parametrize(
    "kw",
    [
        {"caller_id": "x\r\nAction: Hangup"},
        {"ring_timeout_s": 0},
        {"ring_timeout_s": 10_000},
    ],
)
def test_bad_dial_arguments_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _request(**kw)


def test_bad_variables_never_reach_asterisk() -> None:
    call = replace(CALL, variables={"x": "a\nAction: Hangup"})
    with pytest.raises(ValueError, match="CR, LF"):
        build_request(call, ATTEMPT, template="PJSIP/{number}", target=CONNECT, ring_timeout_s=30)
    bad_id = replace(ATTEMPT, id="a1;b")
    with pytest.raises(ValueError, match="ChannelId"):
        build_request(CALL, bad_id, template="PJSIP/{number}", target=CONNECT, ring_timeout_s=30)


@pytest.mark.parametrize(
    "kw",
    [
        {"context": "a b", "extension": "s"},
        {"context": "ctx"},
        {"context": "ctx", "extension": "s", "application": "Echo"},
        {"application": "Echo", "data": "x\ny"},
        {"context": "ctx", "extension": "s", "priority": 0},
    ],
)
def test_bad_targets_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Target(**kw)  # type: ignore[arg-type]


def test_renderers_refuse_values_that_slipped_past_construction() -> None:
    # DialRequest is a plain value; the renderers check again at the last moment.
    sneaky = replace(_request(), caller_id="x\nSetvar: EVIL=1")
    with pytest.raises(ValueError):
        originate_headers(sneaky)
    with pytest.raises(ValueError):
        render(sneaky)
    with pytest.raises(ValueError):
        render(replace(_request(), target=Target(application="Echo", data="a;b")))


@given(st.text(max_size=40))
def test_no_value_ever_puts_a_line_break_into_an_originate(value: str) -> None:
    call = replace(CALL, variables={"v": value})
    try:
        request = build_request(
            call, ATTEMPT, template="PJSIP/{number}", target=CONNECT, ring_timeout_s=30
        )
    except ValueError:
        return
    for key, text in originate_headers(request):
        assert "\r" not in text and "\n" not in text and "\x00" not in text, key
    assert all(line.count(": ") >= 1 for line in render(request).splitlines())
