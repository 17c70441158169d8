"""Every error the API answers, as JSON ``{"error": id, "message": ..., "details": ...}``.

Handlers raise ``ApiError`` (or let our own errors through: ``RequestInvalid`` is 422,
``NotFound`` 404, ``IllegalTransition``/``IdempotencyConflict`` 409); aiohttp's own HTTP
exceptions (unknown route, wrong method, body over ``client_max_size``) get the same
shape. Anything else is a bug: logged with its traceback, answered 500 without details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import IllegalTransition, NotFound, StoreError
from .placing import IdempotencyConflict, RequestInvalid

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_IDS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An answer other than success; becomes the JSON error body."""

    def __init__(
        self, status: int, error: str, message: str, details: Any = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers = headers


def invalid(field: str, message: str) -> ApiError:
    """422 naming one field."""
    return ApiError(
        422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}]
    )


def error_response(err: ApiError) -> web.Response:
    body = {"error": err.error, "message": err.message, "details": err.details}
    return web.json_response(body, status=err.status, headers=err.headers or None)


def _translate(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestInvalid):
        return ApiError(422, "validation_error", str(exc), exc.details)
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, IdempotencyConflict):
        return ApiError(409, "idempotency_conflict", str(exc))
    if isinstance(exc, IllegalTransition):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, StoreError):
        log.error("database error: %s", exc)
        return ApiError(503, "database_unavailable", "the database could not be used; retry")
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        error = _HTTP_IDS.get(exc.status, f"http_{exc.status}")
        headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
        # aiohttp's 413 text says the limit and the size; other reasons say enough.
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        return ApiError(exc.status, error, message, **headers)
    return None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        err = _translate(exc)
        if err is None:
            if isinstance(exc, web.HTTPException):  # redirects and the like: as they are
                raise
            log.exception("unhandled error in %s %s", request.method, request.path)
            err = ApiError(500, "internal_error", "internal error (logged)")
        return error_response(err)
