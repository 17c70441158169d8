"""Wiring: database writer, AMI listener, engine and scheduler in one TaskGroup.

``run(settings, shutdown_trigger=...)`` returns when the trigger fires (SIGTERM in
``serve``, a test's event otherwise). Cancellation unwinds every task; committed state is
all in SQLite, so the next start picks up where this one stopped.
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
from .config import Settings
from .engine import ChangeHook, Engine
from .fastagi import FastAgiServer
from .scheduler import Scheduler
from .writer import Writer

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


async def run(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]],
    clock: Callable[[], datetime] = utc_now,
    on_change: ChangeHook | None = None,
    first_backoff_s: float = 1.0,
) -> None:
    async with Writer(settings.database.path, synchronous=settings.database.synchronous) as writer:
        scheduler: Scheduler | None = None

        def wake() -> None:
            if scheduler is not None:
                scheduler.wake()

        engine = Engine(
            settings,
            writer,
            None,
            clock=clock,
            wake_scheduler=wake,
            rng=random.random,
            on_change=on_change,
            new_id=new_id,
        )
        ami = AmiClient(
            settings.ami,
            settings.ami.secret.get_secret_value() if settings.ami.secret else "",
            on_event=engine.on_ami_event,
            on_ready=engine.on_ready,
            first_backoff_s=first_backoff_s,
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
        )
        log.info("autoretry started (database %s)", settings.database.path)
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as group:
            if settings.agi.fastagi:
                await stack.enter_async_context(FastAgiServer(settings.agi, settings.targets))
            inputs = [
                group.create_task(ami.run(), name="ami"),
                group.create_task(scheduler.run(), name="scheduler"),
            ]
            applier = group.create_task(engine.run(), name="engine")
            await shutdown_trigger()
            log.info("autoretry stopping")
            for task in inputs:
                task.cancel()
            await asyncio.wait(inputs)
            await engine.drain()
            applier.cancel()
