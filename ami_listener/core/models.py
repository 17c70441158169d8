"""The values the rest of the program passes around.

Input models (``RetryConfig``, ``CallRequest``) are pydantic and validate what came from
outside. ``Call`` and ``Attempt`` are frozen dataclasses: they are built by the store and
by ``lifecycle.advance`` from already-validated data, millions of times on hot paths, so
they skip validation. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

BOLNA_MAX_RETRIES = 3
"""Bolna's bound on ``max_retries``; an operator may widen it in config, a caller may not."""


class CallStatus(StrEnum):
    """A call's (Bolna: execution's) status. Values are Bolna's strings."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RESCHEDULED = "rescheduled"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    CALL_DISCONNECTED = "call-disconnected"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"
    STOPPED = "stopped"
    ERROR = "error"


PENDING_STATUSES = frozenset({CallStatus.QUEUED, CallStatus.SCHEDULED, CallStatus.RESCHEDULED})
"""Waiting for a dial at ``scheduled_at``; the scheduler claims calls in these statuses."""

LIVE_STATUSES = frozenset({CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS})
"""An attempt is on the wire."""

FINAL_STATUSES = frozenset(set(CallStatus) - PENDING_STATUSES - LIVE_STATUSES)


class AttemptStatus(StrEnum):
    """One dial attempt. ``dialing``/``ringing``/``in-progress`` are live, the rest final."""

    DIALING = "dialing"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"


LIVE_ATTEMPT_STATUSES = frozenset(
    {AttemptStatus.DIALING, AttemptStatus.RINGING, AttemptStatus.IN_PROGRESS}
)


class OutcomeStatus(StrEnum):
    """What one finished attempt amounted to (``outcomes.classify``)."""

    COMPLETED = "completed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"


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


# Channel variable names: what Asterisk accepts in Set() and that cannot smuggle syntax.
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# CR, LF and NUL end AMI and call-file lines; the other control characters (and Unicode line
# separators) have no business in a dial argument and would confuse logs and readers.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_FORBIDDEN_IN_VALUES = CONTROL_CHARS
MAX_VARIABLE_VALUE = 1024


def check_variable(name: str, value: str) -> None:
    """Raise ValueError unless ``name=value`` is safe as an AMI/call-file variable.

    CR, LF and NUL would end the AMI line or the call-file line and inject headers.
    A comma would be taken by Asterisk as a separator in several Variable forms, and
    ``;`` starts a comment in call files; both are refused in values.
    """
    if not VARIABLE_NAME.match(name):
        raise ValueError(f"variable name {name!r} must match {VARIABLE_NAME.pattern}")
    if _FORBIDDEN_IN_VALUES.search(value):
        raise ValueError(
            f"variable {name}: value contains CR, LF, NUL or another control character"
        )
    if "," in value or ";" in value:
        raise ValueError(f"variable {name}: value must not contain ',' or ';'")
    if len(value) > MAX_VARIABLE_VALUE:
        raise ValueError(f"variable {name}: value longer than {MAX_VARIABLE_VALUE} characters")


def normalize_number(raw: str, *, allow_pattern: re.Pattern[str] | None = None) -> str:
    """Return ``raw`` as an E.164 number, or raise ValueError saying why not.

    ``allow_pattern`` is the operator's escape hatch for numbers that are not E.164
    (internal extensions, carrier prefixes): a full match is accepted as it is.
    """
    if not isinstance(raw, str):
        raise ValueError("phone number must be a string")
    text = raw.strip(" \t")  # not CR/LF: those are refused below, never silently eaten
    # Checked before the operator's pattern: a loose pattern must not admit line breaks or
    # the characters that split a dial string.
    if _FORBIDDEN_IN_VALUES.search(text):
        raise ValueError("phone number contains CR, LF, NUL or another control character")
    if any(c in text for c in ",;&|"):
        raise ValueError("phone number contains ',', ';', '&' or '|'")
    if allow_pattern is not None and allow_pattern.fullmatch(text):
        return text
    if not re.fullmatch(r"\+[1-9][0-9]{1,14}", text):
        raise ValueError(f"phone number {text!r} is not E.164 (+ then 2 to 15 digits)")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone number {text!r} could not be parsed: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"phone number {text!r} is not a valid number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


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


@dataclass(frozen=True, slots=True)
class Attempt:
    """One dial of a call. ``id`` is ours: ActionID, ChannelId and channel variable."""

    id: str
    call_id: str
    number: int  # 1 for the first dial, 2 for the first retry, ...
    status: AttemptStatus
    started_at: datetime
    ended_at: datetime | None = None
    answered_at: datetime | None = None
    cause: int | None = None  # Q.850 cause of the far-end leg
    cause_txt: str | None = None
    tech_cause: int | None = None  # SIP status code, when Asterisk gives it
    dial_status: str | None = None  # DialEnd DialStatus / DIALSTATUS
    originate_reason: int | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    answered_by_voice_mail: bool = False
    permanent: bool = False
    reason: str | None = None  # short human reason ("SIP 486 / Q.850 17 User busy")
    decision: str | None = None  # what the policy decided after this attempt, and why
    uniqueid: str | None = None  # Asterisk Uniqueid of the far-end leg (provider_call_id)

    @property
    def live(self) -> bool:
        return self.status in LIVE_ATTEMPT_STATUSES


@dataclass(frozen=True, slots=True)
class Call:
    """A call (Bolna: execution) and its attempts, oldest first."""

    id: str
    target: str  # Bolna agent_id: the configured dial target
    to_number: str
    status: CallStatus
    retry_config: RetryConfig
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None  # next dial (pending) or None
    from_number: str | None = None
    retry_count: int = 0  # retries dialled or planned (first attempt is not a retry)
    variables: dict[str, str] = field(default_factory=dict)
    batch_id: str | None = None
    webhook_url: str | None = None
    bypass_call_guardrails: bool = False
    answered_by_voice_mail: bool = False
    error_message: str | None = None
    timezone: str | None = None  # recipient's IANA zone, when known
    cancel_requested: str | None = None  # "canceled"/"stopped" while an attempt is live
    attempts: tuple[Attempt, ...] = ()

    @property
    def live_attempt(self) -> Attempt | None:
        for attempt in reversed(self.attempts):
            if attempt.live:
                return attempt
        return None

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None
