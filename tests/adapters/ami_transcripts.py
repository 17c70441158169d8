"""The recorded Asterisk sessions (tests/transcripts, a copy of shared/) and a TCP server that
plays one back: it waits until the client has sent the session's actions, then writes the
recorded bytes (``.ami.raw``) unchanged, in chunks of random size."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DIR = Path(__file__).resolve().parents[1] / "transcripts"


@dataclass(frozen=True)
class Transcript:
    name: str
    raw: bytes
    actions: tuple[dict[str, str | list[str]], ...]
    """What the recorder sent (``#>`` blocks), in order; secrets are masked."""

    @property
    def originate(self) -> dict[str, str | list[str]] | None:
        return next((a for a in self.actions if a["Action"] == "Originate"), None)

    @property
    def callfile_call_id(self) -> str | None:
        found = re.search(rb"Setvar: RETRY_CALL_ID=(\S+)", self.text.encode())
        return found.group(1).decode() if found else None

    @property
    def text(self) -> str:
        return (DIR / f"{self.name}.ami").read_text()


def names() -> list[str]:
    return sorted(p.name.removesuffix(".ami.raw") for p in DIR.glob("*.ami.raw"))


@cache
def load(name: str) -> Transcript:
    text = (DIR / f"{name}.ami").read_text()
    actions: list[dict[str, str | list[str]]] = []
    current: dict[str, str | list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("#> ") and line.endswith("sent:"):
            current = {}
            actions.append(current)
        elif line.startswith("#>   ") and current is not None:
            key, _, value = line[5:].partition(": ")
            old = current.get(key)
            if old is None:
                current[key] = value
            else:  # repeated header (Variable)
                current[key] = [*([old] if isinstance(old, str) else old), value]
        else:
            current = None
    return Transcript(name, (DIR / f"{name}.ami.raw").read_bytes(), tuple(actions))


@asynccontextmanager
async def replay_server(transcript: Transcript, seed: int = 0) -> AsyncIterator[int]:
    """Serve ``transcript`` once on 127.0.0.1; yields the port."""
    rng = random.Random(seed)
    writers: list[asyncio.StreamWriter] = []
    sessions: list[asyncio.Task[None]] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        sessions.append(asyncio.current_task())  # type: ignore[arg-type]
        raw = transcript.raw
        banner_end = raw.index(b"\r\n") + 2
        writer.write(raw[:banner_end])
        # every action must be sent before any reply is played back, so that panoramisk
        # knows each ActionID when its reply arrives; each action ends with one blank line
        received = b""
        while received.count(b"\r\n\r\n") < len(transcript.actions):
            chunk = await reader.read(65536)
            if not chunk:
                return
            received += chunk
        position = banner_end
        while position < len(raw):
            size = rng.choice((1, 7, 64, 500, 1500, 4096))
            writer.write(raw[position : position + size])
            position += size
            await writer.drain()
        await reader.read()  # until the client closes
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(*sessions, return_exceptions=True), 5)
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
