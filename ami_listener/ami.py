"""The AMI connection: panoramisk ``Manager`` with our protocol, supervised by ``AmiClient``.

panoramisk's own reconnect (a fixed delay) and pinger (fire and forget) are replaced: the
client logs in, sends the event filters, pings with a deadline, and on any loss reconnects
with capped exponential backoff, logging one line per state change. panoramisk re-sends
unanswered actions after a reconnect; for an ``Originate`` that could ring a person twice,
so every action is "forgettable" here and the caller decides what a lost reply means.
Errors from the socket become ``AmiError``; the secret is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.actions import Action

from .ami_protocol import LOGIN_EVENTS, EventCallback, EventSelection, filters, protocol_factory
from .config_sections import AmiSettings
from .errors import AmiError
from .metrics import Metrics

log = logging.getLogger(__name__)

_ACTIONS = (
    "login",
    "logoff",
    "ping",
    "originate",
    "hangup",
    "filter",
    "coreshowchannels",
    "command",
    "events",
    "status",
)


class _Manager(Manager):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's Manager minus its reconnect and pinger: ``AmiClient`` supervises."""

    def __init__(self, lost: asyncio.Future[None], **config: Any) -> None:
        super().__init__(**config)
        self._lost = lost

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # AmiClient sees the exception from the connect task itself
        super().connection_made(f)

    def ping(self) -> None:  # panoramisk's pinger never looks at the answer
        self.pinger = None

    async def send_awaiting_actions(self, *_: Any) -> None:
        # Nothing is ever re-sent after a reconnect (every action is forgettable here).
        self.awaiting_actions.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        if not self._lost.done():
            self._lost.set_result(None)


class Backoff:
    """1, 2, 4 ... seconds, capped; ``reset()`` after a good session."""

    def __init__(self, cap_s: float, first_s: float = 1.0) -> None:
        self.cap_s, self.first_s = cap_s, first_s
        self._next = first_s

    def next(self) -> float:
        delay, self._next = self._next, min(self.cap_s, self._next * 2)
        return min(delay, self.cap_s)

    def reset(self) -> None:
        self._next = self.first_s


class AmiClient:
    def __init__(
        self,
        settings: AmiSettings,
        secret: str,
        *,
        on_event: EventCallback,
        on_ready: Callable[[], Any] = lambda: None,
        on_lost: Callable[[], Any] = lambda: None,
        selection: EventSelection | None = None,
        first_backoff_s: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._secret = secret
        self._on_event = on_event
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._selection = selection or EventSelection.default()
        self._backoff = Backoff(settings.reconnect_max_s, first_backoff_s)
        self._manager: _Manager | None = None
        self._lost: asyncio.Future[None] | None = None
        self.ready = False
        self.reconnects = 0
        self.where = f"{settings.host}:{settings.port}"

    def reload(self, settings: AmiSettings, secret: str) -> None:
        """New connection settings: reconnect with them (calls go on inside Asterisk and
        are reconciled after the new login). Nothing happens when nothing changed."""
        if settings == self._settings and secret == self._secret:
            return
        self._settings, self._secret = settings, secret
        self._backoff = Backoff(settings.reconnect_max_s, self._backoff.first_s)
        self.where = f"{settings.host}:{settings.port}"
        log.info("AMI: settings changed, reconnecting")
        self._close()

    async def run(self) -> None:
        """Stay connected until cancelled."""
        first = True
        while True:
            if not first:
                self.reconnects += 1
                if self._metrics is not None:
                    self._metrics.ami_reconnects.inc()
            first = False
            try:
                await self._session()
            except AmiError as exc:
                log.warning("AMI %s: %s", self.where, exc)
            finally:
                if self.ready:
                    self.ready = False
                    if self._metrics is not None:
                        self._metrics.ami_state(connected=False)
                    self._on_lost()
                self._close()
            delay = self._backoff.next()
            log.warning("AMI %s: reconnecting in %.1f s", self.where, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        settings = self._settings
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()
        self._lost = lost
        manager = _Manager(
            lost,
            host=settings.host,
            port=settings.port,
            username=settings.username,
            secret=self._secret,
            events=LOGIN_EVENTS if settings.events_mask else "on",
            protocol_factory=protocol_factory(self._on_event, self._selection),
            forgetable_actions=_ACTIONS,
            loop=loop,
            log=log,
        )
        self._manager = manager
        log.info("AMI %s: connecting", self.where)
        try:
            await asyncio.wait_for(manager.connect(), settings.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise AmiError(f"cannot connect: {exc or 'timed out'}") from None
        login = manager.authenticated_future
        if login is None:
            raise AmiError("connection closed before login")
        try:
            reply = await asyncio.wait_for(asyncio.shield(login), settings.connect_timeout_s)
        except TimeoutError:
            raise AmiError("login timed out") from None
        if not manager.authenticated:
            message = getattr(reply, "message", "") or "refused"
            raise AmiError(f"login as {settings.username!r} refused: {message}")
        log.info("AMI %s: logged in as %s", self.where, settings.username)
        if settings.use_filters:
            await self._send_filters()
        self._backoff.reset()
        self.ready = True
        if self._metrics is not None:
            self._metrics.ami_state(connected=True)
        self._on_ready()
        await self._keepalive(lost)

    async def _send_filters(self) -> None:
        for action in filters():
            try:
                reply = await self.action(action)
            except AmiError as exc:
                log.info("AMI %s: filters not set (%s); filtering here", self.where, exc)
                return
            if reply.get("Response") != "Success":
                log.info(
                    "AMI %s: filters refused (%s); filtering here",
                    self.where,
                    reply.get("Message", "no reason"),
                )
                return

    async def _keepalive(self, lost: asyncio.Future[None]) -> None:
        interval = self._settings.ping_interval_s
        while True:
            done, _ = await asyncio.wait({lost}, timeout=interval)
            if done:
                raise AmiError("connection lost")
            try:
                await self.action({"Action": "Ping"})
            except AmiError:
                raise AmiError(f"no answer to Ping within {self._deadline_s:.0f} s") from None

    @property
    def _deadline_s(self) -> float:
        return self._settings.connect_timeout_s

    def _close(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)  # a close of ours: panoramisk does not report it

    async def action(self, headers: Mapping[str, str | list[str]]) -> dict[str, str]:
        """Send one action; return its (first) reply as a dict. AmiError if none comes."""
        manager = self._manager
        if manager is None or manager.protocol is None or manager.protocol.closed:
            raise AmiError("not connected")
        action = Action(dict(headers), as_list=False)
        try:
            reply = await asyncio.wait_for(
                manager.send_action(action, as_list=False), self._deadline_s
            )
        except TimeoutError:
            raise AmiError(f"no reply to {headers.get('Action')}") from None
        return {str(k): str(v) for k, v in dict(reply).items()}

    async def originate(self, headers: list[tuple[str, str]]) -> None:
        """Send an async Originate; AmiError with Asterisk's message if it is refused."""
        fields: dict[str, str | list[str]] = {}
        for key, value in headers:
            if key == "Variable":
                variables = fields.setdefault("Variable", [])
                assert isinstance(variables, list)
                variables.append(value)
            else:
                fields[key] = value
        reply = await self.action(fields)
        if reply.get("Response") != "Success":
            raise AmiError(reply.get("Message") or "Originate refused")

    async def channels(self) -> list[dict[str, str]]:
        """Every live channel (CoreShowChannels), for reconciliation."""
        manager = self._manager
        if manager is None or not self.ready:
            raise AmiError("not connected")
        future = manager.send_action({"Action": "CoreShowChannels"}, as_list=True)
        try:
            replies = await asyncio.wait_for(future, self._deadline_s)
        except TimeoutError:
            raise AmiError("no reply to CoreShowChannels") from None
        if not isinstance(replies, list):
            replies = [replies]
        if replies and dict(replies[0]).get("Response") == "Error":
            raise AmiError(f"CoreShowChannels refused: {dict(replies[0]).get('Message')}")
        return [
            {str(k): str(v) for k, v in dict(r).items()}
            for r in replies
            if dict(r).get("Event") == "CoreShowChannel"
        ]
