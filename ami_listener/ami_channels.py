"""The channels the tracker has heard of, ours or not (yet): the per-channel bookkeeping
under ``ami_tracker`` (no I/O, no clock: ``at`` is passed).

A channel is known by its Uniqueid; an event may name up to four (its header roles). The
two halves of a Local channel are linked as soon as both names are known (the ``;1``/``;2``
name), Dial legs and LocalBridge halves by the tracker. Channels not yet tied to an attempt
are orphans: kept, bounded, oldest first, and indexed by Linkedid so that claiming a root
channel's Linkedid brings in every leg already seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

_UP = "6"
_RINGING = "5"
_MAX_ORPHANS = 20_000
"""Channels not (yet) ours that we remember; a busy PBX's live channels, with room."""


@dataclass(slots=True)
class Channel:
    uniqueid: str
    seen_at: datetime
    name: str = ""
    linkedid: str | None = None
    attempt_id: str | None = None
    ringing: bool = False
    up: bool = False
    gone: bool = False
    cause: int | None = None
    cause_txt: str | None = None
    tech_cause: int | None = None
    dial_status: str | None = None
    links: set[str] = field(default_factory=set)
    variables: dict[str, str] = field(default_factory=dict)
    amd: tuple[str | None, str | None] | None = None

    @property
    def is_local(self) -> bool:
        return self.name.startswith("Local/")

    @property
    def local_peer(self) -> str | None:
        """The name of the other half of a Local channel (``;1`` <-> ``;2``)."""
        if not self.is_local or self.name[-2:] not in (";1", ";2"):
            return None
        return self.name[:-1] + ("2" if self.name[-1] == "1" else "1")


# (uniqueid, linkedid, channel name, channel state) header names per channel an event names
_ROLES = (
    ("Uniqueid", "Linkedid", "Channel", "ChannelState"),
    ("DestUniqueid", "DestLinkedid", "DestChannel", "DestChannelState"),
    ("LocalOneUniqueid", "LocalOneLinkedid", "LocalOneChannel", "LocalOneChannelState"),
    ("LocalTwoUniqueid", "LocalTwoLinkedid", "LocalTwoChannel", "LocalTwoChannelState"),
)


def text(msg: Mapping[str, str], key: str) -> str | None:
    value = msg.get(key)
    return value if isinstance(value, str) and value and value != "<unknown>" else None


def as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def age_key(uniqueid: str) -> tuple[int, int, str]:
    """Asterisk Uniqueids are ``<epoch>.<sequence>``: later channels sort higher."""
    head, _, tail = uniqueid.partition(".")
    if head.isdigit() and tail.isdigit():
        return (int(head), int(tail), "")
    return (0, 0, uniqueid)


def far_end(chans: list[Channel]) -> Channel | None:
    """The leg whose fate is the attempt's: the non-Local channel that answered first,
    else the last non-Local one, else the deepest Local ``;2`` half."""
    outside = [c for c in chans if not c.is_local]
    if outside:
        answered = [c for c in outside if c.up]
        if answered:
            return min(answered, key=lambda c: age_key(c.uniqueid))
        return max(outside, key=lambda c: age_key(c.uniqueid))
    halves = [c for c in chans if c.name.endswith(";2")] or chans
    return max(halves, key=lambda c: age_key(c.uniqueid)) if halves else None


def link(a: Channel, b: Channel) -> None:
    a.links.add(b.uniqueid)
    b.links.add(a.uniqueid)


def apply_channel_event(name: str | None, msg: Mapping[str, str], chans: list[Channel]) -> None:
    """Record what a state, hangup or dial event says of its channels (the first one
    named, or the dialled last one); any other event is left to the tracker."""
    first, last = chans[0], chans[-1]
    if name == "Newstate" and msg.get("ChannelStateDesc") == "Ringing":
        first.ringing = True
    elif name == "Hangup":
        first.gone = True
        first.cause = as_int(text(msg, "Cause"))
        first.cause_txt = text(msg, "Cause-txt")
        first.tech_cause = as_int(text(msg, "TechCause"))
    elif name in ("DialBegin", "DialState", "DialEnd", "LocalBridge"):
        if len(chans) == 2:
            link(first, last)
        status = msg.get("DialStatus")
        if name == "DialState" and status == "RINGING":
            last.ringing = True
        elif name == "DialEnd" and status:
            last.dial_status = status
            last.up |= status == "ANSWER"


class ChannelTable:
    """Every channel remembered, by Uniqueid; orphans (no attempt yet) oldest first."""

    def __init__(self) -> None:
        self._chans: dict[str, Channel] = {}
        self._names: dict[str, str] = {}
        self._orphans: OrderedDict[str, None] = OrderedDict()
        self._orphans_by_linkedid: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._chans)

    def __getitem__(self, uniqueid: str) -> Channel:
        return self._chans[uniqueid]

    def named(self, name: str) -> str | None:
        """The Uniqueid of the channel with that name, if we heard of it."""
        return self._names.get(name)

    def of_event(self, msg: Mapping[str, str], at: datetime) -> list[Channel]:
        chans = []
        for uid_key, linked_key, name_key, state_key in _ROLES:
            uniqueid = text(msg, uid_key)
            if uniqueid is None:
                continue
            chan = self.channel(uniqueid, at, text(msg, name_key), text(msg, linked_key))
            state = msg.get(state_key)
            chan.ringing |= state == _RINGING
            chan.up |= state == _UP
            chans.append(chan)
        return chans

    def channel(
        self, uniqueid: str, at: datetime, name: str | None, linkedid: str | None
    ) -> Channel:
        chan = self._chans.get(uniqueid)
        if chan is None:
            chan = self._chans[uniqueid] = Channel(uniqueid, at)
            self._orphans[uniqueid] = None
            if len(self._orphans) > _MAX_ORPHANS:
                self.drop(next(iter(self._orphans)))
        elif chan.attempt_id is None:
            self._orphans.move_to_end(uniqueid)
        chan.seen_at = at
        if name and not chan.name:
            chan.name = name
            self._names[name] = uniqueid
            self._pair_local_halves(chan)
        if linkedid and chan.linkedid is None:
            chan.linkedid = linkedid
            if chan.attempt_id is None:
                self._orphans_by_linkedid.setdefault(linkedid, set()).add(uniqueid)
        return chan

    def _pair_local_halves(self, chan: Channel) -> None:
        peer = chan.local_peer
        other = self._names.get(peer) if peer is not None else None
        if other is not None:
            link(chan, self._chans[other])

    def adopted(self, chan: Channel) -> None:
        """``chan`` now belongs to an attempt: it is no longer an orphan."""
        self._orphans.pop(chan.uniqueid, None)
        if chan.linkedid is not None:
            self._orphans_by_linkedid.get(chan.linkedid, set()).discard(chan.uniqueid)

    def orphans_of(self, linkedid: str) -> list[Channel]:
        """The orphans with that Linkedid, no longer indexed by it (they are being claimed)."""
        return [self._chans[u] for u in self._orphans_by_linkedid.pop(linkedid, ())]

    def drop_orphans(self, seen_by: datetime) -> None:
        """Forget the channels not ours last seen at or before ``seen_by``."""
        for uniqueid in [u for u in self._orphans if self._chans[u].seen_at <= seen_by]:
            self.drop(uniqueid)

    def drop(self, uniqueid: str) -> None:
        chan = self._chans.pop(uniqueid, None)
        if chan is None:
            return
        self._orphans.pop(uniqueid, None)
        if self._names.get(chan.name) == uniqueid:
            del self._names[chan.name]
        if chan.linkedid is not None:
            siblings = self._orphans_by_linkedid.get(chan.linkedid)
            if siblings is not None:
                siblings.discard(uniqueid)
                if not siblings:
                    del self._orphans_by_linkedid[chan.linkedid]
        for other in chan.links:
            if other in self._chans:
                self._chans[other].links.discard(uniqueid)
