"""AMI wire format and per-connection state for the simulator (see ``simulator.py``).

A message is an ordered list of ``(key, value)`` pairs: AMI repeats keys (``Variable:``)
and clients are sensitive to order (``Response:`` first, ``ActionID:`` second), so a dict
would lose information. Lines end in CRLF; a blank line ends a message.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from .sim_commands import ALL

Message = list[tuple[str, str]]

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
"""Exactly what Asterisk 20.20 sends on connect (ami-basics.ami.raw)."""

MAX_MESSAGE_LINES = 1000
"""A peer that never sends the blank line must not grow our memory without bound."""

EVENT_CLASSES = ALL  # manager.c's permission classes: events carry one of them


def encode(message: Message) -> bytes:
    """``Key: Value`` lines, CRLF, and the blank line that ends the message."""
    text = "".join(f"{key}: {value}\r\n" for key, value in message)
    return (text + "\r\n").encode()


def event_text(message: Message) -> str:
    """The text a ``Filter`` regex is matched against (as Asterisk does: the whole event)."""
    return "".join(f"{key}: {value}\r\n" for key, value in message)


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """Read one message; None at EOF. Lines without a colon are ignored, as Asterisk does."""
    message: Message = []
    while True:
        raw = await reader.readline()
        if not raw:
            return None
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if message:
                return message
            continue
        key, sep, value = line.partition(":")
        if sep and len(message) < MAX_MESSAGE_LINES:
            message.append((key.strip(), value.strip()))


def get(message: Message, key: str, default: str = "") -> str:
    """First value for ``key`` (case-insensitive, as Asterisk's astman_get_header)."""
    wanted = key.lower()
    for k, v in message:
        if k.lower() == wanted:
            return v
    return default


def get_all(message: Message, key: str) -> list[str]:
    wanted = key.lower()
    return [v for k, v in message if k.lower() == wanted]


def event_class(message: Message) -> str:
    """The event's class: the first item of ``Privilege: call,all``."""
    return get(message, "Privilege").split(",", 1)[0].strip()


def parse_event_mask(value: str) -> frozenset[str] | None:
    """``Events:`` of Login / ``EventMask:`` of the Events action.

    Returns None for "everything" (``on``, empty), an empty set for ``off``, else the
    named classes. Unknown names are ignored, as Asterisk's strings_to_mask does.
    """
    text = value.strip().lower()
    if text in ("", "on", "yes", "true", "all"):
        return None
    if text in ("off", "no", "false"):
        return frozenset()
    names = {part.strip() for part in text.split(",")}
    if "all" in names:
        return None
    return frozenset(names & EVENT_CLASSES)


@dataclass
class EventFilter:
    """Asterisk's per-session ``Filter`` action: include regexes, ``!`` exclude regexes.

    With only includes an event must match one; with only excludes it must match none;
    with both it must match an include and no exclude (manager.c ``match_filter``).
    """

    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)

    def add(self, expression: str) -> None:
        """Raise ``re.error`` if the expression does not compile."""
        if expression.startswith("!"):
            self.exclude.append(re.compile(expression[1:]))
        else:
            self.include.append(re.compile(expression))

    def allows(self, text: str) -> bool:
        if self.include and not any(p.search(text) for p in self.include):
            return False
        return not any(p.search(text) for p in self.exclude)


@dataclass(eq=False)
class Session:
    """One AMI connection."""

    writer: asyncio.StreamWriter
    authenticated: bool = False
    username: str = ""
    event_mask: frozenset[str] | None = None
    readable: frozenset[str] | None = None
    """The user's ``read =`` classes (None: all); Asterisk drops other events silently."""
    filters: EventFilter = field(default_factory=EventFilter)
    deferred: list[Message] = field(default_factory=list)
    """Events held back until after the next action reply (README point 11)."""

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def send(self, message: Message) -> None:
        if not self.closed:
            self.writer.write(encode(message))

    def wants(self, event: Message) -> bool:
        if not self.authenticated or self.closed:
            return False
        if self.event_mask is not None and event_class(event) not in self.event_mask:
            return False
        if self.readable is not None and event_class(event) not in self.readable:
            return False
        return self.filters.allows(event_text(event))

    def abort(self) -> None:
        """Close the socket without a goodbye: the peer sees a reset or EOF."""
        transport = self.writer.transport
        transport.abort()
