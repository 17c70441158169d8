"""The HTTP API (aiohttp.web), Bolna's shapes: Make Call, batches, executions, cancel.

``create_app`` builds the application the daemon serves with ``serve_api`` inside its
TaskGroup; it shares the daemon's ``Writer`` (the one database thread), clock and id
source. Every route but ``/healthz`` needs ``Authorization: Bearer <token>``; every error
is JSON ``{"error", "message", "details"}`` (``api_errors``); request bodies are bounded by
``[api].max_body_bytes``. Batches are in ``api_batches``, the description in
``api_openapi``. A handler that commits new work calls ``wake()`` so the scheduler (and
the webhook sender, for the new outbox events) look at the database now. ``GET /metrics``
(Prometheus text, ``metrics.py``) needs the token too: a scrape config sends it with
``authorization: {credentials_file: ...}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from importlib import metadata

from aiohttp import web

from . import api_batches, store_api, store_status
from .api_context import CONTEXT, ApiContext, auth_middleware, context, digest, read_json
from .api_errors import errors_middleware
from .api_openapi import build_spec
from .config import Settings, split_listen
from .core.execution import execution_object
from .core.lifecycle import Cancel, advance
from .core.models import CallStatus
from .errors import ConfigError
from .metrics import CONTENT_TYPE, Metrics
from .placing import place_call
from .writer import Writer

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0  # a writer busy this long counts as "database not writable"
SPEC = web.AppKey("autoretry_openapi", dict)
METRICS = web.AppKey("autoretry_metrics", Metrics)


def _version() -> str:
    try:
        return metadata.version("asterisk-autoretry")
    except metadata.PackageNotFoundError:
        return "unknown"


async def wake_up(request: web.Request) -> web.Response:
    """Another process (``autoretry call``, ``calls cancel``) changed the database: look again.

    The daemon learns of its own writes directly; this is how it learns of others' without
    polling the database."""
    request.app[CONTEXT].wake()
    return web.Response(status=204)


def create_app(
    settings: Settings,
    writer: Writer,
    *,
    clock: Callable[[], datetime],
    new_id: Callable[[], str],
    wake: Callable[[], None],
    health: Callable[[], dict[str, bool]],
    metrics: Metrics | None = None,
) -> web.Application:
    """The API application. ``wake()`` is called after new work is committed; ``health()``
    gives the daemon's checks (e.g. ``{"ami": True}``), to which ``/healthz`` adds one.
    With ``metrics``, ``GET /metrics`` serves them (token required, as everything but
    ``/healthz``: Prometheus sends it with ``authorization: credentials_file``)."""
    token = settings.api.token
    if token is None:  # Settings refuses this already; an API without a token is never served
        raise ConfigError("[api].token: required")
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=settings.api.max_body_bytes,
    )
    app[CONTEXT] = ApiContext(
        settings=settings,
        writer=writer,
        clock=clock,
        new_id=new_id,
        wake=wake,
        health=health,
        token_digest=digest(token.get_secret_value()),
    )
    router = app.router
    router.add_get("/healthz", healthz)
    router.add_post("/call", make_call)
    router.add_get("/executions/{execution_id}", get_execution)
    router.add_post("/executions/{execution_id}/cancel", cancel_execution)
    api_batches.add_routes(router)
    router.add_get("/openapi.json", openapi)
    router.add_post("/wake", wake_up)
    if metrics is not None:
        app[METRICS] = metrics
        router.add_get("/metrics", metrics_text)
    app[SPEC] = build_spec(_version(), metrics=metrics is not None)
    return app


async def serve_api(app: web.Application, listen: str) -> web.AppRunner:
    """Serve ``app`` on ``listen`` (``host:port``; ``[api].listen``, default 127.0.0.1).

    The caller owns the runner: ``await runner.cleanup()`` stops it. ``runner.addresses``
    tells the bound port when ``listen`` asks for port 0.
    """
    host, port = split_listen(listen)
    # handler_cancellation stays off (aiohttp's default): a client that hangs up must not
    # cancel a handler between its commit and its answer.
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("API listening on %s", listen)
    return runner


async def healthz(request: web.Request) -> web.Response:
    ctx = context(request)
    checks = dict(ctx.health())
    try:
        checks["database"] = await asyncio.wait_for(
            ctx.writer(store_api.database_writable), HEALTH_TIMEOUT_S
        )
    except TimeoutError:
        checks["database"] = False
    ok = all(checks.values())
    return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)


async def make_call(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_json(request)
    key = request.headers.get("Idempotency-Key")
    now = ctx.clock()
    call, created = await ctx.writer(
        lambda s: place_call(s, ctx.settings, body, now, ctx.new_id, key)
    )
    headers = {}
    if created:
        ctx.wake()
    else:
        headers["Idempotent-Replayed"] = "true"
    answer = {"message": "done", "status": "queued", "execution_id": call.id}
    return web.json_response(answer, headers=headers)


async def get_execution(request: web.Request) -> web.Response:
    ctx, call_id = context(request), request.match_info["execution_id"]
    call = await ctx.writer(lambda s: s.get_call(call_id))
    return web.json_response(execution_object(call))


async def cancel_execution(request: web.Request) -> web.Response:
    """A pending call ends ``canceled`` now; a live one finishes its attempt, then stops
    (never hung up on mid-call). A call already over answers 409."""
    ctx, call_id = context(request), request.match_info["execution_id"]
    event = Cancel(at=ctx.clock(), status=CallStatus.CANCELED, reason="canceled through the API")
    call, _ = await ctx.writer(lambda s: s.transition(call_id, lambda c: advance(c, event)))
    ctx.wake()
    answer = {
        "message": "success",
        "execution_id": call.id,
        "status": call.status.value,
        "cancel_requested": call.cancel_requested is not None,
    }
    return web.json_response(answer)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[SPEC])


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text format. The database gauges are read now; a writer busy past
    ``HEALTH_TIMEOUT_S`` leaves their last values (a scrape must not hang on a commit)."""
    ctx, metrics = context(request), request.app[METRICS]
    try:
        metrics.refresh(await asyncio.wait_for(ctx.writer(store_status.gauges), HEALTH_TIMEOUT_S))
    except TimeoutError:
        log.warning("metrics: database busy, served the last gauge values")
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})
