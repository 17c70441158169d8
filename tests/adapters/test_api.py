"""The HTTP API: Make Call, executions, cancel, auth, limits, health, OpenAPI.

Real HTTP (aiohttp's TestServer on 127.0.0.1) against a real SQLite file through the real
``Writer``; answers are validated against the OpenAPI answer models (extra keys forbidden).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ami_listener.api import create_app, serve_api
from ami_listener.api_openapi import CallQueued, CancelAnswer, ErrorBody, Execution, Health
from ami_listener.config_sections import ApiSettings
from ami_listener.core.lifecycle import Dispatch, advance
from ami_listener.core.models import CallStatus
from ami_listener.writer import Writer

from .api_harness import (
    AUTH,
    MAX_BODY,
    NUMBER,
    NUMBER_2,
    T0,
    TOKEN,
    Api,
    load_settings,
    running_api,
)

GOOD = {"agent_id": "sales-ivr", "recipient_phone_number": NUMBER}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as running:
        yield running


def error_fields(body: Any) -> list[str]:
    ErrorBody.model_validate(body)
    return [d["field"] for d in body["details"] or []]


async def test_make_call_queues_one_call_and_answers_like_bolna(api: Api) -> None:
    body = {
        **GOOD,
        "from_phone_number": "+14155550199",
        "user_data": {"customer": "Ann", "order": 42, "vip": True},
        "retry_config": {"enabled": True, "max_retries": 2, "retry_intervals_minutes": [5]},
    }
    status, answer = await api.post_call(body)
    assert status == 200, answer
    CallQueued.model_validate(answer)
    assert answer == {"message": "done", "status": "queued", "execution_id": "id0001"}
    assert api.woken == [T0]  # the scheduler is told at once

    call = await api.store(lambda s: s.get_call("id0001"))
    assert (call.status, call.target, call.to_number) == (CallStatus.QUEUED, "sales-ivr", NUMBER)
    assert call.variables == {"customer": "Ann", "order": "42", "vip": "true"}
    assert call.retry_config.enabled and call.retry_config.max_retries == 2
    assert call.scheduled_at == T0

    status, execution = await api.get("/executions/id0001")
    assert status == 200
    Execution.model_validate(execution)
    assert execution["agent_id"] == "sales-ivr"
    assert execution["status"] == "queued"
    assert execution["telephony_data"]["to_number"] == NUMBER
    assert execution["telephony_data"]["from_number"] == "+14155550199"
    assert execution["context_details"]["recipient_data"]["customer"] == "Ann"
    assert execution["retry_config"]["retry_intervals_minutes"] == [5]
    assert execution["retry_history"] == []


@pytest.mark.parametrize(
    ("scheduled_at", "due"),
    [
        ("2026-01-26T14:30:00+02:00", datetime(2026, 1, 26, 12, 30, tzinfo=UTC)),
        ("2026-01-26T12:30:00Z", datetime(2026, 1, 26, 12, 30, tzinfo=UTC)),
        ("2020-01-01T00:00:00Z", T0),  # a past time means now
    ],
)
async def test_scheduled_at_with_offset_is_kept_in_utc(
    api: Api, scheduled_at: str, due: datetime
) -> None:
    status, answer = await api.post_call({**GOOD, "scheduled_at": scheduled_at})
    assert status == 200, answer
    _, execution = await api.get(f"/executions/{answer['execution_id']}")
    assert datetime.fromisoformat(execution["scheduled_at"]) == due


BAD_BODIES = [
    ({"recipient_phone_number": "12345"}, "recipient_phone_number"),
    ({"recipient_phone_number": "+1415555010\r\nAction: Originate"}, "recipient_phone_number"),
    ({"recipient_phone_number": None}, "recipient_phone_number"),
    ({"from_phone_number": "not a number"}, "from_phone_number"),
    ({"agent_id": "no-such-target"}, "agent_id"),
    ({"agent_id": "bad id;"}, "agent_id"),
    ({"retry_config": {"enabled": "perhaps"}}, "retry_config.enabled"),
    ({"retry_config": {"max_retries": 4}}, "retry_config.max_retries"),
    ({"retry_config": {"max_retries": 0}}, "retry_config.max_retries"),
    ({"retry_config": {"retry_on_statuses": ["answered"]}}, "retry_config.retry_on_statuses.0"),
    ({"retry_config": {"retry_on_voicemail": "often"}}, "retry_config.retry_on_voicemail"),
    ({"retry_config": {"retry_intervals_minutes": []}}, "retry_config.retry_intervals_minutes"),
    ({"retry_config": {"retry_intervals_minutes": [-5]}}, "retry_config.retry_intervals_minutes"),
    ({"retry_config": {"colour": "blue"}}, "retry_config.colour"),
    ({"retry_config": "three times"}, "retry_config"),
    ({"user_data": {"bad name": "x"}}, "user_data"),
    ({"user_data": {"name": "a\r\nb"}}, "user_data"),
    ({"user_data": {"name": "a,b"}}, "user_data"),
    ({"user_data": {"AUTORETRY_CALL": "x"}}, "user_data"),
    ({"scheduled_at": "2026-01-26T10:00:00"}, "scheduled_at"),  # no offset
    ({"scheduled_at": "tomorrow"}, "scheduled_at"),
    ({"bypass_call_guardrails": "sometimes"}, "bypass_call_guardrails"),
    ({"webhook_url": "https://evil.example.com/hook"}, "webhook_url"),
    ({"webhook_url": "ftp://hooks.example.test/x"}, "webhook_url"),
    ({"balance": 10}, "balance"),
]


@pytest.mark.parametrize(("change", "field"), BAD_BODIES)
async def test_each_validation_error_is_422_naming_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    status, answer = await api.post_call({**GOOD, **change})
    assert status == 422, answer
    assert answer["error"] == "validation_error"
    assert field in error_fields(answer)
    assert field in answer["message"]
    assert await api.store(lambda s: s.list_calls()) == []
    assert api.woken == []


async def test_missing_required_fields_are_each_named(api: Api) -> None:
    status, answer = await api.post_call({})
    assert status == 422
    assert set(error_fields(answer)) == {"agent_id", "recipient_phone_number"}


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [(b"{not json", 400, "bad_request"), (b"", 400, "bad_request"), (b"[1, 2]", 422, None)],
)
async def test_a_body_that_is_not_a_json_object(
    api: Api, raw: bytes, status: int, error: str | None
) -> None:
    resp = await api.client.post("/call", data=raw, headers=AUTH)
    answer = await resp.json()
    assert resp.status == status, answer
    if error is None:
        assert error_fields(answer) == ["body"]
    else:
        assert answer["error"] == error


async def test_oversized_body_is_413_and_stores_nothing(api: Api) -> None:
    body = {**GOOD, "user_data": {"pad": "x" * 1000}, "padding": "y" * MAX_BODY}
    status, answer = await api.post_call(body)
    assert status == 413
    ErrorBody.model_validate(answer)
    assert answer["error"] == "body_too_large"
    assert str(MAX_BODY) in answer["message"]
    assert await api.store(lambda s: s.list_calls()) == []


async def test_idempotent_repeat_returns_the_first_answer_and_dials_once(api: Api) -> None:
    key = {"Idempotency-Key": "order-1234"}
    first = await api.client.post("/call", json=GOOD, headers={**AUTH, **key})
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    again = await api.client.post(
        "/call",
        # The same request spelt differently: other key order, a default made explicit.
        json={"recipient_phone_number": NUMBER, "agent_id": "sales-ivr", "user_data": {}},
        headers={**AUTH, **key},
    )
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    assert len(await api.store(lambda s: s.list_calls())) == 1
    assert len(api.woken) == 1

    # Another key is another call; the same key for another request is a conflict.
    status, other = await api.post_call(GOOD, headers={"Idempotency-Key": "order-5678"})
    assert status == 200 and other["execution_id"] != (await first.json())["execution_id"]
    status, conflict = await api.post_call({**GOOD, "user_data": {"x": "1"}}, headers=key)
    assert status == 409 and conflict["error"] == "idempotency_conflict"
    assert len(await api.store(lambda s: s.list_calls())) == 2


@pytest.mark.parametrize("key", ["", "k" * 256, "naïve", "tab\there"])
async def test_unusable_idempotency_key_is_422(api: Api, key: str) -> None:
    resp = await api.client.post(
        "/call", json=GOOD, headers={**AUTH, "Idempotency-Key": key.encode().decode("latin-1")}
    )
    answer = await resp.json()
    assert resp.status == 422, answer
    assert error_fields(answer) == ["Idempotency-Key"]


async def test_cancel_a_pending_call(api: Api) -> None:
    _, answer = await api.post_call(GOOD)
    call_id = answer["execution_id"]
    status, canceled = await api.post(f"/executions/{call_id}/cancel")
    assert status == 200, canceled
    CancelAnswer.model_validate(canceled)
    assert canceled["status"] == "canceled" and canceled["cancel_requested"] is False
    _, execution = await api.get(f"/executions/{call_id}")
    assert execution["status"] == "canceled" and execution["scheduled_at"] is None

    status, again = await api.post(f"/executions/{call_id}/cancel")  # already over
    assert status == 409 and again["error"] == "conflict"


async def test_cancel_a_live_call_lets_the_attempt_finish(api: Api) -> None:
    _, answer = await api.post_call(GOOD)
    call_id = answer["execution_id"]
    claimed = await api.store(
        lambda s: s.claim_due(T0, 1, lambda c: advance(c, Dispatch(T0, "att-1")))
    )
    assert [c.status for c, _ in claimed] == [CallStatus.INITIATED]
    status, canceled = await api.post(f"/executions/{call_id}/cancel")
    assert status == 200
    assert canceled["status"] == "initiated" and canceled["cancel_requested"] is True
    call = await api.store(lambda s: s.get_call(call_id))
    assert call.cancel_requested == "canceled" and call.live_attempt is not None


@pytest.mark.parametrize("path", ["/executions/nope", "/executions/nope/cancel"])
async def test_unknown_execution_is_404(api: Api, path: str) -> None:
    method = api.post if path.endswith("cancel") else api.get
    status, answer = await method(path)
    assert status == 404
    assert ErrorBody.model_validate(answer).error == "not_found"


async def test_unknown_route_and_wrong_method_are_json(api: Api) -> None:
    status, answer = await api.get("/nowhere")
    assert status == 404 and answer["error"] == "not_found"
    resp = await api.client.put("/call", headers=AUTH)
    assert resp.status == 405
    assert (await resp.json())["error"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


def routes(api: Api) -> list[tuple[str, str]]:
    out = []
    for route in api.client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method != "HEAD":
            out.append((route.method, path.replace("{", "").replace("}", "")))
    return out


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": TOKEN},
    ],
)
async def test_every_route_but_healthz_needs_the_token(api: Api, headers: dict[str, str]) -> None:
    checked = 0
    for method, path in routes(api):
        resp = await api.client.request(method, path, headers=headers, json={})
        answer = await resp.json()
        if path == "/healthz":
            assert resp.status == 200
            continue
        assert resp.status == 401, (method, path)
        assert answer["error"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert TOKEN not in json.dumps(answer)
        checked += 1
    assert checked == 10  # every route but /healthz, /wake included
    assert await api.store(lambda s: s.list_calls()) == []


async def test_healthz_needs_no_token_and_reports_each_check(api: Api) -> None:
    resp = await api.client.get("/healthz")
    assert resp.status == 200
    answer = await resp.json()
    Health.model_validate(answer)
    assert answer == {"ok": True, "ami": True, "database": True}

    api.checks["ami"] = False
    resp = await api.client.get("/healthz")
    assert resp.status == 503
    assert await resp.json() == {"ok": False, "ami": False, "database": True}


async def test_healthz_notices_a_database_that_refuses_writes(api: Api) -> None:
    # query_only makes SQLite refuse every write on this connection, as a read-only file would.
    await api.store(lambda s: s.db.conn.execute("PRAGMA query_only = ON"))
    resp = await api.client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["database"] is False


async def test_openapi_lists_every_route_and_resolves_every_ref(api: Api) -> None:
    status, spec = await api.get("/openapi.json")
    assert status == 200
    assert spec["openapi"].startswith("3.1")
    listed = {
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, operations in spec["paths"].items()
        for method in operations
    }
    assert listed == set(routes(api))
    schemas = spec["components"]["schemas"]
    assert {"CallRequest", "RetryConfig", "Execution", "ErrorBody"} <= set(schemas)
    assert set(schemas["RetryConfig"]["properties"]) >= {
        "enabled",
        "max_retries",
        "retry_on_statuses",
        "retry_on_voicemail",
        "retry_intervals_minutes",
    }
    refs = [
        part.split('"')[0] for part in json.dumps(spec).split('"$ref": "#/components/schemas/')[1:]
    ]
    assert refs and all(ref in schemas for ref in refs)
    assert spec["paths"]["/healthz"]["get"]["security"] == []


async def test_serve_api_listens_on_real_tcp(tmp_path: Path) -> None:
    assert ApiSettings().listen.startswith("127.0.0.1:")  # loopback unless configured
    settings = load_settings(tmp_path)
    async with Writer(settings.database.path) as writer:
        app = create_app(
            settings,
            writer,
            clock=lambda: T0 + timedelta(0),
            new_id=lambda: "x",
            wake=lambda: None,
            health=lambda: {"ami": True},
        )
        runner = await serve_api(app, "127.0.0.1:0")
        try:
            host, port = runner.addresses[0][:2]
            assert host == "127.0.0.1"
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
                async with session.get(f"http://127.0.0.1:{port}/openapi.json") as resp:
                    assert resp.status == 401
        finally:
            await runner.cleanup()


async def test_operator_default_retry_config_applies_when_the_caller_sends_none(
    tmp_path: Path,
) -> None:
    default = "[retry.default]\nenabled = true\nmax_retries = 2\nretry_intervals_minutes = [5]\n"
    async with running_api(tmp_path, default) as api:
        status, answer = await api.post_call(
            {"agent_id": "sales-ivr", "recipient_phone_number": NUMBER}
        )
        assert status == 200
        _, execution = await api.get(f"/executions/{answer['execution_id']}")
        assert execution["retry_config"]["enabled"] is True
        assert execution["retry_config"]["max_retries"] == 2
        # A caller's own retry_config still wins.
        body = {"agent_id": "sales-ivr", "recipient_phone_number": NUMBER_2, "retry_config": {}}
        _, answer = await api.post_call(body)
        _, execution = await api.get(f"/executions/{answer['execution_id']}")
        assert execution["retry_config"]["enabled"] is False
