"""``autoretry status`` (and the webhook part of ``calls show``): a real SQLite file, and
the daemon's real API served on 127.0.0.1, or nothing listening at all."""

from __future__ import annotations

import argparse
import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ami_listener import cli_calls, cli_status
from ami_listener.api import create_app, serve_api
from ami_listener.config import Settings
from ami_listener.core.lifecycle import AttemptEnded, Dispatch, advance, new_call
from ami_listener.core.models import CallRequest, OutcomeStatus
from ami_listener.core.outcomes import AttemptFacts, Outcome
from ami_listener.errors import StoreError
from ami_listener.metrics import Metrics
from ami_listener.store import Store
from ami_listener.writer import Writer

from .api_harness import NUMBER, TOML

NOW = datetime(2026, 1, 26, 10, 30, tzinfo=UTC)
REQUEST = CallRequest(
    agent_id="sales-ivr",
    recipient_phone_number=NUMBER,
    retry_config={"enabled": True, "max_retries": 2, "retry_intervals_minutes": [120]},
)
UNALLOCATED = Outcome(
    OutcomeStatus.FAILED,
    True,
    "SIP 404 / Q.850 1 Unallocated (unassigned) number",
    facts=AttemptFacts(cause=1, tech_cause=404),
)
BUSY = Outcome(OutcomeStatus.BUSY, False, "SIP 486 / Q.850 17 User busy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "autoretry.toml"
    path.write_text(TOML.replace("[api]\n", f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'))
    return Settings.load(path, {})


def seed(settings: Settings, now: datetime) -> None:
    """live (ringing out), due (now), retry (busy at now, retried in 2 h), later (in 2 days),
    failed (unallocated, an error line), and one dead webhook event."""
    with Store.open(settings.database.path) as store:
        for call_id, due in (
            ("live", now - timedelta(seconds=30)),
            ("due", now - timedelta(minutes=1)),
            ("retry", now - timedelta(seconds=5)),
            ("later", now + timedelta(days=2)),
            ("failed", now - timedelta(minutes=10)),
        ):
            store.create_call(*new_call(call_id, REQUEST, due))
        for call_id, at in (("live", now - timedelta(seconds=30)), ("retry", now), ("failed", now)):
            store.transition(call_id, lambda c, at=at: advance(c, Dispatch(at, f"{c.id}-a1")))
        ended = now + timedelta(seconds=3)
        store.transition("retry", lambda c: advance(c, AttemptEnded(ended, "retry-a1", BUSY)))
        store.transition(
            "failed", lambda c: advance(c, AttemptEnded(ended, "failed-a1", UNALLOCATED))
        )
        first = store.outbox_list(limit=1)[0]
        store.outbox_dead(first.id, "HTTP 410")


def run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="autoretry")
    commands = parser.add_subparsers(dest="command", required=True)
    cli_status.add_parser(commands, lambda args: settings)
    cli_calls.add_parser(commands, lambda args: settings)
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def test_database_part_in_one_screen(settings: Settings) -> None:
    seed(settings, NOW)
    database = cli_status.read_database(settings, NOW + timedelta(seconds=10))
    assert database.live == 1
    assert [(a.call_id, a.number, a.status) for a in database.in_flight] == [("live", 1, "dialing")]
    pending = database.pending
    assert pending.due_now == 1 and pending.later == 1 and pending.unscheduled == 0
    assert pending.by_status == {"queued": 2, "scheduled": 1}
    assert pending.first_hour_at == NOW.replace(minute=0)
    # the busy retry is due at 12:30: the third hour from 10:00
    assert pending.hours[:3] == (0, 0, 1) and sum(pending.hours) == 1 and len(pending.hours) == 24
    assert [(a.call_id, a.status, a.reason) for a in database.errors] == [
        ("failed", "failed", UNALLOCATED.reason)
    ]
    assert database.dead == 1 and database.dead_latest[0].last_error == "HTTP 410"

    down = cli_status.Daemon("127.0.0.1:9", problem="not reachable (Connection refused)")
    lines = cli_status.render(database, down, NOW + timedelta(seconds=10))
    screen = "\n".join(lines)
    assert len(lines) <= 25
    assert "daemon     127.0.0.1:9: not reachable (Connection refused)" in screen
    assert (
        "in flight  1 call\n  call live attempt 1  dialing      since 2026-01-26T10:29:30Z (40 s)"
        in screen
    )
    assert "pending    3 calls (queued 2, scheduled 1): 1 due now, 1 in the next 24 h, 1 later" in (
        screen
    )
    assert "  10:00     0   11:00     0   12:00     1" in screen
    assert f"call failed attempt 1  failed  {UNALLOCATED.reason}" in screen
    assert "webhooks   9 to deliver, 1 dead" in screen and "HTTP 410" in screen


def test_no_daemon_is_said_and_exits_1(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(settings, datetime.now(UTC))
    code = run(settings, "status")
    out, err = capsys.readouterr()
    assert code == 1
    assert "not reachable" in out.splitlines()[1]
    assert "in flight  1 call" in out  # the database part is shown all the same
    assert err.count("\n") == 1 and err.startswith("autoretry: daemon at 127.0.0.1:")


def test_no_database_is_an_error(settings: Settings) -> None:
    with pytest.raises(StoreError, match="no database"):
        run(settings, "status")
    assert not settings.database.path.exists()  # a status command creates nothing


@pytest.mark.parametrize("ami", [True, False])
async def test_running_daemon_state_and_counters(
    settings: Settings, capsys: pytest.CaptureFixture[str], ami: bool
) -> None:
    seed(settings, datetime.now(UTC))
    metrics = Metrics()
    metrics.ami_reconnects.inc(2)
    metrics.webhook_settled("delivered", attempted=True)
    async with Writer(settings.database.path) as writer:
        app = create_app(
            settings,
            writer,
            clock=lambda: datetime.now(UTC),
            new_id=lambda: "x",
            wake=lambda: None,
            health=lambda: {"ami": ami},
            metrics=metrics,
        )
        runner = await serve_api(app, settings.api.listen)
        try:
            # The command is blocking (a terminal's): run it beside the loop serving it.
            code = await asyncio.wait_for(asyncio.to_thread(run, settings, "status"), 20)
        finally:
            await runner.cleanup()
    out, err = capsys.readouterr()
    daemon_line, counters = out.splitlines()[1:3]
    if ami:
        assert code == 0 and err == ""
        assert daemon_line.startswith("daemon     up at 127.0.0.1:")
        assert daemon_line.endswith("AMI connected, database writable")
    else:
        assert code == 1
        assert "UNHEALTHY" in daemon_line and "AMI NOT connected" in daemon_line
        assert err.startswith("autoretry: daemon at ") and "AMI NOT connected" in err
    assert "2 AMI reconnects" in counters and "webhooks 1 delivered, 0 failed" in counters


def test_calls_show_lists_webhook_events_and_durations(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(settings, NOW)
    assert run(settings, "calls", "show", "retry") == 0
    out = capsys.readouterr().out
    assert "attempt 1  2026-01-26T10:30:00Z .. 2026-01-26T10:30:03Z  busy  (3.0 s)" in out
    assert "  webhooks   3 events: 3 pending" in out  # queued, initiated, scheduled
    assert "    evt_9_retry  scheduled  pending, 0 tries" in out
    with Store.open(settings.database.path) as store:
        dead = store.outbox_list(state="dead")[0]
    assert run(settings, "calls", "show", dead.call_id) == 0
    out = capsys.readouterr().out
    assert f"    {dead.id}  queued  dead, 1 tries: HTTP 410" in out
