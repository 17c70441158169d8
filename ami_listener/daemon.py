"""Wiring: database writer, AMI listener, engine, scheduler, API and FastAGI in one TaskGroup.

``run(settings, shutdown_trigger=...)`` returns when the trigger fires (SIGTERM in
``serve``, a test's event otherwise). Inputs stop first (AMI, scheduler, API), then what
Asterisk already told us is committed, then the rest unwinds; committed state is all in
SQLite, so the next start picks up where this one stopped. ``reloads`` delivers new
settings (SIGHUP in ``serve``): they apply to the next attempt, calls in flight go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from .ami import AmiClient
from .api import create_app, serve_api
from .config import Settings
from .engine import Engine
from .engine_changes import ChangeHook
from .errors import AutoretryError
from .fastagi import FastAgiServer
from .metrics import Metrics
from .scheduler import Scheduler
from .webhooks import WebhookSender
from .writer import Writer

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def _secret(settings: Settings) -> str:
    return settings.ami.secret.get_secret_value() if settings.ami.secret else ""


async def run(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]],
    reloads: asyncio.Queue[Settings] | None = None,
    clock: Callable[[], datetime] = utc_now,
    on_change: ChangeHook | None = None,
    first_backoff_s: float = 1.0,
    api: bool = True,
    metrics: Metrics | None = None,
) -> None:
    """``metrics``: pass one to read the counters from a test; by default a new one."""
    metrics = Metrics() if metrics is None else metrics
    async with contextlib.AsyncExitStack() as stack:
        writer = await stack.enter_async_context(
            Writer(settings.database.path, synchronous=settings.database.synchronous)
        )
        wakers: list[Callable[[], None]] = []

        def wake() -> None:
            for waker in wakers:
                waker()

        sender = WebhookSender(
            writer, settings.webhooks, clock=clock, rng=random.random, metrics=metrics
        )
        wakers.append(sender.wake)
        engine = Engine(
            settings,
            writer,
            None,
            clock=clock,
            wake_scheduler=wake,
            rng=random.random,
            on_change=on_change,
            new_id=new_id,
            wake_outbox=sender.wake,
            metrics=metrics,
        )
        ami = AmiClient(
            settings.ami,
            _secret(settings),
            on_event=engine.on_ami_event,
            on_ready=engine.on_ready,
            first_backoff_s=first_backoff_s,
            metrics=metrics,
        )
        engine.ami = ami
        scheduler = Scheduler(
            writer,
            engine.dial,
            rules=settings.rules(rng=random.random),
            max_concurrent=settings.dialer.max_concurrent,
            max_cps=settings.dialer.max_cps,
            clock=clock,
            new_id=new_id,
            # Call-file outcomes come from AMI events too: never dial blind.
            ready=lambda: ami.ready,
            on_change=engine.changed,
            metrics=metrics,
        )
        wakers.append(scheduler.wake)
        if api:
            app = create_app(
                settings,
                writer,
                clock=clock,
                new_id=new_id,
                wake=wake,
                health=lambda: {"ami": ami.ready},
                metrics=metrics,
            )
            try:
                runner = await serve_api(app, settings.api.listen)
            except OSError as exc:
                raise AutoretryError(
                    f"[api].listen {settings.api.listen}: {exc.strerror}"
                ) from None
            stack.push_async_callback(runner.cleanup)
        if settings.agi.fastagi:
            try:
                await stack.enter_async_context(FastAgiServer(settings.agi, settings.targets))
            except OSError as exc:
                where = settings.agi.fastagi_listen
                raise AutoretryError(f"[agi].fastagi_listen {where}: {exc.strerror}") from None

        def apply(new: Settings) -> None:
            nonlocal settings
            if new.database != settings.database or new.api != settings.api:
                log.warning("[database] and [api] changes need a restart; kept the old ones")
                new = new.model_copy(update={"database": settings.database, "api": settings.api})
            engine.reload(new, random.random)
            scheduler.reload(
                rules=new.rules(rng=random.random),
                max_concurrent=new.dialer.max_concurrent,
                max_cps=new.dialer.max_cps,
            )
            ami.reload(new.ami, _secret(new))
            sender.reload(new.webhooks)
            logging.getLogger("ami_listener").setLevel(new.logging.level)
            settings = new
            log.info("configuration reloaded")

        async def reloader() -> None:
            assert reloads is not None
            while True:
                apply(await reloads.get())

        log.info("autoretry started (database %s)", settings.database.path)
        async with asyncio.TaskGroup() as group:
            inputs = [
                group.create_task(ami.run(), name="ami"),
                group.create_task(scheduler.run(), name="scheduler"),
            ]
            if reloads is not None:
                inputs.append(group.create_task(reloader(), name="reload"))
            applier = group.create_task(engine.run(), name="engine")
            delivery = group.create_task(sender.run(), name="webhooks")
            await shutdown_trigger()
            log.info("autoretry stopping")
            for task in inputs:
                task.cancel()
            await asyncio.wait(inputs)
            await engine.drain()
            applier.cancel()
            # Requests on the wire get their answer first, so what the receiver acknowledged
            # is recorded and not sent again after the restart; the rest waits in the outbox.
            await sender.drain(settings.webhooks.timeout_s)
            delivery.cancel()
