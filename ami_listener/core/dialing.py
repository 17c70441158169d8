"""What one dial of an attempt says to Asterisk, validated once for both dialers.

``DialRequest`` is built from the operator's channel template, the call (already
validated at the edge) and the attempt; ``originate_headers`` renders it as an AMI
Originate and ``callfile.render`` as a call file. Every value is checked here a second
time, at the last point before it reaches Asterisk (invariant 6): CR, LF and NUL can
never be written, and the dial string only ever comes from the configured template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .models import CONTROL_CHARS, Attempt, Call, check_variable

# What a number may look like inside a dial string: E.164 or an operator-allowed pattern
# that was already matched; never anything that could split the channel argument.
_NUMBER_IN_CHANNEL = re.compile(r"^\+?[0-9A-Za-z*#_.-]{1,32}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+*#-]{1,80}$")  # context, extension, application
_TEMPLATE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/[^\s,;|&]*\{number\}[^\s,;|&]*$")

CALL_ID_VAR = "AUTORETRY_CALL_ID"
ATTEMPT_ID_VAR = "AUTORETRY_ATTEMPT_ID"
ATTEMPT_NUMBER_VAR = "AUTORETRY_ATTEMPT"
INHERIT = "__"  # Asterisk copies `__NAME` to every channel created from this one (Dial legs)


@dataclass(frozen=True, slots=True)
class Target:
    """Where an answered call goes: a dialplan location, or an application and its data."""

    context: str | None = None
    extension: str | None = None
    priority: int = 1
    application: str | None = None
    data: str = ""

    def __post_init__(self) -> None:
        location = self.context is not None and self.extension is not None
        if location == (self.application is not None):
            raise ValueError("a target is either context+extension(+priority) or application")
        for name in (self.context, self.extension, self.application):
            if name is not None and not _NAME.match(name):
                raise ValueError(f"target name {name!r} has characters Asterisk would misread")
        if CONTROL_CHARS.search(self.data):
            raise ValueError("target data contains CR, LF or NUL")
        if not 1 <= self.priority <= 99999:
            raise ValueError(f"target priority {self.priority} out of range")


def check_template(template: str) -> str:
    """Raise ValueError unless ``template`` is ``TECH/...{number}...`` with no separators."""
    if CONTROL_CHARS.search(template) or template.count("{number}") != 1:
        raise ValueError("channel template must contain {number} exactly once and no CR/LF/NUL")
    if not _TEMPLATE.match(template):
        raise ValueError(
            f"channel template {template!r} must look like TECH/resource with {{number}} "
            "and no spaces, ',', ';', '|' or '&'"
        )
    return template


def dial_string(template: str, number: str) -> str:
    if not _NUMBER_IN_CHANNEL.match(number):
        raise ValueError(f"number {number!r} cannot be placed in a dial string")
    return check_template(template).replace("{number}", number)


def _check_text(name: str, value: str) -> str:
    if CONTROL_CHARS.search(value):
        raise ValueError(f"{name} contains CR, LF or NUL")
    return value


@dataclass(frozen=True, slots=True)
class DialRequest:
    attempt_id: str
    channel: str
    target: Target
    timeout_s: float  # ring time
    caller_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)  # names as sent (with `__`)


def build_request(
    call: Call,
    attempt: Attempt,
    *,
    template: str,
    target: Target,
    ring_timeout_s: float,
    caller_id: str | None = None,
) -> DialRequest:
    """The validated dial of ``attempt``: our correlation variables plus the call's own."""
    if not 1 <= ring_timeout_s <= 600:
        raise ValueError(f"ring timeout {ring_timeout_s} s out of range 1..600")
    if not _NAME.match(attempt.id):
        raise ValueError(f"attempt id {attempt.id!r} is not usable as a ChannelId")
    ours = {
        CALL_ID_VAR: call.id,
        ATTEMPT_ID_VAR: attempt.id,
        ATTEMPT_NUMBER_VAR: str(attempt.number),
    }
    variables: dict[str, str] = {}
    for name, value in {**call.variables, **ours}.items():
        check_variable(name, value)
        variables[INHERIT + name] = value
    if call.from_number and caller_id is None:
        caller_id = call.from_number
    return DialRequest(
        attempt_id=attempt.id,
        channel=dial_string(template, call.to_number),
        target=target,
        timeout_s=ring_timeout_s,
        caller_id=_check_text("caller id", caller_id) if caller_id else None,
        variables=variables,
    )


def originate_headers(request: DialRequest) -> list[tuple[str, str]]:
    """The AMI ``Originate`` for ``request`` as ordered headers (``Variable`` repeats).

    ``Async: true`` so the reply comes at once and the outcome as an OriginateResponse;
    ``ChannelId`` is our attempt id, so the Uniqueid is known before any event arrives.
    """
    target = request.target
    headers = [
        ("Action", "Originate"),
        ("ActionID", request.attempt_id),
        ("ChannelId", request.attempt_id),
        ("Channel", request.channel),
    ]
    if target.application is not None:
        headers += [("Application", target.application), ("Data", target.data)]
    else:
        assert target.context is not None and target.extension is not None
        headers += [
            ("Context", target.context),
            ("Exten", target.extension),
            ("Priority", str(target.priority)),
        ]
    headers.append(("Timeout", str(int(request.timeout_s * 1000))))
    if request.caller_id:
        headers.append(("CallerID", request.caller_id))
    headers.append(("Async", "true"))
    headers += [("Variable", f"{k}={v}") for k, v in request.variables.items()]
    for key, value in headers:
        _check_text(f"Originate {key}", value)
    return headers
