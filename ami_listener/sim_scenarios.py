"""What the simulated far end does with a call, chosen by the number dialled.

Default table, by the LAST THREE DIGITS of the dialled number (or the whole number when it
is a behaviour name, e.g. ``Local/busy@ctx``):

======  ===========  ======================================  =====  ==========  ======
digits  behaviour    far end                                 cause  DialEnd     Reason
======  ===========  ======================================  =====  ==========  ======
486     busy         486 Busy Here at once                   17     BUSY        5
408     noanswer     180, rings until the Originate Timeout  19     (none)      3
404     unallocated  404 Not Found at once                   1      NOANSWER    0
503     congestion   503 Service Unavailable at once         34     CONGESTION  8
603     rejected     603 Decline at once                     21     BUSY        5
480     unavailable  480 + ``Reason: Q.850;cause=20``        20     CHANUNAVAIL 0
666     machine      answers after ring_s; AMD says MACHINE  16     ANSWER      4
777     human        answers after ring_s; AMD says HUMAN    16     ANSWER      4
other   answer       180, answers after ring_s, BYE after    16     ANSWER      4
                     answer_hold_s
======  ===========  ======================================  =====  ==========  ======

The columns are for a direct ``SIP/peer/number`` or ``PJSIP/number@endpoint`` originate
(cause on the one channel). Recorded (sip-*.ami): busy, unallocated, noanswer, answer.
Inferred from Asterisk's code paths and the local-* recordings: 503 and 603 are control
frames like 486 (chan_sip queues CONGESTION / BUSY for them), 480 is a plain hangup like 404
(main/dial.c maps cause 20 to CHANUNAVAIL and gives Reason 0, as local-unavailable shows).

Through ``Local/number@context`` (siplocal-* shape) the far end's result is on the PJSIP
leg that ``;2`` dials; ``;2`` falls off the end of its dialplan, and Asterisk's
autofallthrough turns DIALSTATUS BUSY into Busy (``;1`` DialEnd BUSY, Reason 5) and
CONGESTION or CHANUNAVAIL into Congestion (``;1`` DialEnd CONGESTION, Reason 8); ``;1``
hangs up with cause 0 then. A ring timeout gives ``;1`` cause 19, Reason 3, no DialEnd on
``;1``. So unallocated/unavailable through Local show Reason 8 and cause 34 on ``;2``:
the truth is the PJSIP leg's cause (1 or 20), which shares the Linkedid.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Behaviour(StrEnum):
    ANSWER = "answer"
    BUSY = "busy"
    NOANSWER = "noanswer"
    UNALLOCATED = "unallocated"
    CONGESTION = "congestion"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"
    MACHINE = "machine"
    HUMAN = "human"


@dataclass(frozen=True)
class FarEnd:
    """How the far end answers the INVITE.

    ``kind``: ``answer`` (rings, then 200), ``ring`` (rings forever), ``control`` (a final
    response that the channel driver turns into a BUSY/CONGESTION control frame), or
    ``hangup`` (a final response that only hangs the channel up with ``cause``).
    """

    kind: str
    cause: int
    sip_code: int
    control: str = ""
    amd: str = ""


FAR_ENDS: dict[Behaviour, FarEnd] = {
    Behaviour.ANSWER: FarEnd("answer", 16, 200),
    Behaviour.BUSY: FarEnd("control", 17, 486, control="BUSY"),
    Behaviour.NOANSWER: FarEnd("ring", 19, 180),
    Behaviour.UNALLOCATED: FarEnd("hangup", 1, 404),
    Behaviour.CONGESTION: FarEnd("control", 34, 503, control="CONGESTION"),
    Behaviour.REJECTED: FarEnd("control", 21, 603, control="BUSY"),
    Behaviour.UNAVAILABLE: FarEnd("hangup", 20, 480),
    Behaviour.MACHINE: FarEnd("answer", 16, 200, amd="MACHINE"),
    Behaviour.HUMAN: FarEnd("answer", 16, 200, amd="HUMAN"),
}

BY_LAST_DIGITS: dict[str, Behaviour] = {
    "486": Behaviour.BUSY,
    "408": Behaviour.NOANSWER,
    "404": Behaviour.UNALLOCATED,
    "503": Behaviour.CONGESTION,
    "603": Behaviour.REJECTED,
    "480": Behaviour.UNAVAILABLE,
    "666": Behaviour.MACHINE,
    "777": Behaviour.HUMAN,
}

AMD_CAUSES = {"MACHINE": "INITIALSILENCE-2500-2500", "HUMAN": "HUMAN-800-800"}
"""AMDCAUSE values app_amd produces with amd.conf defaults (HUMAN one recorded)."""


def default_behaviour(number: str) -> Behaviour:
    lowered = number.lower()
    if lowered in Behaviour.__members__.values():
        return Behaviour(lowered)
    digits = "".join(c for c in number if c.isdigit())
    return BY_LAST_DIGITS.get(digits[-3:], Behaviour.ANSWER)


@dataclass(frozen=True)
class Target:
    """A parsed Originate ``Channel:``."""

    tech: str
    """Canonical spelling: ``SIP``, ``PJSIP`` or ``Local``."""
    number: str
    endpoint: str
    """SIP peer, PJSIP endpoint, or the Local channel's dialplan context."""
    dial_string: str
    """What follows ``Tech/`` (DialString of DialBegin)."""


def parse_target(channel: str) -> Target | None:
    """None for a technology this fake PBX does not have (like notech.ami)."""
    tech, sep, rest = channel.partition("/")
    if not sep or not rest:
        return None
    kind = tech.lower()
    if kind == "pjsip":
        number, _, endpoint = rest.partition("@")
        return Target("PJSIP", number, endpoint or number, rest)
    if kind == "sip":
        peer, _, number = rest.partition("/")
        if "@" in peer and not number:
            number, _, peer = peer.partition("@")
        return Target("SIP", number or peer, peer, rest)
    if kind == "local":
        where = rest.split("/", 1)[0]  # "/n" and other Local options
        number, _, context = where.partition("@")
        return Target("Local", number, context or "default", where)
    return None
