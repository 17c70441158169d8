"""One simulated call: the events Asterisk 20 publishes from dial to the last Hangup.

A call is played as bursts of events separated by (scaled) waits: setup + ringing, then
what the far end did, then (if answered) AMD and the hangup. Inside a burst, events are
grouped in phases (causal steps) and each phase in streams (one per channel, plus lone
events); streams are interleaved at random, keeping each stream's order, which is the
variation README point 1 describes. The originate's result (OriginateResponse, or the
reply of a synchronous Originate) is one more item placed at a random point from the
phase where the outcome is known; for a failure with no waits that is anywhere in the call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ami_listener import sim_channels as ev
from ami_listener.sim_channels import RINGING, UP, Channel
from ami_listener.sim_scenarios import AMD_CAUSES, FarEnd, Target
from ami_listener.sim_wire import Message, Session

Stream = list["Item"]
Phase = list[Stream]


@dataclass
class Reply:
    """The reply of a synchronous Originate, sent to one session in the event order."""

    session: Session | None
    message: Message
    sent: asyncio.Event = field(default_factory=asyncio.Event)


Item = Message | Reply
AmdHeaders = Callable[[str, str, Mapping[str, str]], list[tuple[str, str]]]


def default_amd_headers(status: str, cause: str, variables: Mapping[str, str]) -> Message:
    """``UserEvent(AutoretryAMD,AMDSTATUS: ...,AMDCAUSE: ...,<each channel variable>)``."""
    return [("AMDSTATUS", status), ("AMDCAUSE", cause), *variables.items()]


class Host(Protocol):
    """What a call needs from the simulator."""

    rng: random.Random
    tech_cause: bool
    trunk: str
    trunk_context: str
    amd_event: str
    amd_headers: AmdHeaders
    inherit_varset: bool
    unregistered: frozenset[str]

    def scaled(self, seconds: float) -> float: ...
    def new_uniqueid(self) -> str: ...
    def new_channel(
        self, base: str, uniqueid: str, linkedid: str, context: str, exten: str
    ) -> Channel: ...
    def new_local_name(self, base: str) -> str: ...
    def add_channel(self, channel: Channel, call: CallRun) -> None: ...
    def emit(self, items: list[Item]) -> None: ...


@dataclass
class CallSpec:
    target: Target
    far: FarEnd
    origin_dial: str
    """``Tech/data`` as sent; the Channel of a failed OriginateResponse."""
    context: str = ""
    exten: str = ""
    priority: int = 1
    application: str = ""
    data: str = ""
    timeout_s: float = 30.0
    cid_num: str = ev.UNKNOWN
    cid_name: str = ev.UNKNOWN
    variables: list[tuple[str, str]] = field(default_factory=list)
    """In the order Asterisk sets them on the originated channel."""
    channel_id: str = ""
    other_channel_id: str = ""
    action_id: str = ""
    result: str = "event"
    """``event`` (async Originate), ``reply`` (sync Originate), ``none`` (call file)."""
    reply_to: Session | None = None
    ring_s: float = 1.0
    answer_hold_s: float = 3.0
    amd_s: float = 1.5


def merge(
    rng: random.Random, phases: list[Phase], result: Item | None, result_from: int
) -> list[Item]:
    out: list[Item] = []
    start = 0
    for index, phase in enumerate(phases):
        if index == result_from:
            start = len(out)
        streams = [list(s) for s in phase if s]
        while streams:
            k = rng.choices(range(len(streams)), weights=[len(s) for s in streams])[0]
            out.append(streams[k].pop(0))
            if not streams[k]:
                streams.pop(k)
    if result is not None:
        out.insert(rng.randint(start, len(out)), result)
    return out


class CallRun:
    def __init__(self, host: Host, spec: CallSpec) -> None:
        self.host = host
        self.spec = spec
        self.answered = False
        self.channels: list[Channel] = []
        self.reply_sent = asyncio.Event()
        self._hangup = asyncio.Event()
        self.hangup_target: Channel | None = None
        self.hangup_cause = 16

    def request_hangup(self, channel: Channel, cause: int) -> None:
        """AMI ``Hangup``: takes effect at the call's next wait, as a soft hangup does."""
        if not self._hangup.is_set():
            self.hangup_target, self.hangup_cause = channel, cause
            self._hangup.set()

    async def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (scaled); True if an AMI Hangup came first."""
        if not self._hangup.is_set():
            try:
                await asyncio.wait_for(self._hangup.wait(), self.host.scaled(max(seconds, 0.0)))
            except TimeoutError:
                return False
        return True

    def emit(self, phases: list[Phase], result: Item | None = None, result_from: int = 0) -> None:
        self.host.emit(merge(self.host.rng, phases, result, result_from))

    def result_item(self, success: bool, reason: int, channel: Channel | None) -> Item | None:
        s = self.spec
        if s.result == "none":
            return None
        if s.result == "reply":
            text = "Originate successfully queued" if success else "Originate failed"
            reply: Message = [("Response", "Success" if success else "Error")]
            if s.action_id:
                reply.append(("ActionID", s.action_id))
            return Reply(s.reply_to, [*reply, ("Message", text)], self.reply_sent)
        message: Message = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
        if s.action_id:
            message.append(("ActionID", s.action_id))
        message += [("Response", "Success" if success else "Failure")]
        message += [("Channel", channel.name if channel else s.origin_dial)]
        if s.application:
            message += [("Application", s.application), ("Data", s.data)]
        else:
            message += [("Context", s.context), ("Exten", s.exten)]
        message += [
            ("Reason", str(reason)),
            ("Uniqueid", channel.uniqueid if channel else "<unknown>"),
        ]
        return [*message, ("CallerIDNum", s.cid_num), ("CallerIDName", s.cid_name)]

    def fail_without_channel(self) -> None:
        """Unknown technology or unregistered peer: Reason 0, no channel events (notech)."""
        item = self.result_item(False, 0, None)
        self.emit([], item)

    def tech_cause(self) -> int | None:
        return self.spec.far.sip_code if self.host.tech_cause else None

    def connect(self, ch: Channel) -> Stream:
        """The answered originated channel runs the Originate's Context/Exten (or app)."""
        s = self.spec
        if s.application:
            ch.application, ch.app_data = s.application, s.data
            return []
        ev.enter_dialplan(ch, s.context, s.exten, s.priority)
        return [
            ev.newexten(ch, "NoOp", f"answered {ch.name}"),
            ev.newexten(ch, "Wait", str(max(1, round(s.answer_hold_s)))),
        ]

    def amd(self, ch: Channel) -> Stream:
        status = self.spec.far.amd
        cause = AMD_CAUSES[status]
        variables = {name.lstrip("_"): value for name, value in self.spec.variables}
        fields = self.host.amd_headers(status, cause, variables)
        app_data = ",".join([self.host.amd_event, *(f"{k}: {v}" for k, v in fields)])
        return [
            ev.newexten(ch, "AMD", ""),
            ev.varset(ch, "AMDSTATUS", status),
            ev.varset(ch, "AMDCAUSE", cause),
            ev.newexten(ch, "UserEvent", app_data),
            ev.user_event(ch, self.host.amd_event, fields),
        ]

    async def after_answer(
        self, main: Channel, hangup: Callable[[Channel | None, int], list[Phase]]
    ) -> None:
        s = self.spec
        waited = 0.0
        if s.far.amd:
            waited = min(s.amd_s, s.answer_hold_s)
            if await self.wait(waited):
                self.emit(hangup(self.hangup_target, self.hangup_cause))
                return
            self.emit([[self.amd(main)]])
        if await self.wait(s.answer_hold_s - waited):
            self.emit(hangup(self.hangup_target, self.hangup_cause))
        else:
            self.emit(hangup(None, 16))

    # -- direct SIP / PJSIP: one channel, originated by main/dial.c ---------------------

    async def run_direct(self) -> None:
        s, t, far = self.spec, self.spec.target, self.spec.far
        uid = s.channel_id or self.host.new_uniqueid()
        x = self.host.new_channel(f"{t.tech}/{t.endpoint}", uid, uid, self.host.trunk_context, "s")
        self.channels = [x]
        self.host.add_channel(x, self)
        setup: Stream = [ev.newchannel(x)]
        if t.tech == "SIP":
            setup.append(
                ev.varset(x, "SIPCALLID", f"{self.host.rng.getrandbits(128):032x}@127.0.0.1:5060")
            )
        x.exten = ""
        setup.append(ev.newexten(x, "AppDial2", "(Outgoing Line)", step=False))
        setup += [ev.varset(x, name, value) for name, value in s.variables]
        setup.append(ev.newcallerid(x, s.cid_num, s.cid_name))
        x.connected_num, x.connected_name = s.cid_num, s.cid_name
        setup.append(ev.dial_begin(None, x, t.dial_string))
        if far.kind in ("control", "hangup"):
            end = self._direct_failure(x, far)
            self.emit(
                [[setup], [end]],
                self.result_item(
                    False, 5 if far.control == "BUSY" else 8 if far.control else 0, None
                ),
            )
            return
        self.emit([[setup], [[ev.newstate(x, RINGING), ev.dial_state(None, x, "RINGING")]]])
        answer_after = s.ring_s if far.kind == "answer" else float("inf")
        if await self.wait(min(answer_after, s.timeout_s)):
            cause = self.hangup_cause
            end = [ev.dial_end(None, x, "NOANSWER"), ev.hangup(x, cause)]
            self.emit([[end]], self.result_item(False, 0, None))
        elif answer_after >= s.timeout_s:
            self.emit([[[ev.hangup(x, 19)]]], self.result_item(False, 3, None))
        else:
            self.answered = True
            up = [ev.newstate(x, UP), ev.dial_end(None, x, "ANSWER"), *self.connect(x)]
            self.emit([[up]], self.result_item(True, 4, x))
            await self.after_answer(x, self._direct_hangup)

    def _direct_failure(self, x: Channel, far: FarEnd) -> Stream:
        if far.kind == "control":
            return [ev.dial_end(None, x, far.control), ev.hangup(x, far.cause, self.tech_cause())]
        return [
            ev.hangup_request(x, far.cause),
            ev.dial_end(None, x, ev.dial_status_for_cause(far.cause)),
            ev.hangup(x, far.cause, self.tech_cause()),
        ]

    def _direct_hangup(self, target: Channel | None, cause: int) -> list[Phase]:
        x = self.channels[0]
        if target is None:  # the far end sends BYE
            return [
                [[ev.hangup_request(x, 16), ev.hangup_request(x, 16, soft=True), ev.hangup(x, 16)]]
            ]
        return [[[ev.hangup(x, cause)]]]
