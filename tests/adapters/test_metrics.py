"""Metrics: the ``Metrics`` object, its updates from the scheduler, webhook sender and AMI
client (real SQLite, real TCP), and ``GET /metrics`` served by the real API app."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from ami_listener import store_status
from ami_listener.ami import AmiClient
from ami_listener.api import create_app
from ami_listener.config_sections import AmiSettings
from ami_listener.core.lifecycle import AttemptEnded, Dispatch, advance, new_call
from ami_listener.core.models import Attempt, AttemptStatus, Call, CallRequest, OutcomeStatus
from ami_listener.core.outcomes import Outcome
from ami_listener.core.policy import Rules
from ami_listener.metrics import Metrics, StoreGauges, cause_label, parse
from ami_listener.scheduler import Scheduler
from ami_listener.simulator import Simulator
from ami_listener.store import Store
from ami_listener.webhooks import WebhookSender
from ami_listener.writer import Writer

from .api_harness import AUTH, NUMBER, T0, load_settings
from .test_webhooks import Results, place, settings
from .webhook_receiver import Clock, Receiver

REQUEST = CallRequest(agent_id="sales-ivr", recipient_phone_number=NUMBER)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return parse(metrics.exposition().decode()).get((name, tuple(sorted(labels.items()))), 0.0)


def attempt(status: AttemptStatus, cause: int | None) -> Attempt:
    return Attempt("a1", "c1", 1, status, T0, ended_at=T0, cause=cause)


# ---- the object ---------------------------------------------------------------------------
def test_attempts_by_status_and_cause_and_retries() -> None:
    metrics = Metrics()
    metrics.attempt_ended(attempt(AttemptStatus.BUSY, 17), retried=True)
    metrics.attempt_ended(attempt(AttemptStatus.BUSY, 17), retried=True)
    metrics.attempt_ended(attempt(AttemptStatus.ERROR, None), retried=False)
    assert value(metrics, "autoretry_attempts_total", status="busy", cause="17") == 2
    assert value(metrics, "autoretry_attempts_total", status="error", cause="none") == 1
    assert value(metrics, "autoretry_retries_scheduled_total") == 2
    assert cause_label(0) == "0" and cause_label(None) == "none"


def test_webhook_results_start_at_zero_and_map_settlements() -> None:
    metrics = Metrics()
    samples = parse(metrics.exposition().decode())
    for result in ("delivered", "failed", "dead"):
        assert samples[("autoretry_webhook_deliveries_total", (("result", result),))] == 0
    metrics.webhook_settled("delivered", attempted=True)
    metrics.webhook_settled("delivered", attempted=False)  # no URL: nothing was sent
    metrics.webhook_settled("pending", attempted=True)  # failed, retried later
    metrics.webhook_settled("dead", attempted=True)
    metrics.webhook_settled("delivered", attempted=True, count=3)  # a trip's results, by kind
    metrics.webhook_settled("pending", attempted=False, count=2)
    got = {
        r: value(metrics, "autoretry_webhook_deliveries_total", result=r)
        for r in ("delivered", "failed", "dead")
    }
    assert got == {"delivered": 4, "failed": 1, "dead": 1}


def test_dial_lag_and_gauges() -> None:
    metrics = Metrics()
    metrics.dialled(T0, T0 + timedelta(seconds=7))
    metrics.dialled(T0, T0 - timedelta(seconds=1))  # a clock step back is 0, not negative
    assert value(metrics, "autoretry_dial_lag_seconds_count") == 2
    assert value(metrics, "autoretry_dial_lag_seconds_sum") == 7
    assert value(metrics, "autoretry_dial_lag_seconds_bucket", le="5.0") == 1
    metrics.refresh(StoreGauges(outbox_depth=4, calls_live=2, calls_pending=9))
    metrics.ami_state(connected=True)
    assert value(metrics, "autoretry_outbox_depth") == 4
    assert value(metrics, "autoretry_calls_live") == 2
    assert value(metrics, "autoretry_calls_pending") == 9
    assert value(metrics, "autoretry_ami_connected") == 1


def test_each_object_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # would raise "Duplicated timeseries" on one registry
    one.ami_reconnects.inc()
    assert value(one, "autoretry_ami_reconnects_total") == 1
    assert value(two, "autoretry_ami_reconnects_total") == 0
    assert REGISTRY.get_sample_value("autoretry_ami_reconnects_total") is None


# ---- from the components ----------------------------------------------------------------
async def test_scheduler_observes_the_lag_from_due_time_to_dial(tmp_path: Path) -> None:
    metrics = Metrics()
    dialled = asyncio.Event()

    async def dial(call: Call, attempt: Attempt) -> None:
        dialled.set()

    async with Writer(tmp_path / "s.db") as writer:
        call, effects = new_call("c1", REQUEST, T0)  # due at T0
        await writer(lambda s: s.create_call(call, effects))
        ids = itertools.count()
        scheduler = Scheduler(
            writer,
            dial,
            rules=Rules(),
            max_concurrent=5,
            max_cps=10,
            clock=lambda: T0 + timedelta(seconds=42),  # claimed 42 s late
            new_id=lambda: f"a{next(ids)}",
            metrics=metrics,
        )
        task = asyncio.create_task(scheduler.run())
        try:
            await asyncio.wait_for(dialled.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert value(metrics, "autoretry_dial_lag_seconds_count") == 1
    assert value(metrics, "autoretry_dial_lag_seconds_sum") == 42


async def test_webhook_sender_counts_dead_and_delivered(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    metrics = Metrics()
    async with Receiver() as rx:
        place(db, "c1", rx.url, events=2)
        place(db, "c2", "http://not-allowed.example/hook")
        config = settings(allow_hosts=["127.0.0.1"])
        async with Writer(db) as writer:
            results = Results()
            sender = WebhookSender(
                writer, config, clock=Clock(), rng=lambda: 0.5, on_settled=results, metrics=metrics
            )
            task = asyncio.create_task(sender.run())
            try:
                await results.until(3)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    assert value(metrics, "autoretry_webhook_deliveries_total", result="delivered") == 2
    assert value(metrics, "autoretry_webhook_deliveries_total", result="dead") == 1
    assert value(metrics, "autoretry_webhook_deliveries_total", result="failed") == 0


async def test_ami_connection_state_and_reconnects() -> None:
    metrics = Metrics()
    ready, lost = asyncio.Event(), asyncio.Event()
    async with Simulator(username="u", secret="s3cret") as sim:
        config = AmiSettings.model_validate(
            {"host": sim.host, "port": sim.port, "username": "u", "reconnect_max_s": 0.1}
        )
        client = AmiClient(
            config,
            "s3cret",
            on_event=lambda msg: None,
            on_ready=ready.set,
            on_lost=lost.set,
            first_backoff_s=0.05,
            metrics=metrics,
        )
        assert value(metrics, "autoretry_ami_connected") == 0
        task = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(ready.wait(), 10)
            assert value(metrics, "autoretry_ami_connected") == 1
            ready.clear()
            await sim.drop_connections()
            await asyncio.wait_for(lost.wait(), 10)
            assert value(metrics, "autoretry_ami_connected") == 0
            await asyncio.wait_for(ready.wait(), 10)
            assert value(metrics, "autoretry_ami_connected") == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert value(metrics, "autoretry_ami_connected") == 0  # stopping closes the session
    assert value(metrics, "autoretry_ami_reconnects_total") == client.reconnects >= 1


# ---- GET /metrics -------------------------------------------------------------------------
@dataclass
class Served:
    client: TestClient[Any, Any]
    writer: Writer


@asynccontextmanager
async def serving(tmp_path: Path, metrics: Metrics | None) -> AsyncIterator[Served]:
    config = load_settings(tmp_path)
    async with Writer(config.database.path) as writer:
        app = create_app(
            config,
            writer,
            clock=lambda: T0,
            new_id=lambda: "id",
            wake=lambda: None,
            health=lambda: {"ami": True},
            metrics=metrics,
        )
        async with TestClient(TestServer(app)) as client:
            yield Served(client, writer)


async def test_metrics_route_needs_the_token_and_reads_the_database(tmp_path: Path) -> None:
    metrics = Metrics()
    async with serving(tmp_path, metrics) as api:
        resp = await api.client.get("/metrics")
        assert resp.status == 401
        call, effects = new_call("c1", REQUEST, T0)
        await api.writer(lambda s: s.create_call(call, effects))
        resp = await api.client.get("/metrics", headers=AUTH)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = parse(await resp.text())
    assert samples[("autoretry_calls_pending", ())] == 1  # queued, due now
    assert samples[("autoretry_outbox_depth", ())] == 1  # its "queued" event
    assert samples[("autoretry_calls_live", ())] == 0


async def test_no_metrics_no_route(tmp_path: Path) -> None:
    async with serving(tmp_path, None) as api:
        resp = await api.client.get("/metrics", headers=AUTH)
        assert resp.status == 404
        spec = await (await api.client.get("/openapi.json", headers=AUTH)).json()
    assert "/metrics" not in spec["paths"]


async def test_openapi_lists_metrics_when_served(tmp_path: Path) -> None:
    async with serving(tmp_path, Metrics()) as api:
        spec = await (await api.client.get("/openapi.json", headers=AUTH)).json()
    content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert content == {"text/plain": {"schema": {"type": "string"}}}
    assert "security" not in spec["paths"]["/metrics"]["get"]  # the token, as everywhere


@pytest.mark.parametrize("status", [AttemptStatus.COMPLETED, AttemptStatus.FAILED])
def test_store_gauges_count_live_attempts(tmp_path: Path, status: AttemptStatus) -> None:
    with Store.open(tmp_path / "g.db") as store:
        for call_id in ("c1", "c2"):
            store.create_call(*new_call(call_id, REQUEST, T0))
        store.transition("c1", lambda c: advance(c, Dispatch(T0, "a1")))
        assert store_status.gauges(store) == StoreGauges(3, 1, 1)  # queued x2, initiated
        answered = status is AttemptStatus.COMPLETED
        outcome = Outcome(OutcomeStatus(status.value), False, "x", answered=answered)
        store.transition("c1", lambda c: advance(c, AttemptEnded(T0, "a1", outcome)))
        gauges = store_status.gauges(store)
    assert (gauges.calls_live, gauges.calls_pending) == (0, 1)
