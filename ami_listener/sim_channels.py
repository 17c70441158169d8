"""Channels and the AMI events Asterisk 20 publishes about them, for the simulator.

Field names, field order, states and cause texts are copied from the recorded sessions in
``shared/asterisk/transcripts/`` (Asterisk 20.20.1). Each event snapshots the channel's
state when it is built, so a script that builds a channel's events in order gets the
``ChannelState``/``Context``/``Priority`` values Asterisk would have shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from ami_listener.sim_wire import Message

DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}

CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}
"""main/channel.c causes[]; anything else prints "Unknown" there too."""

UNKNOWN = "<unknown>"


def dial_status_for_cause(cause: int) -> str:
    """main/dial.c ``ast_hangup_cause_to_dial_status``: DialEnd of an originate's leg."""
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (3, 20):
        return "CHANUNAVAIL"
    return "NOANSWER"


def app_dial_status(cause: int) -> str:
    """app_dial ``handle_cause`` + final DIALSTATUS: any unknown cause counts as "nochan"."""
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (16, 19):
        return "NOANSWER"
    return "CHANUNAVAIL"


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = DOWN
    cid_num: str = UNKNOWN
    cid_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    application: str = ""
    app_data: str = ""
    created_at: float = 0.0
    """Loop time, for CoreShowChannels' Duration."""
    alive: bool = True

    def headers(self, prefix: str = "") -> Message:
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (f"{p}CallerIDNum", self.cid_num),
            (f"{p}CallerIDName", self.cid_name),
            (f"{p}ConnectedLineNum", self.connected_num),
            (f"{p}ConnectedLineName", self.connected_name),
            (f"{p}Language", "en"),
            (f"{p}AccountCode", ""),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.uniqueid),
            (f"{p}Linkedid", self.linkedid),
        ]


def event(name: str, klass: str, *parts: Message) -> Message:
    message: Message = [("Event", name), ("Privilege", f"{klass},all")]
    for part in parts:
        message.extend(part)
    return message


def newchannel(ch: Channel) -> Message:
    return event("Newchannel", "call", ch.headers())


def newstate(ch: Channel, state: int) -> Message:
    ch.state = state
    return event("Newstate", "call", ch.headers())


def newcallerid(ch: Channel, num: str, name: str) -> Message:
    ch.cid_num, ch.cid_name = num, name
    return event(
        "NewCallerid",
        "call",
        ch.headers(),
        [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
    )


def varset(ch: Channel, variable: str, value: str) -> Message:
    return event("VarSet", "dialplan", ch.headers(), [("Variable", variable), ("Value", value)])


def newexten(ch: Channel, application: str, app_data: str, *, step: bool = True) -> Message:
    """One dialplan step; ``step`` advances the priority first (not for AppDial pseudo-steps)."""
    if step and ch.application:
        ch.priority += 1
    ch.application, ch.app_data = application, app_data
    return event(
        "Newexten",
        "dialplan",
        ch.headers(),
        [("Extension", ch.exten), ("Application", application), ("AppData", app_data)],
    )


def enter_dialplan(ch: Channel, context: str, exten: str, priority: int) -> None:
    """The originate's answered channel continues at Context/Exten/Priority."""
    ch.context, ch.exten, ch.priority = context, exten, priority
    ch.application = ""


def dial_begin(caller: Channel | None, dest: Channel, dial_string: str) -> Message:
    caller_part = caller.headers() if caller else []
    return event(
        "DialBegin", "call", caller_part, dest.headers("Dest"), [("DialString", dial_string)]
    )


def dial_state(caller: Channel | None, dest: Channel, status: str) -> Message:
    caller_part = caller.headers() if caller else []
    return event("DialState", "call", caller_part, dest.headers("Dest"), [("DialStatus", status)])


def dial_end(caller: Channel | None, dest: Channel, status: str) -> Message:
    caller_part = caller.headers() if caller else []
    return event("DialEnd", "call", caller_part, dest.headers("Dest"), [("DialStatus", status)])


def hangup_request(ch: Channel, cause: int, *, soft: bool = False) -> Message:
    return event(
        "SoftHangupRequest" if soft else "HangupRequest",
        "call",
        ch.headers(),
        [("Cause", str(cause))],
    )


def hangup(ch: Channel, cause: int, tech_cause: int | None = None) -> Message:
    ch.alive = False
    extra: Message = [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))]
    if tech_cause is not None:
        extra.append(("TechCause", str(tech_cause)))
    return event("Hangup", "call", ch.headers(), extra)


def local_bridge(one: Channel, two: Channel) -> Message:
    rename: Message = []
    for prefix, ch in (("LocalOne", one), ("LocalTwo", two)):
        rename.extend((prefix + key, value) for key, value in ch.headers())
    return event(
        "LocalBridge",
        "call",
        rename,
        [("Context", one.context), ("Exten", one.exten), ("LocalOptimization", "Yes")],
    )


def user_event(ch: Channel, name: str, fields: Message) -> Message:
    return event("UserEvent", "user", ch.headers(), [("UserEvent", name)], fields)


def core_show_channel(ch: Channel, action_id: str, now: float) -> Message:
    message: Message = [("Event", "CoreShowChannel")]
    if action_id:
        message.append(("ActionID", action_id))
    message.extend(ch.headers())
    seconds = max(0, int(now - ch.created_at))
    duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    message.extend(
        [
            ("Application", ch.application),
            ("ApplicationData", ch.app_data),
            ("Duration", duration),
            ("BridgeId", ""),
        ]
    )
    return message
