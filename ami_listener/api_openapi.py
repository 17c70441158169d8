"""``GET /openapi.json``: the API described as OpenAPI 3.1, generated from pydantic models.

Request bodies are the models the API validates with (``CallRequest``, ``RetryConfig``);
answers are the models below, which the tests validate real answers against (they forbid
extra keys), so the description cannot drift from what the handlers send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from .core.models import CallRequest, CallStatus, RetryConfig

REF = "#/components/schemas/{model}"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorItem(_Answer):
    field: str
    message: str
    line: int | None = Field(default=None, description="CSV line (the header is line 1)")


class ErrorBody(_Answer):
    error: str = Field(description="stable id: validation_error, unauthorized, not_found, ...")
    message: str
    details: list[ErrorItem] | None = None


class CallQueued(_Answer):
    message: Literal["done"]
    status: Literal["queued"]
    execution_id: str


class CancelAnswer(_Answer):
    message: Literal["success"]
    execution_id: str
    status: CallStatus = Field(description="canceled, or the live status while it finishes")
    cancel_requested: bool


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")  # one boolean per check the daemon supplies
    ok: bool
    database: bool


class HistoryItem(_Answer):
    attempt: int
    status: str
    at: str | None
    answered_by_voice_mail: bool
    hangup_cause: int | None = Field(description="Q.850 cause")
    hangup_cause_text: str | None
    sip_code: int | None
    dial_status: str | None
    reason: str | None
    permanent: bool
    decision: str | None = Field(description="what the retry policy decided, and why")
    provider_call_id: str | None


class TelephonyData(_Answer):
    duration: float
    to_number: str
    from_number: str | None
    provider_call_id: str | None
    provider: Literal["asterisk"]
    hangup_by: str | None
    hangup_reason: str | None
    hangup_provider_code: int | None


class ContextDetails(_Answer):
    recipient_data: dict[str, str]


class Execution(_Answer):
    id: str
    agent_id: str
    batch_id: str | None
    status: CallStatus
    error_message: str | None
    answered_by_voice_mail: bool
    created_at: str
    updated_at: str
    retry_count: int
    retry_config: RetryConfig
    retry_history: list[HistoryItem]
    scheduled_at: str | None
    telephony_data: TelephonyData
    context_details: ContextDetails


class BatchForm(_Answer):
    agent_id: str = Field(description="a configured target")
    file: bytes = Field(description="CSV with a contact_number column; other columns: variables")
    from_phone_numbers: list[str] = Field(default=[], description="repeatable; used in turn")
    retry_config: str | None = Field(default=None, description="RetryConfig as a JSON string")
    webhook_url: str | None = None


class BatchCreated(_Answer):
    batch_id: str
    state: Literal["created"]
    accepted: int
    rejected: int
    errors: list[ErrorItem]


class ScheduleForm(_Answer):
    scheduled_at: datetime = Field(description="ISO 8601 with a UTC offset; past means now")


class BatchScheduled(_Answer):
    message: Literal["success"]
    state: Literal["scheduled"]
    scheduled_at: str
    calls: int


class BatchStopped(_Answer):
    message: Literal["success"]
    state: Literal["stopped"]
    calls: int = Field(description="calls stopped, or let finish without a retry")


class BatchInfo(_Answer):
    batch_id: str
    agent_id: str
    state: str = Field(description="created, scheduled, executed or stopped")
    status: str
    created_at: str
    scheduled_at: str | None
    webhook_url: str | None
    total: int
    execution_status: dict[str, int] = Field(description="number of calls per status")


_MODELS: list[type[BaseModel]] = [
    CallRequest,
    ErrorBody,
    CallQueued,
    CancelAnswer,
    Health,
    Execution,
    BatchForm,
    BatchCreated,
    ScheduleForm,
    BatchScheduled,
    BatchStopped,
    BatchInfo,
]

_ERRORS = {
    "401": "missing or wrong bearer token",
    "404": "no such execution or batch",
    "409": "not allowed in the current state, or idempotency key reused",
    "413": "body (or CSV rows) over the configured limit",
    "422": "validation failed; details name each field",
}
_BATCH_ID = {"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}
_EXEC_ID = {"name": "execution_id", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGE = [
    {"name": n, "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}}
    for n in ("limit", "offset")
]
_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a repeat with the same key and body returns the first answer",
    "schema": {"type": "string", "maxLength": 255},
}


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    summary: str
    answer: str | None  # model name; "[Model]" for a list of them
    code: str = "200"
    body: tuple[str, str] | None = None  # (content type, model name)
    params: tuple[dict[str, Any], ...] = ()


FORM = "multipart/form-data"
OPERATIONS = (
    Op("get", "/healthz", "AMI connected, database writable (no token)", "Health"),
    Op("post", "/call", "Make Call", "CallQueued", body=("application/json", "CallRequest"),
       params=(_KEY,)),
    Op("get", "/executions/{execution_id}", "The execution object", "Execution",
       params=(_EXEC_ID,)),
    Op("post", "/executions/{execution_id}/cancel", "Cancel a call", "CancelAnswer",
       params=(_EXEC_ID,)),
    Op("post", "/batches", "Create a batch from a CSV", "BatchCreated", "201",
       body=(FORM, "BatchForm")),
    Op("get", "/batches/{batch_id}", "A batch and its calls per status", "BatchInfo",
       params=(_BATCH_ID,)),
    Op("post", "/batches/{batch_id}/schedule", "Schedule a created batch", "BatchScheduled",
       body=(FORM, "ScheduleForm"), params=(_BATCH_ID,)),
    Op("get", "/batches/{batch_id}/executions", "The batch's calls, newest first",
       "[Execution]", params=(_BATCH_ID, *_PAGE)),
    Op("post", "/batches/{batch_id}/stop", "Stop a batch", "BatchStopped", params=(_BATCH_ID,)),
    Op("get", "/openapi.json", "This description", None),
    Op("post", "/wake", "Another process changed the database: look again", None, "204"),
)  # fmt: skip
# Served only when the daemon keeps metrics (create_app(metrics=...)).
METRICS_OP = Op("get", "/metrics", "Prometheus metrics, text exposition format 0.0.4", "text/plain")


def _schema(answer: str | None) -> dict[str, Any]:
    if answer is None or answer == "text/plain":
        return {"type": "object"}
    if answer.startswith("["):
        return {"type": "array", "items": _schema(answer.strip("[]"))}
    return {"$ref": REF.format(model=answer)}


def _json(answer: str | None) -> dict[str, Any]:
    if answer == "text/plain":
        return {"text/plain": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": _schema(answer)}}


def _operation(op: Op) -> dict[str, Any]:
    responses: dict[str, Any] = {op.code: {"description": "success"}}
    if op.code != "204":  # No Content
        responses[op.code]["content"] = _json(op.answer)
    for status, why in _ERRORS.items():
        responses[status] = {"description": why, "content": _json("ErrorBody")}
    operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
    if op.params:
        operation["parameters"] = list(op.params)
    if op.body is not None:
        content_type, model = op.body
        content = {content_type: {"schema": _schema(model)}}
        if content_type == FORM and model == "ScheduleForm":  # Bolna sends a form; JSON too
            content["application/json"] = {"schema": _schema(model)}
        operation["requestBody"] = {"content": content, "required": True}
    if op.path == "/healthz":
        operation["security"] = []  # the one route without a token
        responses["503"] = {"description": "a check failed", "content": _json("Health")}
    return operation


def build_spec(version: str, *, metrics: bool = False) -> dict[str, Any]:
    """The OpenAPI document (a JSON-ready dict); ``metrics``: list ``GET /metrics`` too."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in (*OPERATIONS, METRICS_OP) if metrics else OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "asterisk-autoretry",
            "version": version,
            "description": "Bolna-compatible auto-retry of outbound calls on Asterisk.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
