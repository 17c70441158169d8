"""New settings (SIGHUP in `serve`) apply to the next attempt; the call in flight goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami_listener import daemon
from ami_listener.config import Settings
from ami_listener.core.models import CallStatus
from ami_listener.simulator import Simulator

from .harness import SECRET, USER, Watch, place, settings_for

NUMBER = "+12025550123"


async def test_reload_changes_the_next_dial_only(tmp_path: Path) -> None:
    async with Simulator(
        username=USER,
        secret=SECRET,
        time_scale=0.05,
        ring_s=0.2,
        script={NUMBER: ["busy", "answer"]},
    ) as sim:
        settings = settings_for(sim, tmp_path)
        place(
            settings,
            "r",
            NUMBER,
            {"enabled": True, "max_retries": 1, "retry_intervals_minutes": [0.01]},
        )
        raw = settings.model_dump(mode="json", exclude_unset=True)
        raw["ami"]["secret"] = SECRET
        raw["api"]["token"] = "test-token"
        raw["dialer"]["channel"] = "PJSIP/{number}@backup-trunk"
        reloaded = Settings.from_mapping(raw, {})
        reloads: asyncio.Queue[Settings] = asyncio.Queue()
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, reloads=reloads, on_change=watch)
        )
        try:
            await watch.until(
                lambda: (c := watch.latest("r")) is not None and c.status is CallStatus.SCHEDULED
            )
            reloads.put_nowait(reloaded)
            await watch.until(lambda: watch.final("r"))
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)
    assert [d.channel for d in sim.originates] == [
        f"PJSIP/{NUMBER}@carrier",
        f"PJSIP/{NUMBER}@backup-trunk",
    ]
    assert watch.latest("r").status is CallStatus.COMPLETED  # type: ignore[union-attr]
