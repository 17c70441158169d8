"""``GET /metrics`` after an end-to-end run: daemon.run against the AMI simulator, a real
webhook receiver, and the counts the run produced read back through prometheus-client's
own parser. The same run checks the logs: one line per event with call id and attempt
number, and no secret anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ami_listener import daemon
from ami_listener.simulator import Simulator
from ami_listener.store import Store

from ..adapters.webhook_receiver import Receiver, scripted
from .harness import SECRET, USER, Watch, place, settings_for

BUSY_THEN_ANSWER = "+12025550123"
UNALLOCATED = "+12025550404"  # the simulator's 404 Not Found, Q.850 1
RETRY = {"enabled": True, "max_retries": 3, "retry_intervals_minutes": [0.001]}
TOKEN = "test-token"  # harness.settings_for's [api].token
HOOK_SECRET = "hook-secret-e2e-value"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _acknowledged(receiver: Receiver) -> set[str]:
    return {g.headers["X-Autoretry-Event-Id"] for g in receiver.requests if g.answer == "200"}


async def _scrape_until(
    http: aiohttp.ClientSession, url: str, done: Callable[[Samples], bool]
) -> Samples:
    """Scrape until ``done``: a delivery result is counted a moment after the receiver
    answered (the sender commits it first). Each scrape waits on the daemon's writer
    thread, behind that commit, so this is a wait on the daemon, not a spin."""

    async def scrape() -> Samples:
        while True:
            async with http.get(url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                samples = _parse(await resp.text())
            if done(samples):
                return samples

    return await asyncio.wait_for(scrape(), 10)


async def test_metrics_count_what_the_run_did(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    script = {BUSY_THEN_ANSWER: ["busy", "answer"]}
    async with (
        Simulator(
            username=USER, secret=SECRET, time_scale=0.05, ring_s=0.2, script=script, seed=3
        ) as sim,
        Receiver(script=scripted("500")) as receiver,  # the first delivery fails once
    ):
        settings = settings_for(
            sim,
            tmp_path,
            extra={"webhooks": {"url": receiver.url, "secret": HOOK_SECRET, "timeout_s": 2}},
        )
        place(settings, "busy-then-answer", BUSY_THEN_ANSWER, RETRY)
        place(settings, "unallocated", UNALLOCATED, RETRY)
        watch = Watch()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            daemon.run(settings, shutdown_trigger=stop.wait, on_change=watch)
        )
        url = f"http://{settings.api.listen}/metrics"
        try:
            await watch.until(lambda: watch.final("busy-then-answer", "unallocated"))
            with Store.open(settings.database.path) as store:
                events = {e.id for e in store.outbox_list(limit=1000)}
            await receiver.until(lambda: _acknowledged(receiver) == events)
            async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
                assert resp.status == 401  # the token is required, as on every route
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(headers=auth) as http:
                samples = await _scrape_until(
                    http,
                    url,
                    lambda s: (
                        _value(s, "autoretry_webhook_deliveries_total", result="delivered")
                        == len(events)
                    ),
                )
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)

    # Attempts by status and Q.850 cause: busy (17), then answered (16); unallocated (1).
    attempts = {
        (dict(labels)["status"], dict(labels)["cause"]): value
        for (name, labels), value in samples.items()
        if name == "autoretry_attempts_total"
    }
    assert attempts == {("busy", "17"): 1, ("completed", "16"): 1, ("failed", "1"): 1}
    assert _value(samples, "autoretry_retries_scheduled_total") == 1
    # Three dials, each within a second of its due time (the retry waits 60 ms).
    assert _value(samples, "autoretry_dial_lag_seconds_count") == 3
    assert _value(samples, "autoretry_dial_lag_seconds_bucket", le="1.0") == 3
    assert _value(samples, "autoretry_ami_connected") == 1
    assert ("autoretry_ami_reconnects_total", frozenset()) in samples
    assert _value(samples, "autoretry_ami_reconnects_total") == 0
    # Every event delivered once; the first try of the first one got a 500.
    assert _value(samples, "autoretry_webhook_deliveries_total", result="failed") == 1
    assert _value(samples, "autoretry_webhook_deliveries_total", result="dead") == 0
    assert len(events) == len(_acknowledged(receiver)) >= 8
    assert _value(samples, "autoretry_outbox_depth") == 0
    assert _value(samples, "autoretry_calls_live") == 0
    assert _value(samples, "autoretry_calls_pending") == 0

    # Logs: every attempt's outcome is one line naming the call and the attempt number.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ami_listener")]
    assert any(m.startswith("call busy-then-answer attempt 1: scheduled") for m in lines)
    assert any(m.startswith("call busy-then-answer attempt 2: completed") for m in lines)
    assert any(m.startswith("call unallocated attempt 1: failed") for m in lines)
    # No secret in any record of any logger (message, arguments, exception text).
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + json.dumps(str(record.args))
        for secret in (SECRET, TOKEN, HOOK_SECRET):
            assert secret not in text, (record.name, record.getMessage())
