"""pbx_spool for the simulator: watch ``<spool>/outgoing`` and place the calls in it.

As Asterisk does (pbx_spool.c, and callfile-*.ami): a file whose mtime is in the future
waits until then; each attempt appends ``StartRetry:``; a failed attempt with retries left
appends ``EndRetry:`` and moves the mtime to start + RetryTime; at the end ``Status:
Completed`` (answered) or ``Expired`` is appended and the file is moved to
``outgoing_done/`` (``Archive: yes``) or deleted. Polling instead of inotify is fine in a
fake; ``poll_s`` bounds how late a file is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CallFile:
    channel: str
    context: str = "default"
    extension: str = "s"
    priority: int = 1
    application: str = ""
    data: str = ""
    callerid: str = ""
    max_retries: int = 0
    retry_time_s: float = 300.0
    wait_time_s: float = 45.0
    archive: bool = False
    variables: list[tuple[str, str]] = field(default_factory=list)
    start_retries: int = 0
    """``StartRetry:`` lines already in the file: attempts made so far."""


def _true(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


def parse_call_file(text: str) -> CallFile:
    """Raise ValueError for a file Asterisk would refuse (no Channel, no destination)."""
    values: dict[str, str] = {}
    variables: list[tuple[str, str]] = []
    start_retries = 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in ("setvar", "set"):
            name, eq, var_value = value.partition("=")
            if eq:
                variables.append((name.strip(), var_value.strip()))
        elif key == "startretry":
            start_retries += 1
        else:
            values[key] = value
    if not values.get("channel"):
        raise ValueError("call file has no Channel")
    if not values.get("application") and not values.get("extension") and not values.get("context"):
        raise ValueError("call file has neither Application nor Context/Extension")
    try:
        return CallFile(
            channel=values["channel"],
            context=values.get("context", "default"),
            extension=values.get("extension", "s"),
            priority=int(values.get("priority", "1")),
            application=values.get("application", ""),
            data=values.get("data", ""),
            callerid=values.get("callerid", ""),
            max_retries=int(values.get("maxretries", "0")),
            retry_time_s=float(values.get("retrytime", "300")),
            wait_time_s=float(values.get("waittime", "45")),
            archive=_true(values.get("archive", "no")),
            variables=variables,
            start_retries=start_retries,
        )
    except ValueError as exc:
        raise ValueError(f"call file has a bad number: {exc}") from exc


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _touch(path: Path, at: float) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(path, (at, at))


PlaceCall = Callable[[CallFile, int], Awaitable[bool]]
"""(call file, attempt number from 1) -> answered?"""


class SpoolWatcher:
    def __init__(
        self,
        spool_dir: Path,
        place_call: PlaceCall,
        *,
        time_scale: float,
        poll_s: float,
        on_change: Callable[[], None],
    ) -> None:
        self.outgoing = spool_dir / "outgoing"
        self.done_dir = spool_dir / "outgoing_done"
        self._place_call = place_call
        self._time_scale = time_scale
        self._poll_s = poll_s
        self._on_change = on_change
        self._active: dict[str, asyncio.Task[None]] = {}
        self.finished: list[tuple[str, str]] = []
        """(file name, Status) of every file taken out of the queue."""

    async def run(self) -> None:
        self.outgoing.mkdir(parents=True, exist_ok=True)
        try:
            while True:
                for path in sorted(self.outgoing.iterdir()):
                    if path.name.startswith(".") or path.name in self._active or not path.is_file():
                        continue
                    self._active[path.name] = asyncio.create_task(self._process(path))
                await asyncio.sleep(self._poll_s)
        finally:
            for task in self._active.values():
                task.cancel()
            await asyncio.gather(*self._active.values(), return_exceptions=True)

    async def _process(self, path: Path) -> None:
        try:
            await self._attempts(path)
        finally:
            self._active.pop(path.name, None)
            self._on_change()

    async def _attempts(self, path: Path) -> None:
        while True:
            due = _mtime(path)
            if due is None:
                return
            now = time.time()
            if due > now:
                await asyncio.sleep(min(self._poll_s, due - now))
                continue
            call_file = self._load(path)
            if call_file is None:
                return
            attempt = call_file.start_retries + 1
            if attempt > call_file.max_retries + 1:
                self._remove(path, call_file, "Expired")
                return
            start = self._start_attempt(path, call_file, attempt)
            if await self._place_call(call_file, attempt):
                self._remove(path, call_file, "Completed")
                return
            if attempt > call_file.max_retries:
                self._remove(path, call_file, "Expired")
                return
            self._append(path, f"\nEndRetry: {os.getpid()} {attempt} ({int(start)})\n")
            _touch(path, start + call_file.retry_time_s * self._time_scale)

    def _load(self, path: Path) -> CallFile | None:
        try:
            return parse_call_file(path.read_text(errors="replace"))
        except ValueError:
            path.unlink(missing_ok=True)  # Asterisk deletes files it cannot parse
            self.finished.append((path.name, "Invalid"))
        except FileNotFoundError:
            pass
        return None

    def _start_attempt(self, path: Path, call_file: CallFile, attempt: int) -> float:
        """Mark the attempt in the file and push its mtime past the ring time, so a
        rescan does not start it again (pbx_spool does the same)."""
        start = time.time()
        retry_s = call_file.retry_time_s * self._time_scale
        wait_s = call_file.wait_time_s * self._time_scale
        self._append(path, f"\nStartRetry: {os.getpid()} {attempt} ({int(start + retry_s)})\n")
        _touch(path, start + retry_s + wait_s)
        return start

    @staticmethod
    def _append(path: Path, text: str) -> None:
        """Append without O_CREAT: a file someone removed must not come back."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def _remove(self, path: Path, call_file: CallFile, status: str) -> None:
        self._append(path, f"Status: {status}\n")
        if call_file.archive:
            self.done_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.replace(self.done_dir / path.name)
        else:
            path.unlink(missing_ok=True)
        self.finished.append((path.name, status))
