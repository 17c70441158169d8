"""``autoretry call``: the same checks and the same code path as ``POST /call``, written to
the configured SQLite file. The command is registered on a parser here as ``cli.py``
registers it (``cli_call.add_parser(commands, load_settings)``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ami_listener import cli_call
from ami_listener.config import Settings
from ami_listener.core.models import CallStatus
from ami_listener.errors import StoreError
from ami_listener.placing import RequestInvalid, place_call
from ami_listener.store import Store

from .api_harness import NUMBER, T0, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    loaded = load_settings(tmp_path)
    Store.open(loaded.database.path).close()  # `autoretry migrate`
    return loaded


def run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="autoretry")
    commands = parser.add_subparsers(dest="command", required=True)
    cli_call.add_parser(commands, lambda args: settings)
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def calls(settings: Settings) -> list[tuple[str, CallStatus, str, dict[str, str]]]:
    with Store.open(settings.database.path) as store:
        return [(c.id, c.status, c.to_number, c.variables) for c in store.list_calls()]


def test_call_queues_a_call_and_prints_its_id(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    retry = '{"enabled": true, "max_retries": 2, "retry_intervals_minutes": [10]}'
    code = run(
        settings,
        "call",
        NUMBER,
        "--target",
        "playback",
        "--retry-config",
        retry,
        "--var",
        "customer=Ann",
        "--var",
        "note=a=b",
        "--at",
        "2030-01-01T09:00:00+01:00",
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    call_id = out[0]
    assert "daemon" in out[1] and "2030-01-01T08:00:00Z" in out[1]
    assert calls(settings) == [
        (call_id, CallStatus.QUEUED, NUMBER, {"customer": "Ann", "note": "a=b"})
    ]
    with Store.open(settings.database.path) as store:
        call = store.get_call(call_id)
        events = store.outbox_list()
    assert call.target == "playback"
    assert call.retry_config.enabled and call.retry_config.retry_intervals_minutes == (10,)
    assert [e.status for e in events] == ["queued"]  # its webhook event, as through the API


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["12345", "--target", "sales-ivr"], "recipient_phone_number"),
        ([NUMBER, "--target", "nowhere"], "agent_id"),
        ([NUMBER, "--target", "sales-ivr", "--retry-config", '{"max_retries": 7}'],
         "retry_config.max_retries"),
        ([NUMBER, "--target", "sales-ivr", "--retry-config", '{"retry_on": []}'],
         "retry_config.retry_on"),
        ([NUMBER, "--target", "sales-ivr", "--retry-config", "{oops"], "retry_config"),
        ([NUMBER, "--target", "sales-ivr", "--var", "x"], "user_data"),
        ([NUMBER, "--target", "sales-ivr", "--var", "x=a;b"], "user_data"),
        ([NUMBER, "--target", "sales-ivr", "--at", "2030-01-01T09:00"], "scheduled_at"),
        ([NUMBER, "--target", "sales-ivr", "--from", "0"], "from_phone_number"),
        ([NUMBER, "--target", "sales-ivr", "--webhook-url", "https://x.example/h"], "webhook_url"),
    ],
)  # fmt: skip
def test_refusals_name_the_field_and_store_nothing(
    settings: Settings, argv: list[str], field: str
) -> None:
    with pytest.raises(RequestInvalid) as info:
        run(settings, "call", *argv)
    assert field in [d["field"] for d in info.value.details]
    assert info.value.field == field
    assert "\n" not in str(info.value)  # cli.main prints it as one line
    assert calls(settings) == []


def test_idempotency_key_is_shared_with_the_api_path(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", NUMBER, "--target", "sales-ivr", "--idempotency-key", "crm-42"]
    assert run(settings, *argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert run(settings, *argv) == 0
    assert "already placed" in capsys.readouterr().out
    # The body POST /call would get for the same call finds the same execution.
    body = {"agent_id": "sales-ivr", "recipient_phone_number": NUMBER}
    with Store.open(settings.database.path) as store:
        call, created = place_call(store, settings, body, T0, lambda: "other", "crm-42")
    assert (call.id, created) == (first, False)
    assert len(calls(settings)) == 1


def test_no_database_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    with pytest.raises(StoreError, match="migrate"):
        run(settings, "call", NUMBER, "--target", "sales-ivr")
    assert not settings.database.path.exists()
