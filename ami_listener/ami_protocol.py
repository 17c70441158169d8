"""Our panoramisk protocol: split the AMI byte stream, drop unwanted events before parsing.

Stock panoramisk 1.4 decodes every TCP read on its own with errors ignored (a UTF-8
character split across two reads is lost), parses every event into a ``Message`` and
runs it through ``fnmatch`` dispatch: ~30 us an event, and a 256 KiB read of a busy PBX
holds the event loop for tens of milliseconds. Here the stream stays bytes until a message
is whole; one regex scan over each read finds the messages that start with a wanted
``Event:`` line (plus replies, and VarSet/UserEvent only if they contain our needle), so
no Python code runs for the ~94 % we drop. Wanted events are decoded into a plain dict for
the callback; a panoramisk ``Message`` is built only for what panoramisk must see.
Kept messages are handled in slices of ``slice_budget_s`` (counting the scan); a bigger
burst pauses reading and continues on the next loop iteration, so other tasks keep running.

panoramisk's action handling is kept: replies and event lists still complete the futures
``Manager.send_action`` returns. One exception (transcripts README point 3): an async
Originate's ``OriginateResponse`` carries ``Response:`` and the Originate's ActionID, so
panoramisk would only hand it to that future; we give it to our callback as well.

Pass ``protocol_factory(...)`` as ``Manager(protocol_factory=...)``. ``LOGIN_EVENTS`` and
``filters()`` are what the listener should send to make Asterisk send less; both may be
refused or ignored (manager.conf permissions), and the client-side filter here still works.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

DEFAULT_VARIABLE_PREFIX = "AUTORETRY_"
USER_EVENT_PREFIX = "Autoretry"  # AutoretryAMD, AutoretryManage, AutoretryReport

TRACKED_EVENTS = frozenset(
    {
        "Newchannel",
        "Newstate",
        "DialBegin",
        "DialState",
        "DialEnd",
        "Hangup",
        "LocalBridge",
        "OriginateResponse",
    }
)
"""Channel events the tracker correlates; every one of them is in the ``call`` class."""

SESSION_EVENTS = frozenset({"FullyBooted", "Shutdown"})
"""panoramisk itself reacts to these (awaiting actions, reconnect)."""

_FOR_PANORAMISK = SESSION_EVENTS | {"OriginateResponse"}
"""Wanted events panoramisk must see too (OriginateResponse completes the Originate)."""

LOGIN_EVENTS = "call,dialplan,user,system"
"""Login ``Events:`` mask. ``dialplan`` is needed for VarSet (call files are correlated by
our variables) and unfortunately also brings Newexten; ``filters()`` removes that where
allowed. Leaves out cdr, cel, security, agent, reporting, ... which a busy PBX sends a lot of.
"""

EOM = b"\r\n\r\n"
_BANNER = b"Asterisk Call Manager/"

EventCallback = Callable[[Mapping[str, str]], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventSelection:
    """Which events reach the callback: ``names`` always; a name in ``needles`` only when
    its raw bytes contain that needle (VarSet of our variables, our AMD UserEvent)."""

    names: frozenset[str]
    needles: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def default(
        cls,
        variable_prefix: str = DEFAULT_VARIABLE_PREFIX,
        user_events: str = USER_EVENT_PREFIX,
    ) -> EventSelection:
        """``user_events``: the common prefix of the UserEvent names our hooks publish
        (AutoretryAMD, AutoretryManage, AutoretryReport)."""
        return cls(
            names=TRACKED_EVENTS | SESSION_EVENTS,
            needles={
                "VarSet": variable_prefix.encode(),
                "UserEvent": f"UserEvent: {user_events}".encode(),
            },
        )

    def wants(self, name: str, frame: bytes) -> bool:
        if name in self.names:
            return True
        needle = self.needles.get(name)
        return needle is not None and needle in frame


def filters(
    variable_prefix: str = DEFAULT_VARIABLE_PREFIX, user_events: str = USER_EVENT_PREFIX
) -> list[dict[str, str]]:
    """``Filter`` actions (whitelist) to send after login.

    Legacy regex filters, matched against the whole event text, because they work on every
    Asterisk since 10 (the ``MatchCriteria`` form needs 20.10+). The action needs the
    ``system`` write permission; on ``Permission denied`` carry on, we filter here too.
    Unanchored: ``Event: Hangup`` also lets HangupRequest through, which we then drop.
    Replies and event lists of our own actions are not subject to filters.
    """
    names = "|".join(sorted(TRACKED_EVENTS | SESSION_EVENTS))
    # ONE filter with alternatives: whitelist filters apply as they arrive, so three separate
    # ones would, between the first and the last, drop the VarSets and UserEvents we need.
    regex = f"Event: ({names})|Variable: _{{0,2}}{variable_prefix}|UserEvent: {user_events}"
    return [{"Action": "Filter", "Operation": "Add", "Filter": regex}]


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete messages (without the blank line) and the incomplete rest."""
    frames = buffer.split(EOM)
    rest = frames.pop()
    return frames, rest


def event_name(frame: bytes) -> str | None:
    """The ``Event:`` value if the message is an event (first line), else None."""
    if not frame.startswith(b"Event: "):
        return None
    end = frame.find(b"\r\n")
    return frame[7 : end if end >= 0 else len(frame)].decode("ascii", "replace").strip()


def parse_frame(frame: bytes) -> Any:
    """A panoramisk ``Message`` (or None), decoded only now that the message is whole."""
    return Message.from_line(frame.decode("utf-8", "replace"))


def parse_headers(frame: bytes) -> dict[str, str]:
    """One message's headers as a plain dict: ~4x cheaper than a panoramisk ``Message``
    (case-insensitive, a method call per header). A repeated header keeps its last value."""
    headers = {}
    for line in frame.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            headers[key] = value
    return headers


class AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    # set by panoramisk (connection_made, Manager.connection_made); typed here for mypy
    version: str | None
    closed: bool
    responses: dict[str, Any]
    factory: Any

    def __init__(
        self,
        on_event: EventCallback,
        selection: EventSelection | None = None,
        *,
        slice_budget_s: float = 0.001,
    ) -> None:
        super().__init__()
        self._on_event = on_event
        self._selection = selection or EventSelection.default()
        self._budget_s = slice_budget_s
        names = b"|".join(re.escape(n.encode()) for n in sorted(self._selection.names))
        # after an EOM: a wanted event's first line, or anything that is not an event
        self._starts = re.compile(EOM + b"(?=Event: (?:" + names + b")\r\n|(?!Event: ))")
        self._needles = [
            (needle, f"Event: {name}\r\n".encode())
            for name, needle in self._selection.needles.items()
        ]
        self._rest = EOM
        self._frames: deque[bytes] = deque()
        self._draining = False
        self._paused = False
        self.frames_parsed = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        started = time.perf_counter()
        buf = self._rest + data  # _rest starts with an EOM, so every message follows one
        if self.version is None and buf.startswith(_BANNER, 4):
            end = buf.find(b"\r\n", 4)
            if end < 0:
                self._rest = buf
                return
            self.version = buf[4 + len(_BANNER) : end].decode("ascii", "replace").strip()
            buf = EOM + buf[end + 2 :]
        self._frames.extend(self._keep(buf))
        if not self._draining:
            self._drain(started)  # the scan above counts against this slice's budget

    def _keep(self, buf: bytes) -> list[bytes]:
        """The complete messages in ``buf`` we must look at; the rest waits for more.

        This is the hot path, so no Python code runs per dropped message: one regex scan
        finds the starts of replies and of always-wanted events, and ``bytes.find`` finds
        the conditional ones (our variable in a VarSet, our AMD UserEvent) and, while an
        action of ours is pending, event-list items (they carry its ActionID).
        """
        end = buf.rfind(EOM)
        self._rest = buf[end:]
        if end == 0:
            return []
        starts = [m.end() for m in self._starts.finditer(buf, 0, end)]
        extra = self._needles
        if self.responses:
            extra = [*extra, (b"\r\nActionID: ", b"")]
        found = set()
        for needle, head in extra:
            at = buf.find(needle, 0, end)
            while at >= 0:
                start = buf.rfind(EOM, 0, at) + 4
                if buf.startswith(head, start):
                    found.add(start)
                at = buf.find(needle, at + len(needle), end)
        if found:
            starts = sorted(found.union(starts))
        return [buf[start : buf.find(EOM, start)] for start in starts]

    def _drain(self, started: float | None = None) -> None:
        self._draining = False
        if self.closed:
            self._frames.clear()
            return
        deadline = (time.perf_counter() if started is None else started) + self._budget_s
        frames = self._frames
        while frames and time.perf_counter() < deadline:
            # only kept messages get here (~20 us each, against ~0.1 us for the clock)
            self._handle_frame(frames.popleft())
        if frames:
            # a burst: stop reading (TCP pushes back on Asterisk) and go on next iteration
            self._draining = True
            if not self._paused:
                self._paused = True
                self._transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._drain)
        elif self._paused:
            self._paused = False
            self._transport.resume_reading()

    def _handle_frame(self, frame: bytes) -> None:
        if frame[:1] in (b"\r", b"\n", b" "):
            frame = frame.lstrip()  # "sometimes we receive only one EOL" (panoramisk)
            if not frame:
                return
        name = event_name(frame)
        if name is not None and self._selection.wants(name, frame):
            headers = parse_headers(frame)
            self.frames_parsed += 1
            answers = self._answers_action(headers)
            if name == "OriginateResponse" or not answers:
                try:
                    self._on_event(headers)
                except Exception:
                    # a bug in the consumer must not drop the AMI connection
                    log.exception("AMI event callback failed on %s", name)
            if not answers and name not in _FOR_PANORAMISK:
                return
        elif name is not None and not (self.responses and b"ActionID: " in frame):
            return
        message = parse_frame(frame)
        self.frames_parsed += 1
        # panoramisk routes replies to action futures; events go to Manager.dispatch,
        # which needs the Manager (absent only when the protocol is used on its own)
        if message is None:
            return
        if self.factory is not None or name is None or self._answers_action(message):
            self.handle_message(message)

    def _answers_action(self, headers: Mapping[str, Any]) -> bool:
        return any(
            key in headers and headers[key] in self.responses for key in ("ActionID", "CommandID")
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._frames.clear()
        self._rest = EOM
        if self.factory is None:  # used without a Manager: nobody to tell
            self.closed = True
            return
        super().connection_lost(exc)


def protocol_factory(
    on_event: EventCallback,
    selection: EventSelection | None = None,
    *,
    slice_budget_s: float = 0.001,
) -> Callable[[], AmiProtocol]:
    """For ``Manager(protocol_factory=...)``: panoramisk calls it with no arguments."""

    def build() -> AmiProtocol:
        return AmiProtocol(on_event, selection, slice_budget_s=slice_budget_s)

    return build
