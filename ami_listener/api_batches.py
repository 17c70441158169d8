"""Bolna's batch endpoints: create from a CSV, schedule, look at, list, stop.

``POST /batches`` is ``multipart/form-data`` as Bolna documents it; its size is bounded by
``client_max_size`` (``[api].max_body_bytes``: aiohttp answers 413 while reading) and its
rows by ``[api].max_csv_rows``. Building the calls is CPU work (a number parse and a model
validation per row), so it runs in a worker thread, not on the event loop that also reads
AMI events.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pydantic
from aiohttp import web
from multidict import MultiDictProxy

from . import store_api
from .api_context import context, read_json
from .api_errors import ApiError, invalid
from .batch_csv import TooManyRows, read_contacts
from .core.execution import execution_object, iso
from .core.models import FINAL_STATUSES, CallStatus, RetryConfig, normalize_number
from .placing import RequestInvalid, check_target, check_webhook, field_errors, validation_context

FORM_FIELDS = frozenset({"agent_id", "file", "from_phone_numbers", "retry_config", "webhook_url"})
MAX_PAGE = 1000
CHUNK = 1000  # calls per transaction when a batch is created or stopped (~0.1 s each)

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/batches", create_batch)
    router.add_get("/batches/{batch_id}", get_batch)
    router.add_post("/batches/{batch_id}/schedule", schedule_batch)
    router.add_get("/batches/{batch_id}/executions", batch_executions)
    router.add_post("/batches/{batch_id}/stop", stop_batch)


def _text(form: Form, name: str) -> str | None:
    """A text field's value, None when absent or empty (HTML forms send empty fields)."""
    values = form.getall(name, [])
    if len(values) > 1:
        raise invalid(name, "given more than once")
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str):
        raise invalid(name, "must be a text field, not a file")
    return value.strip() or None


def _retry_config(
    text: str | None, limits: dict[str, Any], default: RetryConfig | None
) -> RetryConfig:
    if text is None:  # none sent: the operator's [retry.default], else Bolna's default
        return default or RetryConfig()
    try:
        return RetryConfig.model_validate_json(text, context=limits)
    except pydantic.ValidationError as exc:
        raise RequestInvalid(field_errors(exc, "retry_config")) from None


def _from_numbers(form: Form, limits: dict[str, Any]) -> list[str]:
    numbers = []
    for i, value in enumerate(form.getall("from_phone_numbers", [])):
        field = f"from_phone_numbers[{i}]"
        if not isinstance(value, str):
            raise invalid(field, "must be a text field, not a file")
        try:
            numbers.append(normalize_number(value, allow_pattern=limits["number_pattern"]))
        except ValueError as exc:
            raise invalid(field, str(exc)) from None
    return numbers


async def create_batch(request: web.Request) -> web.Response:
    ctx = context(request)
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (Bolna's form)")
    form: Form = await request.post()
    for name in form:
        if name not in FORM_FIELDS:
            raise invalid(name, "unknown field")
    settings = ctx.settings
    limits = validation_context(settings)
    agent_id = _text(form, "agent_id")
    if agent_id is None:
        raise invalid("agent_id", "required")
    problem = check_target(agent_id, settings)
    if problem is not None:
        raise invalid(problem["field"], problem["message"])
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise invalid("file", "required: a CSV file part")
    retry_config = _retry_config(_text(form, "retry_config"), limits, settings.retry.default)
    from_numbers = _from_numbers(form, limits)
    webhook_url = _text(form, "webhook_url")
    problem = check_webhook(webhook_url, settings, "webhook_url")
    if problem is not None:
        raise invalid(problem["field"], problem["message"])
    data = upload.file.read()  # already on disk or in memory, bounded by client_max_size
    batch_id, now = ctx.new_id(), ctx.clock()
    try:
        contacts = await asyncio.to_thread(
            read_contacts,
            data,
            settings=settings,
            agent_id=agent_id,
            from_numbers=from_numbers,
            retry_config=retry_config,
            batch_id=batch_id,
            now=now,
            new_id=ctx.new_id,
            max_rows=settings.api.max_csv_rows,
        )
    except TooManyRows as exc:
        raise ApiError(413, "too_many_rows", str(exc)) from None
    if not contacts.calls:
        raise ApiError(422, "no_valid_rows", "no row of the file is a valid call", contacts.errors)
    calls = contacts.calls
    first = calls[:CHUNK]
    await ctx.writer(
        lambda s: s.create_batch(batch_id, agent_id, webhook_url, retry_config, now, first)
    )
    for start in range(CHUNK, len(calls), CHUNK):  # other writer work runs in between
        chunk = calls[start : start + CHUNK]
        await ctx.writer(lambda s: store_api.add_batch_calls(s, batch_id, chunk))  # noqa: B023
    ctx.wake()  # their "queued" events are in the outbox
    body = {
        "batch_id": batch_id,
        "state": store_api.BATCH_CREATED,
        "accepted": len(calls),
        "rejected": contacts.rejected,
        "errors": contacts.errors,
    }
    return web.json_response(body, status=201)


def _state(stored: str, counts: dict[str, int]) -> str:
    # Bolna reports a scheduled batch whose calls are all over as "executed".
    done = counts and all(CallStatus(s) in FINAL_STATUSES for s in counts)
    return "executed" if stored == store_api.BATCH_SCHEDULED and done else stored


async def get_batch(request: web.Request) -> web.Response:
    ctx, batch_id = context(request), request.match_info["batch_id"]
    batch, counts = await ctx.writer(
        lambda s: (s.get_batch(batch_id), s.batch_status_counts(batch_id))
    )
    state = _state(batch["state"], counts)
    body = {
        "batch_id": batch_id,
        "agent_id": batch["target"],
        "state": state,
        "status": state,  # Bolna's GET says "status" where its other answers say "state"
        "created_at": iso(batch["created_at"]),
        "scheduled_at": iso(batch["scheduled_at"]),
        "webhook_url": batch["webhook_url"],
        "total": sum(counts.values()),
        "execution_status": counts,
    }
    return web.json_response(body)


def _int_param(request: web.Request, name: str, default: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdecimal() or not 0 <= int(text) <= high:
        raise invalid(name, f"must be a whole number from 0 to {high}")
    return int(text)


async def batch_executions(request: web.Request) -> web.Response:
    ctx, batch_id = context(request), request.match_info["batch_id"]
    limit = _int_param(request, "limit", 100, MAX_PAGE)
    offset = _int_param(request, "offset", 0, 10**9)
    _, calls = await ctx.writer(
        lambda s: (
            s.get_batch(batch_id),
            s.list_calls(batch_id=batch_id, limit=limit, offset=offset),
        )
    )
    return web.json_response([execution_object(c) for c in calls])


async def _scheduled_at(request: web.Request) -> datetime:
    if request.content_type == "application/json":
        body = await read_json(request)
        text = body.get("scheduled_at") if isinstance(body, dict) else None
    else:
        form: Form = await request.post()
        value = form.get("scheduled_at")
        text = value if isinstance(value, str) else None
    if not isinstance(text, str) or not text.strip():
        raise invalid("scheduled_at", "required (ISO 8601 with a UTC offset)")
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise invalid("scheduled_at", "not an ISO 8601 time") from None
    if at.utcoffset() is None:
        raise invalid("scheduled_at", "must carry a UTC offset (e.g. ...Z or +02:00)")
    return at


async def schedule_batch(request: web.Request) -> web.Response:
    ctx, batch_id = context(request), request.match_info["batch_id"]
    at = await _scheduled_at(request)
    now = ctx.clock()
    count = await ctx.writer(lambda s: store_api.schedule_batch(s, batch_id, at, now))
    ctx.wake()
    body = {
        "message": "success",
        "state": store_api.BATCH_SCHEDULED,
        "scheduled_at": iso(max(at, now)),
        "calls": count,
    }
    return web.json_response(body)


async def stop_batch(request: web.Request) -> web.Response:
    ctx, batch_id = context(request), request.match_info["batch_id"]
    now = ctx.clock()
    count = done = await ctx.writer(lambda s: store_api.stop_batch(s, batch_id, now, CHUNK))
    while done == CHUNK:  # a large batch in several transactions (see store_api)
        done = await ctx.writer(lambda s: store_api.stop_batch(s, batch_id, now, CHUNK))
        count += done
    ctx.wake()
    return web.json_response({"message": "success", "state": "stopped", "calls": count})
