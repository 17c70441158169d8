"""Shared pieces for end-to-end tests: settings pointing at a simulator, calls, waiting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ami_listener.config import Settings
from ami_listener.core.lifecycle import Effect, new_call
from ami_listener.core.models import FINAL_STATUSES, Call, CallRequest
from ami_listener.simulator import Simulator
from ami_listener.store import Store

USER, SECRET = "autoretry", "sim-secret"


def free_port() -> int:
    """A port nothing listens on right now (the daemon's API binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(
    sim: Simulator,
    tmp_path: Path,
    *,
    ami: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    **dialer: Any,
) -> Settings:
    raw: dict[str, Any] = {
        "ami": {
            "host": sim.host,
            "port": sim.port,
            "username": USER,
            "secret": SECRET,
            "connect_timeout_s": 2,
            "ping_interval_s": 5,
            "reconnect_max_s": 0.2,
            **(ami or {}),
        },
        "database": {"path": str(tmp_path / "autoretry.db")},
        "api": {"token": "test-token", "listen": f"127.0.0.1:{free_port()}"},
        "dialer": {
            "channel": "PJSIP/{number}@carrier",
            "spool_dir": str(tmp_path / "spool"),
            "max_concurrent": 10,
            "max_cps": 50,
            "ring_timeout_s": 1,
            **dialer,
        },
        "targets": {"sales-ivr": {"context": "autoretry-connect", "extension": "s"}},
        "agi": {"fastagi": False},  # tests run daemons side by side: no fixed port
        **(extra or {}),
    }
    return Settings.from_mapping(raw, {})


def place(
    settings: Settings, call_id: str, number: str, retry: dict[str, Any] | None = None
) -> Call:
    """Store a queued call the way the API will (lifecycle.new_call + Store.create_call)."""
    request = CallRequest.model_validate(
        {
            "agent_id": "sales-ivr",
            "recipient_phone_number": number,
            "retry_config": retry or {},
        }
    )
    call, effects = new_call(call_id, request, datetime.now(UTC))
    with Store.open(settings.database.path) as store:
        stored, _ = store.create_call(call, effects)
    return stored


class Watch:
    """Collects every change the daemon commits; lets a test wait for a condition."""

    def __init__(self) -> None:
        self.changes: list[tuple[Call, tuple[Effect, ...]]] = []
        self._changed = asyncio.Event()

    def __call__(self, call: Call, effects: tuple[Effect, ...]) -> None:
        self.changes.append((call, effects))
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], limit_s: float = 20) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), limit_s)

    def latest(self, call_id: str) -> Call | None:
        for call, _ in reversed(self.changes):
            if call.id == call_id:
                return call
        return None

    def final(self, *call_ids: str) -> bool:
        return all(
            (c := self.latest(i)) is not None and c.status in FINAL_STATUSES for i in call_ids
        )
