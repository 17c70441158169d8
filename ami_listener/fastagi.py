"""FastAGI server: ``AGI(agi://127.0.0.1:4573/amd,...)`` runs the hooks of agi_handlers.

Built on panoramisk's ``fast_agi.Application`` (its route table), with its connection
handler replaced, because panoramisk 1.4's handler and ``Request.send_command`` have traps
a hostile or broken peer walks into:

- the header loop ``while b'\\n\\n' not in buffer: buffer += await reader.read(...)`` spins
  forever at 100 % CPU when the peer closes before the blank line, and grows without
  bound when it never sends one; there is no timeout at all;
- a reply line is decoded with ``[:-1]``: at end of input ``int('')`` raises ValueError;
  invalid UTF-8 raises before its ``try``; a ``520-`` usage text is read one line deep,
  leaving the rest to be taken as the next command's reply;
- a HANGUP notification (res_agi sends it between commands) is returned as the reply of
  the next command, whose real reply then answers the command after it;
- ``agi_network_script`` keeps its query string, so ``amd?target=x`` matches no route;
- ``except BaseException`` around the route swallows task cancellation;
- ``add_route`` wraps plain functions with ``asyncio.coroutine``, gone in Python 3.11.

Here every connection has a header deadline and size bound, a per-command deadline, and
ends with ``FAILURE`` (Asterisk sets ``AGISTATUS=FAILURE``) or a close; no input makes
the server itself fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from panoramisk.fast_agi import Application, Request

from .agi_handlers import ROUTES, AmdParams, Hook, ReplyReader, Verdict, amd_hook
from .agi_handlers import Request as AgiRequest
from .config_sections import AgiSettings, TargetSettings, split_listen

log = logging.getLogger(__name__)

_MAX_LINE = 8192
_MAX_HEADERS = 128


def amd_defaults(target: TargetSettings | None) -> AmdParams:
    """A target's AMD settings as hook defaults (arguments in the dialplan still win)."""
    if target is None:
        return AmdParams()
    return AmdParams(
        initial_silence=target.initial_silence_ms,
        greeting=target.greeting_ms,
        after_greeting_silence=target.after_greeting_silence_ms,
        total_analysis_time=target.total_analysis_time_ms,
        machine_action=target.machine_action,
        machine_message=target.machine_message,
        notsure_is_machine=target.notsure == "machine",
    )


class FastAgiServer(Application):  # type: ignore[misc]  # panoramisk has no type hints
    """``async with FastAgiServer(settings, targets) as server:`` serves until closed."""

    def __init__(
        self,
        settings: AgiSettings,
        targets: Mapping[str, TargetSettings] | None = None,
        *,
        header_timeout_s: float = 5.0,
        command_timeout_s: float = 120.0,
        max_clients: int = 256,
        listen: tuple[str, int] | None = None,
    ) -> None:
        # Application() calls asyncio.get_event_loop(): build this inside the running loop.
        super().__init__(loop=asyncio.get_running_loop())
        # ``listen`` overrides the setting (tests and benchmarks bind port 0).
        self._listen = listen or split_listen(settings.fastagi_listen)
        self._targets = dict(targets or {})
        self._header_timeout_s = header_timeout_s
        self._command_timeout_s = command_timeout_s
        self._max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.served: dict[str, int] = {}
        """Verdict status -> count (for logs, tests and the benchmark)."""
        for path in ROUTES:
            self.add_route(path, self._endpoint)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when configured with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("FastAGI server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self.handler, host, port, limit=_MAX_LINE)
        log.info("FastAGI listening on %s:%d", *self.address)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- one connection ---------------------------------------------------------------
    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if len(self._tasks) > self._max_clients:
                self._count("BUSY")
                writer.write(b"FAILURE\n")
                return
            await self._serve(reader, writer)
        except (OSError, EOFError, ValueError, TimeoutError) as exc:
            # ValueError: a line over the limit (LimitOverrunError's wrapper).
            self._count("BROKEN")
            log.info("FastAGI peer %s: %s", writer.get_extra_info("peername"), exc)
        except Exception:  # a bug of ours: log it, keep serving the other calls
            self._count("BUG")
            log.exception("FastAGI request failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self._header_timeout_s):
            headers = await self._read_headers(reader)
        script = headers.get("agi_network_script", "")
        path, _, query = script.partition("?")
        endpoint = self._route.get(path.strip("/"))
        if headers.get("agi_network") != "yes" or endpoint is None:
            self._count("NOROUTE")
            log.warning("FastAGI: no route for %r", script[:80])
            writer.write(b"FAILURE\n")
            await writer.drain()
            return
        if query:  # agi://host/amd?target=sales: the query's pairs count as arguments
            pairs = [f"{k}={v}" for k, v in parse_qsl(query)]
            headers = {**headers, "agi_query": "&".join(pairs)}
        await endpoint(Request(self, headers, reader, writer))

    async def _read_headers(self, reader: asyncio.StreamReader) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            raw = await reader.readline()
            if not raw.endswith(b"\n"):
                raise EOFError("closed before the end of the agi_* headers")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                return headers
            key, sep, value = line.partition(":")
            if sep and key.startswith("agi_"):
                headers[key.strip()] = value.strip()
        raise ValueError("too many header lines")

    async def _endpoint(self, request: Request) -> None:
        started = time.perf_counter()
        agi = AgiRequest.from_env(request.headers)
        hook = self._hook(request.headers.get("agi_network_script", ""), agi)
        verdict = await self._drive(hook, request.reader, request.writer)
        self._count(verdict.status)
        log.info(
            "FastAGI %s %s on %s: %s %s (%.1f ms)",
            request.headers.get("agi_network_script", "")[:40],
            request.headers.get("agi_uniqueid", "?")[:40],
            request.headers.get("agi_channel", "?")[:80],
            verdict.status,
            verdict.detail,
            (time.perf_counter() - started) * 1000,
        )

    def _hook(self, script: str, agi: AgiRequest) -> Hook:
        path = script.partition("?")[0].strip("/")
        query = agi.env.get("agi_query")
        if path != "amd":
            return ROUTES[path](agi)
        args = (query, *agi.args) if query else agi.args
        target = self._target_of(args, agi.env)
        return amd_hook(AgiRequest(agi.env, args), amd_defaults(target))

    def _target_of(self, args: tuple[str, ...], env: Mapping[str, str]) -> TargetSettings | None:
        # An explicit target=NAME wins; else the target whose context/extension this is.
        for arg in args:
            for item in arg.replace("&", " ").split():
                key, _, value = item.partition("=")
                if key.strip().lower() == "target" and value in self._targets:
                    return self._targets[value]
        where = (env.get("agi_context"), env.get("agi_extension"))
        for target in self._targets.values():
            if (target.context, target.extension) == where:
                return target
        return None

    async def _drive(
        self, hook: Hook, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Verdict:
        try:
            command = next(hook)
            while True:
                writer.write(command.encode() + b"\n")
                await writer.drain()
                parser = ReplyReader()
                reply = None
                async with asyncio.timeout(self._command_timeout_s):
                    while reply is None:
                        raw = await reader.readline()
                        reply = parser.feed(raw.decode("utf-8", errors="replace"))
                command = hook.send(reply)
                if reply.code == 0:
                    hook.close()
                    return Verdict("HANGUP", "the peer closed")
        except StopIteration as stop:
            verdict: Verdict = stop.value
            return verdict

    def _count(self, status: str) -> None:
        self.served[status] = self.served.get(status, 0) + 1


async def start_fastagi(
    settings: AgiSettings, targets: Mapping[str, TargetSettings] | None = None
) -> FastAgiServer:
    """Start serving on ``settings.fastagi_listen``; the caller ``await``s ``close()``."""
    server = FastAgiServer(settings, targets)
    await server.start()
    return server
