"""A call through ``Local/<number>@<context>``: the siplocal-*.ami shape.

``;1`` is the originated half (it will run the Originate's Context/Exten when answered);
``;2`` runs ``<context>``, which ``Dial()``s ``PJSIP/<number>@<trunk>`` and then falls
off the end of the dialplan. Everything shares ``;1``'s Uniqueid as Linkedid. With a
ChannelId, ``;2`` gets OtherChannelId or ChannelId + ";2" (core_unreal.c does that).
"""

from __future__ import annotations

from ami_listener import sim_channels as ev
from ami_listener.sim_calls import CallRun, Phase, Stream
from ami_listener.sim_channels import BUSY, RING, RINGING, UP, Channel


class LocalCall:
    def __init__(self, call: CallRun) -> None:
        self.call = call
        host, spec, t = call.host, call.spec, call.spec.target
        uid1 = spec.channel_id or host.new_uniqueid()
        if spec.other_channel_id:
            uid2 = spec.other_channel_id
        else:
            uid2 = spec.channel_id + ";2" if spec.channel_id else host.new_uniqueid()
        name = host.new_local_name(f"Local/{t.number}@{t.endpoint}")
        self.one = Channel(name + ";1", uid1, uid1, t.endpoint, t.number)
        self.two = Channel(name + ";2", uid2, uid1, t.endpoint, t.number, state=RING)
        self.two.cid_num, self.two.cid_name = spec.cid_num, spec.cid_name
        self.leg: Channel | None = None
        self.dial_string = f"{t.number}@{host.trunk}"

    async def run(self) -> None:
        call, spec, far = self.call, self.call.spec, self.call.spec.far
        one, two = self.one, self.two
        for ch in (one, two):
            call.host.add_channel(ch, call)
        call.channels = [one, two]
        phases = self._setup()
        registered = self.leg is not None
        if not registered or far.kind in ("control", "hangup"):
            tail, reason = self._far_failure() if registered else self._after_dial("CHANUNAVAIL")
            call.emit(phases + tail, call.result_item(False, reason, None))
            return
        assert self.leg is not None
        leg = self.leg
        ring: Phase = [
            [ev.newstate(leg, RINGING), ev.dial_state(two, leg, "RINGING")],
            [ev.newstate(one, RINGING), ev.dial_state(None, one, "RINGING")],
        ]
        call.emit([*phases, ring])
        answer_after = spec.ring_s if far.kind == "answer" else float("inf")
        if await call.wait(min(answer_after, spec.timeout_s)):
            self._ami_hangup_ringing()
        elif answer_after >= spec.timeout_s:
            call.emit(self._cancel(19), call.result_item(False, 3, None))
        else:
            call.answered = True
            up: list[Phase] = [
                [[ev.newstate(leg, UP), ev.dial_end(two, leg, "ANSWER")]],
                [
                    [ev.varset(two, "DIALSTATUS", "ANSWER"), ev.newstate(two, UP)],
                    [ev.newstate(one, UP), ev.dial_end(None, one, "ANSWER"), *call.connect(one)],
                ],
            ]
            call.emit(up, call.result_item(True, 4, one), result_from=1)
            await call.after_answer(one, self._hangup_up)

    def _setup(self) -> list[Phase]:
        call, spec, host = self.call, self.call.spec, self.call.host
        one, two = self.one, self.two
        s1: Stream = [
            ev.newchannel(one),
            ev.newexten(one, "AppDial2", "(Outgoing Line)", step=False),
        ]
        s1 += [ev.varset(one, k, v) for k, v in spec.variables]
        s1.append(ev.newcallerid(one, spec.cid_num, spec.cid_name))
        s2: Stream = [
            ev.newchannel(two),
            *(ev.varset(two, k, v) for k, v in reversed(spec.variables)),
        ]
        one.connected_num, one.connected_name = spec.cid_num, spec.cid_name
        two.connected_num, two.connected_name = spec.cid_num, spec.cid_name
        t = spec.target
        dial: Stream = [
            ev.newexten(two, "NoOp", f"dial {t.number} RETRY via {host.trunk}"),
            ev.newexten(two, "Dial", f"PJSIP/{self.dial_string}"),
            ev.varset(two, "DIALSTATUS", ""),
        ]
        phases: list[Phase] = [
            [s1, s2],
            [[ev.local_bridge(one, two)], [ev.dial_begin(None, one, t.dial_string)], dial],
        ]
        if host.trunk in host.unregistered:
            return phases
        leg = host.new_channel(
            f"PJSIP/{host.trunk}", host.new_uniqueid(), one.uniqueid, host.trunk_context, "s"
        )
        host.add_channel(leg, call)
        call.channels.append(leg)
        self.leg = leg
        s3: Stream = [ev.newchannel(leg), ev.varset(leg, "DIALEDPEERNUMBER", self.dial_string)]
        leg.exten = t.number
        leg.cid_num, leg.cid_name = spec.cid_num, spec.cid_name
        leg.connected_num, leg.connected_name = spec.cid_num, spec.cid_name
        s3.append(ev.newexten(leg, "AppDial", "(Outgoing Line)", step=False))
        if host.inherit_varset:
            for name, value in spec.variables:
                if name.startswith("__"):
                    s3.append(ev.varset(leg, name, value))
                elif name.startswith("_"):
                    s3.append(ev.varset(leg, name[1:], value))
        s3.append(ev.dial_begin(two, leg, self.dial_string))
        phases.append([s3])
        return phases

    def _far_failure(self) -> tuple[list[Phase], int]:
        """The PJSIP leg fails at once (or after ringing, for an AMI hangup of it)."""
        assert self.leg is not None
        leg, two, far = self.leg, self.two, self.call.spec.far
        tech = self.call.tech_cause()
        if far.kind == "control":
            ended: Stream = [ev.dial_end(two, leg, far.control), ev.hangup(leg, far.cause, tech)]
            return [[ended], *self._after_dial(far.control)[0]], 5 if far.control == "BUSY" else 8
        ended = [
            ev.hangup_request(leg, far.cause),
            ev.dial_end(two, leg, ev.dial_status_for_cause(far.cause)),
            ev.hangup(leg, far.cause, tech),
        ]
        tail, reason = self._after_dial(ev.app_dial_status(far.cause))
        return [[ended], *tail], reason

    def _after_dial(self, dial_status: str) -> tuple[list[Phase], int]:
        """``;2`` records DIALSTATUS and falls off the end; autofallthrough indicates it."""
        one, two = self.one, self.two
        noted: Phase = [
            [
                ev.varset(two, "DIALSTATUS", dial_status),
                ev.newexten(two, "NoOp", f"DIALSTATUS={dial_status}"),
            ]
        ]
        if dial_status == "NOANSWER":
            gone: Phase = [
                [ev.hangup_request(two, 16, soft=True), ev.hangup(two, 0)],
                [ev.hangup_request(one, 0), ev.dial_end(None, one, "NOANSWER"), ev.hangup(one, 0)],
            ]
            return [noted, gone], 0
        indication = "BUSY" if dial_status == "BUSY" else "CONGESTION"
        indicated: Phase = [[ev.newstate(two, BUSY)]]  # built first: events snapshot state
        ended: Phase = [
            [ev.dial_end(None, one, indication), ev.hangup(one, 0)],
            [
                ev.hangup_request(two, 0),
                ev.hangup_request(two, 16, soft=True),
                ev.hangup(two, 17 if indication == "BUSY" else 34),
            ],
        ]
        return [noted, indicated, ended], 5 if indication == "BUSY" else 8

    def _cancel(self, cause: int, *, dial_end: bool = False) -> list[Phase]:
        """``;1`` goes away while ringing (timeout or AMI Hangup); Dial in ``;2`` is cancelled."""
        one, two, leg = self.one, self.two, self.leg
        assert leg is not None
        first: Stream = [ev.dial_end(None, one, "NOANSWER")] if dial_end else []
        return [
            [
                [*first, ev.hangup(one, cause)],
                [ev.hangup_request(two, cause), ev.hangup_request(two, 16, soft=True)],
            ],
            [[ev.dial_end(two, leg, "CANCEL"), ev.hangup(leg, cause)]],
            [[ev.hangup(two, cause)]],
        ]

    def _ami_hangup_ringing(self) -> None:
        call = self.call
        target, cause = call.hangup_target, call.hangup_cause
        if target is self.leg:
            leg, two = self.leg, self.two
            assert leg is not None
            ended: Stream = [
                ev.dial_end(two, leg, ev.dial_status_for_cause(cause)),
                ev.hangup(leg, cause),
            ]
            tail, reason = self._after_dial(ev.app_dial_status(cause))
            call.emit([[ended], *tail], call.result_item(False, reason, None))
        else:
            call.emit(self._cancel(cause, dial_end=True), call.result_item(False, 0, None))

    def _hangup_up(self, target: Channel | None, cause: int) -> list[Phase]:
        """After answer: the far end's BYE (target None) or an AMI Hangup of one leg."""
        one, two, leg = self.one, self.two, self.leg
        assert leg is not None

        def first(ch: Channel) -> Stream:
            if target is ch:
                return [ev.hangup(ch, cause)]
            return [ev.hangup_request(ch, 16), ev.hangup(ch, 16)]

        if target is None or target is leg:
            return [
                [first(leg)],
                [
                    [ev.hangup_request(two, 16, soft=True), ev.hangup(two, 16)],
                    [ev.hangup_request(one, 16), ev.hangup(one, 16)],
                ],
            ]
        return [[first(one), first(two)], [[ev.hangup(leg, 16)]]]
