"""The daemon is SIGKILLed with calls in flight and retries pending; a restart loses nothing
and dials nothing twice (invariants 1-3 and 7)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ami_listener.simulator import Simulator

from .harness import SECRET, USER, free_port, place, settings_for

CALLS = {
    # call id: (number, simulator script)
    "ring": ("+12025550408", ["noanswer", "answer"]),
    "busy": ("+12025550486", ["busy", "busy", "answer"]),
    "answer": ("+12025550100", ["answer"]),
    "later": ("+12025550177", ["busy", "answer"]),
}
# `error` is retried: an attempt whose outcome the kill made us lose ends `outcome-lost`.
RETRY = {
    "enabled": True,
    "max_retries": 3,
    "retry_on_statuses": ["no-answer", "busy", "failed", "error"],
    "retry_intervals_minutes": [0.02],
}


def _config(sim: Simulator, tmp_path: Path) -> Path:
    path = tmp_path / "autoretry.toml"
    path.write_text(
        f"""
[ami]
host = "{sim.host}"
port = {sim.port}
username = "{USER}"
connect_timeout_s = 2
ping_interval_s = 5
reconnect_max_s = 0.5
[database]
path = "{tmp_path / "autoretry.db"}"
[api]
token = "t"
listen = "127.0.0.1:{free_port()}"
[agi]
fastagi = false
[dialer]
channel = "PJSIP/{{number}}@carrier"
ring_timeout_s = 2
max_cps = 50
[targets.sales-ivr]
context = "autoretry-connect"
extension = "s"
"""
    )
    return path


async def _start(config: Path, log: IO[bytes]) -> asyncio.subprocess.Process:
    env = {**os.environ, "AUTORETRY_AMI_SECRET": SECRET, "AUTORETRY_API_TOKEN": "t"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ami_listener.cli",
        "--config",
        str(config),
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def _wait_db(db: Path, predicate: Callable[[], bool], limit_s: float = 30) -> None:
    # The daemon is another process: SQLite cannot notify us, so look again every 50 ms
    # until the condition holds (bounded by the timeout).
    async def wait() -> None:
        while not predicate():  # noqa: ASYNC110 - another process: no event to await
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), limit_s)


async def test_sigkill_in_flight_and_pending_loses_nothing(tmp_path: Path) -> None:
    script = {number: plan for number, plan in CALLS.values()}
    async with Simulator(
        username=USER, secret=SECRET, time_scale=0.5, ring_s=0.3, script=script, seed=3
    ) as sim:
        settings = settings_for(sim, tmp_path)
        for call_id, (number, _) in CALLS.items():
            place(settings, call_id, number, RETRY)
        db = tmp_path / "autoretry.db"
        config = _config(sim, tmp_path)
        log = (tmp_path / "daemon.log").open("ab")
        first = await _start(config, log)
        try:
            # Kill while the no-answer call is still ringing and the busy one waits to retry.
            await asyncio.wait_for(
                sim.wait_until(
                    lambda: (
                        any(
                            d.number == "+12025550408" and d.ended_at is None
                            for d in sim.originates
                        )
                        and sim.attempts["+12025550486"] >= 1
                    )
                ),
                20,
            )
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        live_at_kill = _rows(db, "select count(*) from attempts where ended_at is null")[0][0]
        assert live_at_kill >= 1  # the kill really hit a call in flight

        second = await _start(config, log)
        try:
            await _wait_db(
                db,
                lambda: (
                    _rows(
                        db,
                        "select count(*) from calls where status not in "
                        "('completed','busy','no-answer','failed','error','canceled')",
                    )[0][0]
                    == 0
                ),
            )
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 10) == 0
            log.close()

    statuses = dict(_rows(db, "select id, status from calls"))
    assert statuses == {cid: "completed" for cid in CALLS}, statuses
    for call_id, (number, _) in CALLS.items():
        assert sim.max_concurrent(number) == 1, f"{number} rung twice at once"
        attempts = _rows(db, f"select number, status from attempts where call_id = '{call_id}'")
        dials = [d for d in sim.originates if d.number == number]
        # No attempt was dialled twice (at most one dial per attempt row). An attempt may be
        # committed and then killed before its Originate went out: it ends `error`
        # (outcome-lost) undialled; every other attempt was dialled exactly once.
        lost = [a for a in attempts if a[1] == "error"]
        assert len(attempts) - len(lost) <= len(dials) <= len(attempts), (call_id, dials, attempts)
    integrity = _rows(db, "pragma integrity_check")
    assert integrity == [("ok",)]
