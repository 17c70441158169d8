"""An AMI server that behaves like Asterisk 20, for tests and ``autoretry demo``.

It speaks AMI over TCP (banner, Login, Logoff, Ping, Events, Filter, Originate async and
sync, Hangup, CoreShowChannels, UserEvent, ListCommands, Command with a few CLI commands)
as one manager user with ``read``/``write`` classes, and, given ``spool_dir``, plays call
files like pbx_spool.
It knows nothing of our daemon beyond the AMI protocol and call files. Event names,
fields, causes and orders follow the recordings in ``shared/asterisk/transcripts/``.

What a dialled number does is ``script[number]`` (one behaviour per attempt, the last one
repeating) or the default table in ``sim_scenarios`` (last three digits: 486 busy, 408
no-answer, 404 unallocated, 503 congestion, 603 rejected, 480 unavailable, 666 machine,
777 human, anything else answer). Channel shapes: ``SIP/peer/number`` and
``PJSIP/number@endpoint`` (one channel, sip-*.ami), ``Local/number@context`` (``;1``/``;2``
and a PJSIP leg to ``trunk``, siplocal-*.ami); any other technology, or a peer/endpoint in
``unregistered``, fails with Reason 0 and no channel events (notech, sip-unregistered).

All simulated durations (ring_s, answer_hold_s, amd_s, the Originate Timeout, call-file
WaitTime/RetryTime) are multiplied by ``time_scale``, so tests run in milliseconds.

This module runs the server, the sessions and the call tasks; what a dial is and the record
of dials are in ``sim_dials``, the channel table in ``sim_table``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ami_listener import sim_actions, sim_commands, sim_dials
from ami_listener.sim_calls import AmdHeaders, CallRun, CallSpec, Item, Reply, default_amd_headers
from ami_listener.sim_channels import Channel
from ami_listener.sim_dials import DialRecord
from ami_listener.sim_local import LocalCall
from ami_listener.sim_scenarios import FAR_ENDS, Behaviour
from ami_listener.sim_spool import CallFile, SpoolWatcher
from ami_listener.sim_table import ChannelTable
from ami_listener.sim_wire import BANNER, Session, read_message


class Simulator:
    def __init__(
        self,
        *,
        username: str,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        spool_dir: Path | None = None,
        time_scale: float = 1.0,
        ring_s: float = 1.0,
        answer_hold_s: float = 3.0,
        amd_s: float = 1.5,
        script: Mapping[str, list[str]] | None = None,
        allow_filter: bool = True,
        tech_cause: bool = False,
        trunk: str = "trunk",
        trunk_context: str = "from-trunk",
        unregistered: frozenset[str] = frozenset({"unregistered"}),
        amd_event: str = "AutoretryAMD",
        amd_headers: AmdHeaders = default_amd_headers,
        inherit_varset: bool = True,
        spool_poll_s: float = 0.01,
        read: str = "all",
        write: str = "all",
        contexts: Collection[str] | None = None,
    ) -> None:
        self.username, self.secret = username, secret
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.spool_dir = spool_dir
        self.time_scale = time_scale
        self.ring_s, self.answer_hold_s, self.amd_s = ring_s, answer_hold_s, amd_s
        self.script = {k: [Behaviour(b) for b in v] for k, v in (script or {}).items()}
        self.allow_filter = allow_filter
        # manager.conf ``read =`` / ``write =`` of the one user, and the dialplan's context
        # names for ``dialplan show`` (None: every context exists).
        self.read, self.write = sim_commands.parse_perms(read), sim_commands.parse_perms(write)
        self.contexts = frozenset(contexts) if contexts is not None else None
        self.tech_cause = tech_cause
        self.trunk, self.trunk_context = trunk, trunk_context
        self.unregistered = unregistered
        self.amd_event, self.amd_headers = amd_event, amd_headers
        self.inherit_varset = inherit_varset
        self.originates: list[DialRecord] = []
        self.attempts: Counter[str] = Counter()
        self.sessions: set[Session] = set()
        self._spool_poll_s = spool_poll_s
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.Task[None]] = set()
        self._table = ChannelTable()
        self._waiters: list[asyncio.Event] = []
        self.started_monotonic = time.monotonic()
        self.spool: SpoolWatcher | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.spool_dir is not None:
            self.spool = SpoolWatcher(
                self.spool_dir,
                self._place_call_file,
                time_scale=self.time_scale,
                poll_s=self._spool_poll_s,
                on_change=self._notify,
            )
            self._spawn(self.spool.run())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self.sessions):
            session.abort()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def drop_connections(self) -> None:
        """Abort every client socket (Asterisk restarting, a network cut). Calls go on."""
        for session in list(self.sessions):
            session.abort()
        await asyncio.sleep(0)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; checked after every burst of events and
        spool change. Wrap in ``asyncio.wait_for`` for a timeout."""
        while not predicate():
            changed = asyncio.Event()
            self._waiters.append(changed)
            try:
                await changed.wait()
            finally:
                self._waiters.remove(changed)

    def live_channels(self) -> list[Channel]:
        return self._table.live()

    def max_concurrent(self, number: str) -> int:
        """Most calls to ``number`` that were up at the same time."""
        return sim_dials.max_concurrent(self.originates, number)

    # -- what calls need from us (sim_calls.Host) ---------------------------------------

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def new_uniqueid(self) -> str:
        return self._table.new_uniqueid()

    def new_channel(
        self, base: str, uniqueid: str, linkedid: str, context: str, exten: str
    ) -> Channel:
        return self._table.new_channel(base, uniqueid, linkedid, context, exten)

    def new_local_name(self, base: str) -> str:
        return self._table.new_local_name(base)

    def add_channel(self, channel: Channel, call: CallRun) -> None:
        self._table.add(channel, call)

    def emit(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Reply):
                if item.session is not None:
                    item.session.send(item.message)
                item.sent.set()
                continue
            for session in list(self.sessions):
                if session.wants(item):
                    session.send(item)
        self._table.prune()
        self._notify()

    def find_channel(self, name: str) -> tuple[Channel, CallRun] | None:
        """The live channel called ``name``, or the first whose name matches ``/regex/``."""
        return self._table.find(name)

    # -- placing calls --------------------------------------------------------------

    def behaviour_for(self, number: str) -> Behaviour:
        return sim_dials.scripted_behaviour(self.script, self.attempts, number)

    def place(self, spec: CallSpec, source: str) -> tuple[CallRun, asyncio.Task[None]]:
        """Start a call; the task ends when its last channel has hung up."""
        run = CallRun(self, spec)
        record = DialRecord(spec.target.number, spec.origin_dial, None, source, datetime.now(UTC))
        self.originates.append(record)
        self._notify()
        return run, self._spawn(self._play(run, record))

    async def _play(self, run: CallRun, record: DialRecord) -> None:
        spec = run.spec
        try:
            t = spec.target
            if not t.tech or (t.tech != "Local" and t.endpoint in self.unregistered):
                run.fail_without_channel()
                return
            record.behaviour = self.behaviour_for(t.number)
            spec.far = FAR_ENDS[record.behaviour]
            if t.tech == "Local":
                await LocalCall(run).run()
            else:
                await run.run_direct()
        finally:
            record.ended_at = datetime.now(UTC)
            self._notify()

    def spec_for(self, channel: str) -> CallSpec:
        """A CallSpec with timing knobs filled; an unknown technology gets tech ""."""
        return sim_dials.spec_for(
            channel, ring_s=self.ring_s, answer_hold_s=self.answer_hold_s, amd_s=self.amd_s
        )

    async def _place_call_file(self, call_file: CallFile, attempt: int) -> bool:
        spec = sim_dials.call_file_spec(self.spec_for(call_file.channel), call_file, attempt)
        run, task = self.place(spec, "callfile")
        await task
        return run.answered

    # -- connections ----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def notify(self) -> None:
        """Wake ``wait_until`` callers: something they may be waiting for changed."""
        for changed in self._waiters:
            changed.set()

    _notify = notify

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            # Not cancelled by close() (asyncio.start_server logs cancelled handlers as
            # errors); close() aborts the socket instead and the read loop ends on EOF.
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        try:
            writer.write(BANNER)
            while not session.closed:
                message = await read_message(reader)
                if message is None:
                    break
                if not await sim_actions.handle(self, session, message):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sessions.discard(session)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()
