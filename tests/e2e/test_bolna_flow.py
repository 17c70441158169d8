"""The whole Bolna flow over real HTTP: POST /call with a retry_config, signed webhooks for
every status change (the receiver fails once, the daemon restarts in the middle), and
GET /executions/{id} agreeing with the last webhook."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp

from ami_listener import daemon
from ami_listener.config import Settings
from ami_listener.simulator import Simulator
from ami_listener.webhooks import verify

from ..adapters.webhook_receiver import Receiver, scripted
from .harness import SECRET, USER, settings_for

NUMBER = "+12025550123"
HOOK_SECRET = "hook-secret"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


def _statuses(receiver: Receiver) -> list[str]:
    """Statuses of the distinct events received, in arrival order (retries de-duplicated)."""
    seen: dict[str, str] = {}
    for got in receiver.requests:
        if got.answer == "200":
            seen.setdefault(got.headers["X-Autoretry-Event-Id"], json.loads(got.body)["status"])
    return list(seen.values())


async def _run_until(settings: Settings, done: asyncio.Event) -> None:
    await daemon.run(settings, shutdown_trigger=done.wait)


async def test_make_call_to_final_status_with_webhooks(tmp_path: Path) -> None:
    async with (
        Simulator(
            username=USER,
            secret=SECRET,
            time_scale=0.05,
            ring_s=0.2,
            script={NUMBER: ["noanswer", "answer"]},
        ) as sim,
        Receiver(script=scripted("500")) as receiver,
    ):
        settings = settings_for(
            sim,
            tmp_path,
            extra={"webhooks": {"url": receiver.url, "secret": HOOK_SECRET, "timeout_s": 2}},
        )
        base = f"http://{settings.api.listen}"
        auth = {"Authorization": "Bearer test-token"}
        first_stop = asyncio.Event()
        first = asyncio.create_task(_run_until(settings, first_stop))
        async with aiohttp.ClientSession(headers=auth) as http:
            body = {
                "agent_id": "sales-ivr",
                "recipient_phone_number": NUMBER,
                "retry_config": {
                    "enabled": True,
                    "max_retries": 3,
                    "retry_intervals_minutes": [0.03],
                },
            }
            # The API is up before the daemon logs in to AMI.
            await asyncio.wait_for(
                sim.wait_until(lambda: any(s.authenticated for s in sim.sessions)), 10
            )
            async with http.post(f"{base}/call", json=body) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            assert answer["message"] == "done" and answer["status"] == "queued"
            execution_id = answer["execution_id"]

            # The retry is planned: restart the daemon while it waits.
            await receiver.until(lambda: "scheduled" in _statuses(receiver))
            first_stop.set()
            await asyncio.wait_for(first, 10)
            second_stop = asyncio.Event()
            second = asyncio.create_task(_run_until(settings, second_stop))
            try:
                await receiver.until(lambda: "completed" in _statuses(receiver), limit_s=20)
                async with http.get(f"{base}/executions/{execution_id}") as resp:
                    execution = await resp.json()
            finally:
                second_stop.set()
                await asyncio.wait_for(second, 10)

    statuses = _statuses(receiver)
    assert statuses[:2] == ["queued", "initiated"]
    assert statuses[-1] == "completed"
    assert statuses.count("initiated") == 2 and statuses.count("scheduled") == 1
    assert receiver.requests[0].answer == "500"  # the first try failed and was retried
    payloads = {}
    for got in receiver.requests:
        signature = got.headers["X-Autoretry-Signature"]
        assert verify(HOOK_SECRET.encode(), signature, got.body, now=int(time.time()))
        payload = json.loads(got.body)
        assert payload["id"] == execution_id
        payloads[payload["status"]] = payload
    scheduled = payloads["scheduled"]
    # BOLNA.md's retry webhook: id, status, retry_count, retry_config, retry_history, scheduled_at
    assert scheduled["retry_count"] == 1
    assert scheduled["retry_config"]["enabled"] is True
    assert scheduled["retry_config"]["max_retries"] == 3
    (entry,) = scheduled["retry_history"]
    assert entry["attempt"] == 1 and entry["status"] == "no-answer"
    assert ISO_Z.match(entry["at"]) and ISO_Z.match(scheduled["scheduled_at"])
    assert entry["hangup_cause"] == 19 and entry["decision"].startswith("retry 1 of 3")
    final = payloads["completed"]
    assert final["retry_count"] == 1 and len(final["retry_history"]) == 2
    assert final["telephony_data"]["to_number"] == NUMBER
    assert execution == final  # GET /executions agrees with the last webhook
    # One event per status change, each delivered once acknowledged: no duplicates among 2xx.
    acknowledged = [
        g.headers["X-Autoretry-Event-Id"] for g in receiver.requests if g.answer == "200"
    ]
    assert len(acknowledged) == len(set(acknowledged))
