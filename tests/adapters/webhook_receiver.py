"""A real aiohttp receiver on 127.0.0.1 for webhook tests, and a clock tests move by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Self

from aiohttp import web

T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)


class Clock:
    """The sender's clock: stands still until the test moves it."""

    def __init__(self, at: datetime = T0 + timedelta(seconds=1)) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: str = ""
    peer: object = None  # the client's (host, port): which connection carried it


# What to answer the n-th request (0-based): an HTTP status ("500"), "hang" (hold the
# request until the test ends; the sender times out), "302" (a redirect to /elsewhere),
# or "big" (200 with a body larger than the sender reads).
Script = Callable[[int, Received], str]


def scripted(*answers: str) -> Script:
    """Answer the first requests with ``answers`` in turn, then 200."""
    return lambda n, _: answers[n] if n < len(answers) else "200"


@dataclass
class Receiver:
    script: Script = field(default=lambda n, r: "200")
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(request.path, dict(request.headers), await request.read())
        got.peer = request.transport.get_extra_info("peername") if request.transport else None
        got.answer = self.script(len(self.requests), got)
        self.requests.append(got)
        self._arrived.set()
        if got.answer == "hang":
            await self._release.wait()
            return web.Response(status=200)
        if got.answer == "302":
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/elsewhere")
        if got.answer == "big":
            return web.Response(status=200, body=b"x" * (256 * 1024))
        return web.Response(status=int(got.answer), text="ok")

    def release(self) -> None:
        """Answer the held ("hang") requests, and any that come later, with 200."""
        self._release.set()

    async def until(self, predicate: Callable[[], bool], limit_s: float = 10) -> None:
        async def wait() -> None:
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(wait(), limit_s)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)  # its lines carry the query
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()  # let held requests finish, or cleanup waits for them
        assert self._runner is not None
        await self._runner.cleanup()
