"""The simulator's channel table: the channels up now, and the names and Uniqueids it hands out.

Kept apart from ``simulator.py`` because it is plain state shared by two users there, the
calls (``sim_calls.Host``: new channels, new Uniqueids) and the actions (Hangup and
CoreShowChannels find channels here); it touches no socket and no task.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter

from ami_listener.sim_calls import CallRun
from ami_listener.sim_channels import Channel


class ChannelTable:
    """Channels by name, each with the call it belongs to; hung-up ones go on ``prune``."""

    def __init__(self) -> None:
        self._channels: dict[str, tuple[Channel, CallRun]] = {}
        self._uid = itertools.count(1)
        self._chan_seq: Counter[str] = Counter()

    def new_uniqueid(self) -> str:
        return f"{int(time.time())}.{next(self._uid)}"

    def new_channel(
        self, base: str, uniqueid: str, linkedid: str, context: str, exten: str
    ) -> Channel:
        tech = base.split("/", 1)[0]
        self._chan_seq[tech] += 1
        name = f"{base}-{self._chan_seq[tech]:08x}"
        return Channel(name, uniqueid, linkedid, context, exten)

    def new_local_name(self, base: str) -> str:
        self._chan_seq["Local"] += 1
        return f"{base}-{self._chan_seq['Local']:08x}"

    def add(self, channel: Channel, call: CallRun) -> None:
        channel.created_at = time.monotonic()
        self._channels[channel.name] = (channel, call)

    def prune(self) -> None:
        """Forget the channels that have hung up."""
        for name in [n for n, (ch, _) in self._channels.items() if not ch.alive]:
            del self._channels[name]

    def live(self) -> list[Channel]:
        return [ch for ch, _ in self._channels.values() if ch.alive]

    def find(self, name: str) -> tuple[Channel, CallRun] | None:
        """The live channel called ``name``, or the first whose name matches ``/regex/``."""
        found = self._channels.get(name)
        if found is not None and found[0].alive:
            return found
        if len(name) > 2 and name.startswith("/") and name.endswith("/"):
            pattern = re.compile(name[1:-1])
            for ch, run in self._channels.values():
                if ch.alive and pattern.search(ch.name):
                    return ch, run
        return None
