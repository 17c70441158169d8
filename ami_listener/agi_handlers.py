"""The AGI hooks (AMD, manage, report) as sans-I/O generators, shared by both transports.

A hook is a generator: it yields AGI command lines and is sent back each ``Reply``; its
return value is a ``Verdict``. ``fastagi.py`` drives it over a socket, ``run_process``
(``agi_protocol.py``, with the rest of the wire protocol) over stdin/stdout for the
scripts in ``agi/``. So both transports run the same logic and the tests can play
Asterisk's side exactly once.

This module is imported by a fresh Python per call (process AGI), so it imports only what
pyst2 already loaded (``re``, ``collections.abc``): no pydantic, aiohttp, sqlite, panoramisk.

What we learn reaches the daemon as a ``UserEvent`` over AMI (correlated by our channel
variables), so no hook needs a database or a secret. Everything read from the channel or
the arguments is reduced to a safe alphabet before it is written back: ``,`` and ``|``
split UserEvent fields, CR/LF end AGI and AMI lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from .agi_protocol import (
    CLOSED,
    CONTROL,
    Hook,
    Reply,
    ReplyReader,
    Request,
    Verdict,
    clean,
    parse_reply,
    quote,
    run_process,
    run_script,
)

# Re-exported: fastagi.py, the agi/ scripts and tests import these from here.
__all__ = [
    "AMD_EVENT",
    "CLOSED",
    "MANAGE_EVENT",
    "OURS",
    "REPORT_EVENT",
    "ROUTES",
    "AmdParams",
    "Hook",
    "Refused",
    "Reply",
    "ReplyReader",
    "Request",
    "Verdict",
    "amd_hook",
    "clean",
    "main_process",
    "manage_hook",
    "parse_amd_args",
    "parse_reply",
    "quote",
    "report_hook",
    "run_process",
]

AMD_EVENT = "AutoretryAMD"
MANAGE_EVENT = "AutoretryManage"
REPORT_EVENT = "AutoretryReport"
OURS = ("AUTORETRY_CALL_ID", "AUTORETRY_ATTEMPT_ID", "AUTORETRY_ATTEMPT")  # core/dialing.py

_ID = re.compile(r"^[A-Za-z0-9_.+*#-]{1,80}$")  # what core/dialing.py accepts as attempt id
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # config names (profiles, targets)
_NUMBER = re.compile(r"^\+?[0-9A-Za-z*#_.-]{1,32}$")  # the daemon validates it properly
_SOUND = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_/.-]{0,127}$")  # as TargetSettings
_CHANNEL = re.compile(r"^[A-Za-z0-9/@._;:+-]{1,128}$")  # a key of HANGUPCAUSE_KEYS()
_TECH_CODE = re.compile(r"^(?:PJSIP|SIP)\s+([1-6][0-9][0-9])\b")
_AMD_LIMIT_MS = 60_000
_AMD_ARGS = ("initial_silence", "greeting", "after_greeting_silence", "total_analysis_time")


class AmdParams:
    """AMD() arguments (None: amd.conf's value) and what to do about a machine."""

    __slots__ = (*_AMD_ARGS, "machine_action", "machine_message", "notsure_is_machine")

    def __init__(
        self,
        initial_silence: int | None = None,
        greeting: int | None = None,
        after_greeting_silence: int | None = None,
        total_analysis_time: int | None = None,
        machine_action: str = "hangup",  # or "message"
        machine_message: str | None = None,
        notsure_is_machine: bool = False,
    ) -> None:
        self.initial_silence = initial_silence
        self.greeting = greeting
        self.after_greeting_silence = after_greeting_silence
        self.total_analysis_time = total_analysis_time
        self.machine_action = machine_action
        self.machine_message = machine_message
        self.notsure_is_machine = notsure_is_machine

    def but(self, name: str, value: object) -> AmdParams:
        """A copy with ``name`` changed (instances are treated as immutable)."""
        copy = AmdParams()
        for slot in self.__slots__:
            setattr(copy, slot, value if slot == name else getattr(self, slot))
        return copy

    def amd_data(self) -> str:
        values = [getattr(self, name) for name in _AMD_ARGS]
        return ",".join("" if v is None else str(v) for v in values).rstrip(",")


class Refused(ValueError):
    """An argument or channel value we will not act on (hostile or a dialplan mistake)."""


def parse_amd_args(args: Sequence[str], base: AmdParams | None = None) -> AmdParams:
    """``key=value`` arguments (later ones win; ``&`` or blanks may join several in one,
    so a per-call variable can carry them); an empty argument is an unset variable."""
    params = base or AmdParams()
    for arg in args:
        for item in re.split(r"[&\s]+", arg.strip()):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise Refused(f"AMD argument {clean(item)!r} is not key=value")
            params = _amd_param(params, key.strip().lower(), value.strip())
    if params.machine_action == "message" and params.machine_message is None:
        raise Refused("machine_action=message needs machine_message")
    return params


def _amd_param(params: AmdParams, key: str, value: str) -> AmdParams:
    if not value:
        return params  # ${UNSET_VARIABLE}: keep the default
    key = key.removesuffix("_ms")
    if key in _AMD_ARGS:
        if not value.isdigit() or not 0 < int(value) <= _AMD_LIMIT_MS:
            raise Refused(f"{key} must be 1..{_AMD_LIMIT_MS} ms")
        return params.but(key, int(value))
    if key == "machine_action" and value in ("hangup", "message"):
        return params.but("machine_action", value)
    if key == "machine_message" and _SOUND.match(value) and ".." not in value:
        return params.but("machine_message", value)
    if key == "notsure" and value in ("human", "machine"):
        return params.but("notsure_is_machine", value == "machine")
    if key == "target" and _NAME.match(value):
        return params  # consumed by the FastAGI server (per-target defaults)
    raise Refused(f"AMD argument {clean(key)!r} has an unusable value")


def _fields(reply: Reply, count: int) -> list[str] | None:
    """The ``|``-joined values of one GET FULL VARIABLE, or None if the reply is unusable."""
    if reply.code != 200 or reply.result != "1":
        return None
    parts = reply.data.split("|", count - 1)
    return parts if len(parts) == count else None


def _joined(names: Sequence[str]) -> str:
    return "GET FULL VARIABLE " + quote("|".join("${" + n + "}" for n in names))


def _ours(values: Sequence[str]) -> dict[str, str] | None:
    call_id, attempt_id, attempt = values
    if not (_ID.match(call_id) and _ID.match(attempt_id) and attempt.isdigit()):
        return None
    return dict(zip(OURS, values, strict=True))


def _event(name: str, headers: Mapping[str, str]) -> str:
    # UserEvent(eventname,body): fields split on ',', "key: value" each (app_userevent).
    return ",".join([name, *(f"{k}: {clean(v)}" for k, v in headers.items())])


def _finish(status: str, detail: str = "", event: str = "") -> Hook:
    """Tell the dialplan (``${AUTORETRY_HOOK}``) and the console what happened."""
    yield "SET VARIABLE AUTORETRY_HOOK " + quote(status)
    if detail:
        yield "VERBOSE " + quote("autoretry: " + CONTROL.sub("?", detail)[:200]) + " 3"
    return Verdict(status, detail, event)


def amd_hook(request: Request, base: AmdParams | None = None) -> Hook:
    """Run AMD(), publish AMDSTATUS/AMDCAUSE, then act: a person (or not-sure, unless
    the operator counts it as a machine) goes on to the target; a machine is hung up,
    after a message if the target says so."""
    try:
        params = parse_amd_args(request.args, base)
    except Refused as exc:
        return (yield from _finish("ERROR", str(exc)))
    reply = yield _joined(OURS)
    values = _fields(reply, 3)
    ours = _ours(values) if values is not None else None
    if reply.code == 0 or reply.hangup:
        return Verdict("HANGUP", "the channel hung up before AMD")
    if ours is None:
        return (yield from _finish("SKIPPED", "not an autoretry call (no AUTORETRY_ vars)"))
    reply = yield "EXEC AMD " + quote(params.amd_data())
    if reply.code == 0:
        return Verdict("HANGUP", "the peer closed during AMD")
    hung_up = reply.hangup
    reply = yield _joined(("AMDSTATUS", "AMDCAUSE"))
    hung_up |= reply.hangup
    result = _fields(reply, 2) or ["", ""]
    # Empty when AMD could not start (CAUSES.md §4): published empty, the daemon's
    # classify then says "AMD did not start"; the call goes on as for a person.
    status = clean(result[0].strip().upper(), 16)
    event = _event(AMD_EVENT, {"AMDSTATUS": status, "AMDCAUSE": result[1], **ours})
    reply = yield "EXEC UserEvent " + quote(event)
    hung_up |= reply.hangup or reply.code == 0
    machine = status == "MACHINE" or (status == "NOTSURE" and params.notsure_is_machine)
    if hung_up or status == "HANGUP":
        return Verdict("HANGUP", "the callee hung up during AMD", event)
    yield "SET VARIABLE AUTORETRY_AMD " + quote("MACHINE" if machine else "HUMAN")
    if not machine:
        return (yield from _finish(status or "NONE", "", event))
    if params.machine_action == "message" and params.machine_message:
        # Leave the message after the greeting: wait for its silence (at most 30 s).
        yield "EXEC WaitForSilence " + quote("1500,1,30")
        yield "EXEC Playback " + quote(params.machine_message)
    yield "HANGUP"
    return Verdict("MACHINE", params.machine_action, event)


def manage_hook(request: Request) -> Hook:
    """After a failed Dial() of a call someone else placed: hand it to us for retries
    under a retry profile. Arguments: profile[,number[,target]] (number: ${EXTEN})."""
    args = [*request.args, "", "", ""][:3]
    profile, number = args[0].strip(), args[1].strip() or request.env.get("agi_extension", "")
    target = args[2].strip()
    if not _NAME.match(profile):
        return (yield from _finish("ERROR", "the first argument must be a retry profile"))
    if not _NUMBER.match(number) or (target and not _NAME.match(target)):
        return (yield from _finish("ERROR", "unusable number or target"))
    names = (*OURS[:1], "DIALSTATUS", "HANGUPCAUSE", "HANGUPCAUSE_KEYS()")
    reply = yield _joined(names)
    values = _fields(reply, 4)
    if values is None:
        return Verdict("ERROR", "could not read DIALSTATUS")
    call_id, dial_status, cause, keys = values
    dial_status = clean(dial_status.upper())
    if call_id:
        return (yield from _finish("OURS", "already an autoretry call"))
    if not dial_status:
        return (yield from _finish("ERROR", "no DIALSTATUS: run this hook after Dial()"))
    if dial_status == "ANSWER":
        return (yield from _finish("ANSWERED"))
    headers = {"PROFILE": profile, "NUMBER": number, "TARGET": target}
    headers |= {"DIALSTATUS": dial_status, "HANGUPCAUSE": cause}
    first = keys.split(",", 1)[0].strip()
    if _CHANNEL.match(first):
        reply = yield _joined((f"HANGUPCAUSE({first},tech)",))
        tech = _TECH_CODE.match(reply.data.strip()) if reply.ok else None
        if tech is not None:
            headers["TECHCAUSE"] = tech[1]
    event = _event(MANAGE_EVENT, headers)
    yield "EXEC UserEvent " + quote(event)
    return (yield from _finish("PUBLISHED", "", event))


def report_hook(request: Request) -> Hook:
    """From a call file's ``failed`` extension (Asterisk sets ``${REASON}``) or an ``h``
    extension: report the outcome when AMI call events are filtered out."""
    hook = (request.args[0].strip() if request.args else "") or "h"
    if hook not in ("failed", "h"):
        return (yield from _finish("ERROR", "the argument must be failed or h"))
    reply = yield _joined((*OURS, "REASON", "DIALSTATUS", "HANGUPCAUSE"))
    values = _fields(reply, 6)
    ours = _ours(values[:3]) if values is not None else None
    if values is None or ours is None:
        return (yield from _finish("SKIPPED", "not an autoretry call (no AUTORETRY_ vars)"))
    reason, dial_status, cause = values[3:]
    headers = {"HOOK": hook, "REASON": reason, "DIALSTATUS": dial_status.upper()}
    event = _event(REPORT_EVENT, headers | {"HANGUPCAUSE": cause, **ours})
    yield "EXEC UserEvent " + quote(event)
    return Verdict("PUBLISHED", "", event)


ROUTES: Mapping[str, Callable[[Request], Hook]] = {
    "amd": amd_hook,
    "manage": manage_hook,
    "report": report_hook,
}
"""FastAGI path -> hook; the process scripts are ``agi/autoretry-<name>.py``."""


def main_process(route: str) -> int:
    """Entry point of the ``agi/`` scripts: run hook ``route`` over stdin/stdout."""
    return run_script(route, ROUTES)
