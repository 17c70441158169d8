"""What every API handler shares: the context the daemon hands in, the bearer-token check,
and reading a request's JSON body."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from .api_errors import ApiError, Handler
from .config import Settings
from .writer import Writer

PUBLIC_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True, slots=True)
class ApiContext:
    settings: Settings
    writer: Writer
    clock: Callable[[], datetime]
    new_id: Callable[[], str]
    wake: Callable[[], None]
    health: Callable[[], dict[str, bool]]
    token_digest: bytes  # sha256 of the token: the token itself is not kept here


CONTEXT = web.AppKey("autoretry_api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, None, **{"WWW-Authenticate": "Bearer"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Authorization: Bearer <token>`` on everything but the health check.

    Digests of equal length are compared in constant time, so neither the token's
    content nor its length leaks through timing. The header is never logged.
    """
    if request.path not in PUBLIC_PATHS:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _unauthorized("missing 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(digest(given.strip()), context(request).token_digest):
            raise _unauthorized("wrong token")
    return await handler(request)


async def read_json(request: web.Request) -> Any:
    """The body as JSON; 413 over the size limit (aiohttp's ``client_max_size``), 400 if
    it is not JSON at all."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "bad_request", "the body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_request", "the body is not valid JSON (UTF-8)") from None
