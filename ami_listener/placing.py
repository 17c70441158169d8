"""Placing one call: the code path shared by ``POST /call`` and ``autoretry call``.

A request body (Bolna's Make Call JSON, or what the CLI builds from its arguments) is
validated against the operator's settings (configured targets, number pattern, retry
bound, webhook hosts), becomes a ``queued`` call through ``lifecycle.new_call`` and is
committed with its ``queued`` event. Every refusal is a ``RequestInvalid`` naming the
fields, so the API answers 422 and the CLI prints one line, from the same checks.

Idempotency: the key is kept as ``sha256(key)[:32] + ":" + sha256(request)[:32]``. The
fixed-length key part lets one index range find "this key, any request"; the request part
tells a repeat (same call answered again) from a reuse of the key for another request
(``IdempotencyConflict``, HTTP 409). The key itself is never stored, so it may be any
printable text the client likes without reaching the database verbatim.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pydantic

from . import store_api
from .config import Settings
from .core.lifecycle import Effect, new_call
from .core.models import Call, CallRequest
from .errors import AutoretryError, ValidationError
from .store import Store
from .webhooks_http import check_url

MAX_KEY_LENGTH = 255

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required",
    # pydantic names our classes here ("instance of RetryConfig"): say it in JSON's words
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "bool_type": "must be true or false",
}


class RequestInvalid(ValidationError):
    """A request failed validation; ``details`` lists ``{"field", "message"}`` per problem."""

    def __init__(self, details: Sequence[Mapping[str, Any]]) -> None:
        first = details[0] if details else {"field": "body", "message": "invalid"}
        text = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        super().__init__(text or "invalid request", field=str(first["field"]))
        self.details = [dict(d) for d in details]


class IdempotencyConflict(AutoretryError):
    """The idempotency key was already used for a different request."""


def field_errors(exc: pydantic.ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """pydantic's errors as ``{"field": "retry_config.max_retries", "message": ...}``.

    Built from location, type and message only (never the input, which may be long or
    hostile); ``prefix`` names the part of the request the model was validated from.
    """
    out = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(p) for p in err["loc"])
        field = f"{prefix}.{loc}" if prefix and loc else (loc or prefix or "body")
        message = _MESSAGES.get(err["type"], err["msg"]).removeprefix("Value error, ")
        out.append({"field": field, "message": message})
    return out


def validation_context(settings: Settings) -> dict[str, Any]:
    dialer = settings.dialer
    return {"number_pattern": dialer.number_pattern, "max_retries_limit": dialer.max_retries_limit}


def check_target(name: object, settings: Settings) -> dict[str, Any] | None:
    """The error for an ``agent_id`` that names no configured target, else None."""
    if isinstance(name, str) and name not in settings.targets:
        known = ", ".join(sorted(settings.targets))
        return {"field": "agent_id", "message": f"unknown target {name[:64]!r} (known: {known})"}
    return None


def check_webhook(url: object, settings: Settings, field: str) -> dict[str, Any] | None:
    # The same rule the sender applies at delivery (webhooks.check_url), refused up front
    # so a client learns of a forbidden host now, not as a dead event later.
    if not isinstance(url, str):
        return None
    allow = frozenset(h.lower() for h in settings.webhooks.allow_hosts)
    why = "longer than 2048 characters" if len(url) > 2048 else check_url(url, allow)
    return None if why is None else {"field": field, "message": why}


def validate_request(body: object, settings: Settings) -> CallRequest:
    """The validated ``CallRequest`` for a Make Call body, or ``RequestInvalid``."""
    if not isinstance(body, dict):
        raise RequestInvalid([{"field": "body", "message": "must be a JSON object"}])
    problems: list[dict[str, Any]] = []
    request = None
    default = settings.retry.default
    if "retry_config" not in body and default is not None:
        # The operator's [retry.default] stands in for a retry_config the caller left out.
        body = {**body, "retry_config": default.model_dump(mode="json", exclude_none=True)}
    try:
        request = CallRequest.model_validate(body, context=validation_context(settings))
    except pydantic.ValidationError as exc:
        problems = field_errors(exc)
    named = {p["field"] for p in problems}
    for field, problem in (
        ("agent_id", check_target(body.get("agent_id"), settings)),
        ("webhook_url", check_webhook(body.get("webhook_url"), settings, "webhook_url")),
    ):
        if problem is not None and field not in named:  # one message per field
            problems.append(problem)
    if problems or request is None:
        raise RequestInvalid(problems)
    if request.scheduled_at is not None:  # one time zone inside: aware UTC
        request = request.model_copy(update={"scheduled_at": request.scheduled_at.astimezone(UTC)})
    return request


def check_key(key: str | None) -> str | None:
    """``key`` if usable as an idempotency key; ``RequestInvalid`` if not."""
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise RequestInvalid(
            [
                {
                    "field": "Idempotency-Key",
                    "message": f"must be 1..{MAX_KEY_LENGTH} printable ASCII characters",
                }
            ]
        )
    return key


def fingerprint(request: CallRequest) -> str:
    """A digest of what was asked, after validation (so "+1 415..." equals "+1415...")."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def commit_call(
    store: Store,
    call: Call,
    effects: Sequence[Effect],
    *,
    idempotency_key: str | None,
    request_digest: str,
) -> tuple[Call, bool]:
    """Insert the call; with a key, a repeat returns the first call and ``created=False``."""
    if idempotency_key is None:
        return store.create_call(call, effects)
    found, created, same = store_api.create_keyed_call(
        store, call, effects, key_digest(idempotency_key), request_digest
    )
    if not same:
        raise IdempotencyConflict(
            "Idempotency-Key was already used for a different request "
            f"(execution {found.id}); use a new key for a new call"
        )
    return found, created


def place_call(
    store: Store,
    settings: Settings,
    body: object,
    now: datetime,
    new_id: Callable[[], str],
    idempotency_key: str | None = None,
) -> tuple[Call, bool]:
    """Validate ``body``, create the ``queued`` call and commit it: ``(call, created)``.

    ``created`` is False when ``idempotency_key`` was seen before with the same request;
    the call returned is then the first one. Runs in the thread that owns ``store``.
    """
    key = check_key(idempotency_key)
    request = validate_request(body, settings)
    call, effects = new_call(new_id(), request, now)
    return commit_call(
        store, call, effects, idempotency_key=key, request_digest=fingerprint(request)
    )
