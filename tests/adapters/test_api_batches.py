"""Batches over real HTTP: CSV upload (bad rows reported, good rows kept), limits,
schedule, status counts, executions, stop; against a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData

from ami_listener import api_batches, store_api
from ami_listener.api_openapi import (
    BatchCreated,
    BatchInfo,
    BatchScheduled,
    BatchStopped,
    ErrorBody,
    Execution,
)
from ami_listener.core.lifecycle import Dispatch, advance
from ami_listener.core.models import Call, CallStatus
from ami_listener.errors import NotFound, StoreError
from ami_listener.store import Store

from .api_harness import AUTH, MAX_BODY, MAX_ROWS, NUMBER, NUMBER_2, T0, Api, csv_form, running_api

FAR = T0 + timedelta(days=3650)
GOOD_CSV = f"contact_number,name\n{NUMBER},Ann\n{NUMBER_2},Bob\n"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as running:
        yield running


def never(call: Call) -> Any:
    raise AssertionError(f"call {call.id} of an unscheduled batch was claimed")


async def create(api: Api, text: str = GOOD_CSV, **kw: Any) -> dict[str, Any]:
    status, answer = await api.post("/batches", data=csv_form(text, **kw))
    assert status == 201, answer
    BatchCreated.model_validate(answer)
    return dict(answer)


async def test_create_keeps_good_rows_and_reports_each_bad_one(api: Api) -> None:
    text = (
        "contact_number,name,plan\n"
        f"{NUMBER},Ann,gold\n"  # line 2: good
        "12345,Bob,silver\n"  # line 3: not a number
        f'{NUMBER_2},"Smith, Carl",bronze\n'  # line 4: a comma in a variable
        f"{NUMBER},Dee\n"  # line 5: a value short
        "\n"  # blank: skipped
        f'{NUMBER_2},Eve,"two\nlines"\n'  # lines 7-8: a line break in a variable
        f" {NUMBER_2} ,Fay,tin\n"  # line 9: good (spaces around the number)
    )
    answer = await create(api, text)
    assert answer["state"] == "created"
    assert (answer["accepted"], answer["rejected"]) == (2, 4)
    assert [(e["line"], e["field"]) for e in answer["errors"]] == [
        (3, "contact_number"),
        (4, "name"),
        (5, "file"),
        (8, "plan"),
    ]
    calls = await api.store(lambda s: s.list_calls(batch_id=answer["batch_id"]))
    assert sorted(c.variables["name"] for c in calls) == ["Ann", "Fay"]
    assert {c.status for c in calls} == {CallStatus.QUEUED}
    assert {c.scheduled_at for c in calls} == {None}
    # A created batch dials nobody: no call is due, whenever the scheduler looks.
    assert await api.store(lambda s: s.claim_due(FAR, 100, never)) == []
    assert await api.store(Store.next_due_at) is None


async def test_batch_lifecycle_schedule_status_executions_stop(api: Api) -> None:
    created = await create(
        api,
        f"contact_number,name\n{NUMBER},Ann\n{NUMBER_2},Bob\n{NUMBER},Cy\n",
        retry_config='{"enabled": true, "max_retries": 2}',
        from_numbers=("+14155550190", "+14155550191"),
        webhook_url="https://hooks.example.test/batch",
    )
    batch_id = created["batch_id"]
    status, info = await api.get(f"/batches/{batch_id}")
    assert status == 200
    BatchInfo.model_validate(info)
    assert (info["state"], info["status"], info["total"]) == ("created", "created", 3)
    assert info["execution_status"] == {"queued": 3}
    assert info["webhook_url"] == "https://hooks.example.test/batch"

    calls = await api.store(lambda s: s.list_calls(batch_id=batch_id))
    assert sorted(c.from_number or "" for c in calls) == [
        "+14155550190",
        "+14155550190",
        "+14155550191",
    ]  # used in turn
    assert all(c.retry_config.enabled and c.retry_config.max_retries == 2 for c in calls)
    # The batch's webhook URL is where its calls' events go.
    events = await api.store(lambda s: s.outbox_list())
    assert {e.webhook_url for e in events} == {"https://hooks.example.test/batch"}

    at = T0 + timedelta(hours=1)
    api.woken.clear()
    status, scheduled = await api.post(
        f"/batches/{batch_id}/schedule", data={"scheduled_at": "2026-01-26T12:00:00+01:00"}
    )
    assert status == 200, scheduled
    BatchScheduled.model_validate(scheduled)
    assert scheduled["calls"] == 3 and scheduled["state"] == "scheduled"
    assert api.woken == [T0]
    assert await api.store(Store.next_due_at) == at
    assert await api.store(lambda s: s.claim_due(T0, 100, never)) == []  # not before `at`

    status, again = await api.post(f"/batches/{batch_id}/schedule", data={"scheduled_at": "x"})
    assert status == 422  # the time is checked before the state
    status, again = await api.post(
        f"/batches/{batch_id}/schedule", json={"scheduled_at": "2026-01-27T00:00:00Z"}
    )
    assert status == 409 and again["error"] == "conflict"

    # One call goes on the wire; then the batch is stopped.
    claimed = await api.store(
        lambda s: s.claim_due(at, 1, lambda c: advance(c, Dispatch(at, "att-1")))
    )
    live_id = claimed[0][0].id
    status, executions = await api.get(f"/batches/{batch_id}/executions")
    assert status == 200 and len(executions) == 3
    for execution in executions:
        Execution.model_validate(execution)
        assert execution["batch_id"] == batch_id
    status, page = await api.get(f"/batches/{batch_id}/executions?limit=1&offset=1")
    assert status == 200 and len(page) == 1 and page[0]["id"] == executions[1]["id"]

    api.clock.now = at + timedelta(minutes=1)
    status, stopped = await api.post(f"/batches/{batch_id}/stop")
    assert status == 200
    BatchStopped.model_validate(stopped)
    assert (stopped["message"], stopped["state"], stopped["calls"]) == ("success", "stopped", 3)
    after = {c.id: c for c in await api.store(lambda s: s.list_calls(batch_id=batch_id))}
    assert after[live_id].status is CallStatus.INITIATED  # the call in progress finishes
    assert after[live_id].cancel_requested == "stopped"  # ...and is not retried
    assert {c.status for i, c in after.items() if i != live_id} == {CallStatus.STOPPED}
    stopped_events = await api.store(lambda s: s.outbox_list())
    assert sum(e.status == "stopped" for e in stopped_events) == 2

    status, info = await api.get(f"/batches/{batch_id}")
    assert info["state"] == "stopped"
    assert info["execution_status"] == {"initiated": 1, "stopped": 2}
    status, again = await api.post(f"/batches/{batch_id}/stop")
    assert status == 200 and again["calls"] == 0
    status, _ = await api.post(
        f"/batches/{batch_id}/schedule", data={"scheduled_at": "2026-01-27T00:00:00Z"}
    )
    assert status == 409


async def test_schedule_in_the_past_means_now_and_done_batch_reads_executed(api: Api) -> None:
    batch_id = (await create(api, f"contact_number\n{NUMBER}\n"))["batch_id"]
    status, answer = await api.post(
        f"/batches/{batch_id}/schedule", data={"scheduled_at": "2001-01-01T00:00:00Z"}
    )
    assert status == 200 and datetime.fromisoformat(answer["scheduled_at"]) == T0
    assert await api.store(Store.next_due_at) == T0
    # Stopping a stopped call's batch aside, all-final calls make the batch "executed".
    call = (await api.store(lambda s: s.list_calls(batch_id=batch_id)))[0]
    status, _ = await api.post(f"/executions/{call.id}/cancel")
    assert status == 200
    _, info = await api.get(f"/batches/{batch_id}")
    assert info["state"] == "executed" and info["execution_status"] == {"canceled": 1}


FORM_ERRORS = [
    ({"agent_id": "no-such-target"}, "agent_id"),
    ({"agent_id": None}, "agent_id"),
    ({"retry_config": "{not json"}, "retry_config"),
    ({"retry_config": '{"max_retries": 9}'}, "retry_config.max_retries"),
    ({"retry_config": '{"retry_on_statuses": ["voicemail"]}'}, "retry_config.retry_on_statuses.0"),
    ({"retry_config": '{"retry_intervals_minutes": [-1]}'}, "retry_config.retry_intervals_minutes"),
    ({"retry_config": '{"enabled": true, "colour": 1}'}, "retry_config.colour"),
    ({"from_numbers": ("+14155550190", "555")}, "from_phone_numbers[1]"),
    ({"webhook_url": "https://evil.example.com/x"}, "webhook_url"),
    ({"extra": {"priority": "high"}}, "priority"),
]


@pytest.mark.parametrize(("kw", "field"), FORM_ERRORS)
async def test_form_errors_are_422_naming_the_field(
    api: Api, kw: dict[str, Any], field: str
) -> None:
    status, answer = await api.post("/batches", data=csv_form(GOOD_CSV, **kw))
    assert status == 422, answer
    assert field in [d.field for d in ErrorBody.model_validate(answer).details or []]
    assert await api.store(lambda s: s.list_calls()) == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("name,phone\nAnn,+14155550100\n", "contact_number"),
        ("", "empty"),
        ("contact_number\n", "no rows"),
        ("contact_number,bad name\n+14155550100,x\n", "bad name"),
        ("contact_number,name,name\n+14155550100,a,b\n", "twice"),
        ("contact_number,autoretry_call\n+14155550100,a\n", "reserved"),
        (b"contact_number,name\n+14155550100,\xff\xfe\n", "UTF-8"),
    ],
)
async def test_file_level_errors_refuse_the_upload(api: Api, text: str | bytes, why: str) -> None:
    status, answer = await api.post("/batches", data=csv_form(text))
    assert status == 422, answer
    assert [d["field"] for d in answer["details"]] == ["file"]
    assert why in answer["message"]


async def test_all_rows_bad_is_422_with_each_row(api: Api) -> None:
    status, answer = await api.post("/batches", data=csv_form("contact_number\n1\n2\n"))
    assert status == 422 and answer["error"] == "no_valid_rows"
    assert [(d["line"], d["field"]) for d in answer["details"]] == [
        (2, "contact_number"),
        (3, "contact_number"),
    ]


async def test_missing_file_and_wrong_media_type(api: Api) -> None:
    status, answer = await api.post("/batches", data={"agent_id": "sales-ivr", "x": "y"})
    assert status == 415  # a urlencoded form is not Bolna's multipart
    status, answer = await api.post("/batches", json={"agent_id": "sales-ivr"})
    assert status == 415 and answer["error"] == "unsupported_media_type"
    config_as_file = csv_form(GOOD_CSV)
    config_as_file.add_field("retry_config", '{"enabled": true}', filename="r.json")
    status, answer = await api.post("/batches", data=config_as_file)
    assert status == 422 and answer["details"][0]["field"] == "retry_config"  # a file
    plain = FormData(default_to_multipart=True)
    plain.add_field("agent_id", "sales-ivr")
    plain.add_field("file", GOOD_CSV)  # text, not a file part
    status, answer = await api.post("/batches", data=plain)
    assert status == 422 and answer["details"][0]["field"] == "file"


async def test_too_many_rows_is_413_and_stores_nothing(api: Api) -> None:
    rows = "".join(f"+1415555{i:04d}\n" for i in range(MAX_ROWS + 1))
    status, answer = await api.post("/batches", data=csv_form("contact_number\n" + rows))
    assert status == 413 and answer["error"] == "too_many_rows"
    assert str(MAX_ROWS) in answer["message"]
    ok_rows = "".join(f"+1415555{i:04d}\n" for i in range(MAX_ROWS))
    assert (await create(api, "contact_number\n" + ok_rows))["accepted"] == MAX_ROWS


async def test_too_many_bytes_is_413_and_stores_nothing(api: Api) -> None:
    text = f"contact_number,note\n{NUMBER},{'x' * MAX_BODY}\n"
    status, answer = await api.post("/batches", data=csv_form(text))
    assert status == 413 and answer["error"] == "body_too_large"
    assert await api.store(lambda s: s.list_calls()) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/batches/nope"),
        ("GET", "/batches/nope/executions"),
        ("POST", "/batches/nope/stop"),
    ],
)
async def test_unknown_batch_is_404(api: Api, method: str, path: str) -> None:
    resp = await api.client.request(method, path, headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_schedule_unknown_batch_is_404_and_bad_times_are_422(api: Api) -> None:
    good = {"scheduled_at": "2026-01-27T00:00:00Z"}
    status, _ = await api.post("/batches/nope/schedule", data=good)
    assert status == 404
    batch_id = (await create(api))["batch_id"]
    for body, field in [
        ({}, "scheduled_at"),
        ({"scheduled_at": "2026-01-27T00:00:00"}, "scheduled_at"),  # no offset
        ({"scheduled_at": "soon"}, "scheduled_at"),
    ]:
        status, answer = await api.post(f"/batches/{batch_id}/schedule", data=body)
        assert status == 422 and answer["details"][0]["field"] == field
    status, answer = await api.get(f"/batches/{batch_id}/executions?limit=lots")
    assert status == 422 and answer["details"][0]["field"] == "limit"


async def test_large_batches_go_in_and_stop_in_chunks(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks keep the writer thread free between transactions; the result is the same.
    monkeypatch.setattr(api_batches, "CHUNK", 2)
    rows = "".join(f"+1415555{i:04d},r{i}\n" for i in range(5))
    created = await create(api, "contact_number,name\n" + rows)
    batch_id = created["batch_id"]
    stored = await api.store(lambda s: s.list_calls(batch_id=batch_id))
    assert sorted(c.variables["name"] for c in stored) == [f"r{i}" for i in range(5)]
    events = await api.store(lambda s: s.outbox_list())
    assert [e.status for e in events] == ["queued"] * 5
    status, stopped = await api.post(f"/batches/{batch_id}/stop")
    assert status == 200 and stopped["calls"] == 5
    _, info = await api.get(f"/batches/{batch_id}")
    assert info["execution_status"] == {"stopped": 5}


async def test_add_batch_calls_refuses_another_batchs_calls(api: Api) -> None:
    batch_id = (await create(api))["batch_id"]
    other = (await create(api))["batch_id"]
    foreign = await api.store(lambda s: s.list_calls(batch_id=other))
    with pytest.raises(StoreError, match="belongs to batch"):
        await api.store(lambda s: store_api.add_batch_calls(s, batch_id, [(foreign[0], ())]))
    with pytest.raises(NotFound):
        await api.store(lambda s: store_api.add_batch_calls(s, "nope", []))
