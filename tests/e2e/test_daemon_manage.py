"""The dialplan's "manage" hook hands the daemon a call other software placed and that
failed: the daemon records it as attempt 1 and retries it under the named profile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami_listener import daemon
from ami_listener.core.models import AttemptStatus, CallStatus
from ami_listener.simulator import Simulator
from ami_listener.store import Store

from .harness import SECRET, USER, Watch, settings_for

NUMBER = "+12025550142"


async def _ami_user_event(sim: Simulator, headers: dict[str, str]) -> None:
    """What the hook's UserEvent(AutoretryManage, ...) amounts to on the wire."""
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    await reader.readline()  # banner

    async def action(lines: dict[str, str]) -> str:
        writer.write("".join(f"{k}: {v}\r\n" for k, v in lines.items()).encode() + b"\r\n")
        await writer.drain()
        reply = (await reader.readuntil(b"\r\n\r\n")).decode()
        while not reply.startswith("Response:"):  # skip events (FullyBooted, ...)
            reply = (await reader.readuntil(b"\r\n\r\n")).decode()
        return reply

    assert "Success" in await action({"Action": "Login", "Username": USER, "Secret": SECRET})
    assert "Success" in await action({"Action": "UserEvent", **headers})
    writer.close()
    await writer.wait_closed()


async def test_failed_external_call_is_retried_under_its_profile(tmp_path: Path) -> None:
    async with Simulator(
        username=USER, secret=SECRET, time_scale=0.05, ring_s=0.2, script={NUMBER: ["answer"]}
    ) as sim:
        profile = {"enabled": True, "max_retries": 2, "retry_intervals_minutes": [0.001]}
        settings = settings_for(sim, tmp_path, extra={"profiles": {"crm": profile}})
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch)
        )
        try:
            await asyncio.wait_for(
                sim.wait_until(lambda: any(s.authenticated for s in sim.sessions)), 10
            )
            await _ami_user_event(
                sim,
                {
                    "UserEvent": "AutoretryManage",
                    "PROFILE": "crm",
                    "NUMBER": NUMBER,
                    "TARGET": "sales-ivr",
                    "DIALSTATUS": "BUSY",
                    "HANGUPCAUSE": "17",
                    "Uniqueid": "1795861722.42",
                },
            )
            await watch.until(lambda: any(watch.final(c.id) for c, _ in watch.changes))
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)

    with Store.open(settings.database.path) as store:
        (call,) = store.list_calls()
    assert call.to_number == NUMBER and call.status is CallStatus.COMPLETED
    assert [a.status for a in call.attempts] == [AttemptStatus.BUSY, AttemptStatus.COMPLETED]
    assert call.attempts[0].cause == 17 and call.retry_count == 1
    assert [d.number for d in sim.originates] == [NUMBER]  # only the retry was ours to dial
