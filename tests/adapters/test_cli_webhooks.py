"""``autoretry webhooks list|replay`` on a real SQLite file.

The commands are registered on a parser here the way ``cli.build_parser`` registers them,
and failures are turned into exit codes as ``cli.main`` does (AutoretryError -> 1,
ValidationError -> 2), so the one-line error contract is checked too.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ami_listener import cli_webhooks
from ami_listener.config import Settings
from ami_listener.errors import AutoretryError, ValidationError
from ami_listener.store import Store

from .test_webhooks import place
from .webhook_receiver import T0


def settings_for(db: Path) -> Settings:
    raw = {
        "ami": {"username": "autoretry", "secret": "x"},
        "database": {"path": str(db)},
        "api": {"token": "test-token"},
        "dialer": {"channel": "PJSIP/{number}@carrier"},
        "targets": {"sales-ivr": {"context": "autoretry-connect", "extension": "s"}},
    }
    return Settings.from_mapping(raw, {})


def run(db: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="autoretry")
    commands = parser.add_subparsers(dest="command", required=True)
    cli_webhooks.add_parser(commands, lambda args: settings_for(db))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ValidationError as exc:
        print(f"autoretry: {exc}", file=sys.stderr)
        code = 2
    except AutoretryError as exc:
        print(f"autoretry: {exc}", file=sys.stderr)
        code = 1
    out, err = capsys.readouterr()
    if code:
        assert err.count("\n") == 1 and err.startswith("autoretry: "), err
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """c1: one event, dead; c2: two events, the first delivered, the second pending."""
    path = tmp_path / "autoretry.db"
    place(path, "c1", "https://hooks.example.com/a")
    place(path, "c2", None, events=2)
    with Store.open(path) as store:
        [e1, e2, e3] = store.outbox_list()
        store.outbox_dead(e1.id, "HTTP 500\nInternal")
        store.outbox_delivered(e2.id, T0)
        store.outbox_retry_later(e3.id, T0 + timedelta(seconds=30), "timed out after 10 s")
    return path


def test_list_prints_one_line_per_event(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(db, capsys, "webhooks", "list", "--state", "all")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == [
        "ID",
        "CALL",
        "STATUS",
        "STATE",
        "ATTEMPTS",
        "NEXT",
        "TRY",
        "LAST",
        "ERROR",
    ]
    assert [line.split()[:5] for line in lines] == [
        ["evt_1_c1", "c1", "queued", "dead", "1"],
        ["evt_2_c2", "c2", "queued", "delivered", "1"],
        ["evt_3_c2", "c2", "initiated", "pending", "1"],
    ]
    assert lines[0].endswith("HTTP 500 Internal")  # a multi-line error stays on its line
    assert "2026-01-26T10:00:30Z" in lines[2] and lines[2].endswith("timed out after 10 s")


def test_list_shows_undelivered_events_by_default(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(db, capsys, "webhooks", "list")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["evt_1_c1", "evt_3_c2"]


def test_list_filters_and_limits(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(db, capsys, "webhooks", "list", "--state", "dead")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["evt_1_c1"]
    _, out, _ = run(db, capsys, "webhooks", "list", "--limit", "1")
    assert len(out.splitlines()) == 2
    with Store.open(db) as store:
        store.outbox_replay(None)
    assert run(db, capsys, "webhooks", "list", "--state", "dead")[1] == "no webhook events (dead)\n"


def test_replay_named_event(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(db, capsys, "webhooks", "replay", "evt_1_c1", "evt_1_c1")
    assert (code, out) == (0, "replayed 1 event\n")
    with Store.open(db) as store:
        event = store.outbox_get("evt_1_c1")
    assert (event.state, event.attempts) == ("pending", 0)


def test_replay_all_dead(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, capsys, "webhooks", "replay", "--all-dead")[:2] == (0, "replayed 1 event\n")
    assert run(db, capsys, "webhooks", "replay", "--all-dead")[:2] == (0, "replayed 0 events\n")


@pytest.mark.parametrize(
    ("argv", "code", "reason"),
    [
        (["evt_1_c1", "nonsense"], 1, "not an event id: nonsense"),
        (["evt_1_c1", "evt_99_c1"], 1, "no webhook event evt_99_c1"),
        (["evt_1_c1", "evt_1_c2"], 1, "no webhook event evt_1_c2"),  # seq of another call
        (["evt_1_c1", "evt_2_c2"], 1, "event evt_2_c2 is delivered; only dead events"),
        ([], 2, "name the events to replay, or use --all-dead"),
        (["evt_1_c1", "--all-dead"], 2, "not both"),
    ],
)
def test_replay_refuses_bad_ids_and_changes_nothing(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, reason: str
) -> None:
    got, out, err = run(db, capsys, "webhooks", "replay", *argv)
    assert (got, out) == (code, "")
    assert reason in err
    with Store.open(db) as store:
        assert store.outbox_get("evt_1_c1").state == "dead"  # all or nothing


def test_missing_database_is_an_error_not_a_new_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "none.db"
    code, _, err = run(db, capsys, "webhooks", "list")
    assert code == 1 and "no database at" in err
    assert not db.exists()
