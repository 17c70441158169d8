"""The pydantic input models: ``RetryConfig`` and ``CallRequest`` (Bolna's request body).

They validate what came from outside (API, CLI, CSV, config) and are kept apart from the
``Call``/``Attempt`` records in ``models`` that the store and ``lifecycle`` build from
already-validated data. Importers use ``models``, which re-exports every public name here.
Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .validation import check_variable, normalize_number

BOLNA_MAX_RETRIES = 3
"""Bolna's bound on ``max_retries``; an operator may widen it in config, a caller may not."""


class RetryableStatus(StrEnum):
    """The statuses ``retry_on_statuses`` may name (BOLNA.md)."""

    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    ERROR = "error"


VOICEMAIL = "voicemail"
"""Key for a voicemail-specific interval list in ``retry_intervals_by_status``."""


MAX_INTERVAL_MINUTES = 30 * 24 * 60
"""A retry more than 30 days away is a mistake, not a plan (and past year 9999, an error)."""


def _check_intervals(value: list[float], name: str) -> list[float]:
    if not value:
        raise ValueError(f"{name} must not be empty")
    for item in value:
        if isinstance(item, bool) or not math.isfinite(item) or item < 0:
            raise ValueError(f"{name} items must be finite numbers >= 0, got {item!r}")
        if item > MAX_INTERVAL_MINUTES:
            raise ValueError(f"{name} items must be at most {MAX_INTERVAL_MINUTES} (30 days)")
    return value


class RetryConfig(BaseModel):
    """Bolna's ``retry_config``, field for field, plus two optional fields of ours.

    Ours: ``retry_intervals_by_status`` (an interval list per status, or for
    ``"voicemail"``, used instead of ``retry_intervals_minutes`` when that status caused
    the retry) and ``ttl_minutes`` (no retry is scheduled later than this many minutes
    after the call was created; the time budget shared by all retries).

    ``max_retries`` is validated against ``context["max_retries_limit"]`` when the
    caller passes a validation context (the operator's widened bound), else 3.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = False  # "yes" or 1 is a mistake, not true
    max_retries: int = BOLNA_MAX_RETRIES
    retry_on_statuses: tuple[RetryableStatus, ...] = (
        RetryableStatus.NO_ANSWER,
        RetryableStatus.BUSY,
        RetryableStatus.FAILED,
    )
    retry_on_voicemail: StrictBool = False
    retry_intervals_minutes: tuple[float, ...] = (30, 60, 120)
    retry_intervals_by_status: dict[str, tuple[float, ...]] | None = None
    ttl_minutes: float | None = Field(default=None, gt=0, le=366 * 24 * 60)

    @field_validator("max_retries")
    @classmethod
    def _max_retries_in_bounds(cls, value: int, info: ValidationInfo) -> int:
        limit = BOLNA_MAX_RETRIES
        if isinstance(info.context, dict):
            limit = int(info.context.get("max_retries_limit", BOLNA_MAX_RETRIES))
        if not 1 <= value <= limit:
            raise ValueError(f"max_retries must be between 1 and {limit}, got {value}")
        return value

    @field_validator("retry_intervals_minutes")
    @classmethod
    def _intervals_ok(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(_check_intervals(list(value), "retry_intervals_minutes"))

    @field_validator("retry_on_statuses")
    @classmethod
    def _statuses_unique(cls, value: tuple[RetryableStatus, ...]) -> tuple[RetryableStatus, ...]:
        return tuple(dict.fromkeys(value))

    @field_validator("retry_intervals_by_status")
    @classmethod
    def _by_status_ok(
        cls, value: dict[str, tuple[float, ...]] | None
    ) -> dict[str, tuple[float, ...]] | None:
        if value is None:
            return None
        allowed = {s.value for s in RetryableStatus} | {VOICEMAIL}
        for key, intervals in value.items():
            if key not in allowed:
                raise ValueError(
                    f"retry_intervals_by_status key {key!r} is not one of {sorted(allowed)}"
                )
            _check_intervals(list(intervals), f"retry_intervals_by_status[{key}]")
        return value

    def interval_minutes(self, retry_number: int, status: str) -> float:
        """Delay before retry ``retry_number`` (1-based) caused by ``status``.

        A list shorter than the number of retries repeats its last item (BOLNA.md leaves
        this open; we choose the last item).
        """
        intervals = self.retry_intervals_minutes
        if self.retry_intervals_by_status and status in self.retry_intervals_by_status:
            intervals = self.retry_intervals_by_status[status]
        return intervals[min(retry_number, len(intervals)) - 1]


PhoneNumber = Annotated[str, Field(min_length=2, max_length=32)]


class CallRequest(BaseModel):
    """A request to place a call (Bolna Make Call body, as validated at the edge).

    Number validation needs the operator's pattern, passed as validation context
    ``{"number_pattern": re.Pattern | None, "max_retries_limit": int}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    recipient_phone_number: PhoneNumber
    from_phone_number: PhoneNumber | None = None
    scheduled_at: datetime | None = None
    user_data: dict[str, str] = Field(default_factory=dict)
    retry_config: RetryConfig = Field(default_factory=RetryConfig)
    bypass_call_guardrails: bool = False
    webhook_url: str | None = Field(default=None, max_length=2048)

    @field_validator("recipient_phone_number", "from_phone_number")
    @classmethod
    def _number_ok(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        pattern = None
        if isinstance(info.context, dict):
            pattern = info.context.get("number_pattern")
        return normalize_number(value, allow_pattern=pattern)

    @field_validator("scheduled_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("needs a UTC offset (ISO 8601, e.g. 2026-01-26T10:00:00Z)")
        return value

    @field_validator("user_data", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            # Bolna's user_data is free JSON; scalars become variable text, the rest is refused.
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, int | float)
                else v
                for k, v in value.items()
            }
        return value

    @field_validator("user_data")
    @classmethod
    def _variables_ok(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise ValueError("user_data holds more than 50 variables")
        for name, item in value.items():
            check_variable(name, str(item))
            if name.upper().startswith("AUTORETRY_"):
                raise ValueError(f"variable {name}: the AUTORETRY_ prefix is reserved")
        return {k: str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _webhook_scheme(self) -> CallRequest:
        url = self.webhook_url
        if url is not None and not re.match(r"^https?://[^\s]+$", url):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return self
