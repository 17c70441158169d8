"""The sections of the config file: one frozen model per TOML table (see config.py).

Validation here is the security edge for operator-supplied values that reach Asterisk:
dial strings, caller id, dialplan names and AMD sound files end up on AMI lines or in call
files, so CR, LF, NUL and ``;`` are refused wherever they could split a line or argument.
"""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .core.models import BOLNA_MAX_RETRIES, OutcomeStatus, RetryConfig
from .core.windows import CallingWindow, parse_hhmm

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_LINE_BREAKERS = re.compile(r"[\r\n\x00]")


def _no_line_breaks(value: str) -> str:
    # These values end up on AMI lines and call-file lines, where CR/LF/NUL inject headers.
    if _LINE_BREAKERS.search(value):
        raise ValueError("must not contain CR, LF or NUL")
    return value


def _plain(value: str) -> str:
    _no_line_breaks(value)
    if ";" in value:  # ';' starts a comment in call files and in Asterisk .conf syntax
        raise ValueError("must not contain ';'")
    return value


def _name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(f"name {value!r} must match {NAME.pattern}")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port with a port in 1..65535, got {value!r}")
    _plain(host)
    return value


Plain = Annotated[str, AfterValidator(_plain)]
Name = Annotated[str, AfterValidator(_name)]
Seconds = Annotated[float, Field(gt=0), AfterValidator(_finite)]
Listen = Annotated[str, AfterValidator(_listen)]


def _secret(value: SecretStr) -> SecretStr:
    _no_line_breaks(value.get_secret_value())  # the message never repeats the value
    return value


Secret = Annotated[SecretStr, AfterValidator(_secret)]


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8088"`` -> ``("127.0.0.1", 8088)``; ``"[::1]:8088"`` -> ``("::1", 8088)``."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AmiSettings(Section):
    host: Plain = "127.0.0.1"
    port: int = Field(default=5038, gt=0, lt=65536)
    username: Plain = Field(min_length=1)
    secret: Secret | None = None  # required; checked by Settings so the message names the env var
    connect_timeout_s: Seconds = 10.0
    ping_interval_s: Seconds = 20.0
    reconnect_max_s: Seconds = 30.0
    events_mask: bool = True
    use_filters: bool = True


class DatabaseSettings(Section):
    path: Path = Path("autoretry.db")
    synchronous: Literal["full", "normal"] = "full"

    @field_validator("path")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        # A relative path means "next to the config file", not "wherever systemd started us".
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        return value if value.is_absolute() or base is None else base / value


class ApiSettings(Section):
    listen: Listen = "127.0.0.1:8088"
    token: Secret | None = None
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_csv_rows: int = Field(default=100_000, gt=0)


_CHANNEL = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/[^\s,;]+$")


class DialerSettings(Section):
    method: Literal["originate", "callfile"] = "originate"
    channel: str
    spool_dir: Path = Path("/var/spool/asterisk")
    asterisk_user: Name = "asterisk"
    max_concurrent: int = Field(default=10, gt=0)
    max_cps: float = Field(default=5.0, gt=0)
    ring_timeout_s: Seconds = 30.0
    caller_id: Plain | None = None
    number_pattern: re.Pattern[str] | None = None
    max_retries_limit: int = Field(default=BOLNA_MAX_RETRIES, ge=1, le=10)

    @field_validator("channel")
    @classmethod
    def _channel_ok(cls, value: str) -> str:
        _no_line_breaks(value)
        if value.count("{number}") != 1:
            raise ValueError("must contain {number} exactly once")
        rest = value.replace("{number}", "N")
        if "{" in rest or "}" in rest:
            raise ValueError("the only placeholder allowed is {number}")
        if not _CHANNEL.match(rest):
            raise ValueError(
                "must look like TECH/resource (e.g. PJSIP/{number}@carrier), no , ; or spaces"
            )
        return value

    @field_validator("number_pattern", mode="before")
    @classmethod
    def _compile(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    def dial_string(self, number: str) -> str:
        """The channel for ``number``, which the caller has already validated."""
        return self.channel.replace("{number}", number)


class TargetSettings(Section):
    context: Plain | None = None
    extension: Plain | None = None
    priority: int = Field(default=1, ge=1)
    application: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")] | None = None
    data: Annotated[str, AfterValidator(_plain)] = ""
    amd: bool = False
    initial_silence_ms: int | None = Field(default=None, gt=0, le=60_000)
    greeting_ms: int | None = Field(default=None, gt=0, le=60_000)
    after_greeting_silence_ms: int | None = Field(default=None, gt=0, le=60_000)
    total_analysis_time_ms: int | None = Field(default=None, gt=0, le=60_000)
    machine_action: Literal["hangup", "message"] = "hangup"
    machine_message: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_/.-]*$")] | None = None
    notsure: Literal["human", "machine"] = "human"  # how an AMD NOTSURE counts
    trunk: Name | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TargetSettings:
        dialplan = self.context is not None or self.extension is not None
        if dialplan == (self.application is not None):
            raise ValueError("set either context+extension(+priority) or application(+data)")
        if dialplan and (self.context is None or self.extension is None):
            raise ValueError("context and extension go together")
        if not dialplan and "priority" in self.model_fields_set:
            raise ValueError("priority belongs to the context+extension form")
        if dialplan and "data" in self.model_fields_set:
            raise ValueError("data belongs to the application form")
        amd_params = {"initial_silence_ms", "greeting_ms", "after_greeting_silence_ms"}
        amd_params |= {"total_analysis_time_ms", "machine_action", "machine_message", "notsure"}
        if not self.amd and amd_params & self.model_fields_set:
            raise ValueError("AMD settings need amd = true")
        if self.machine_action == "message" and self.machine_message is None:
            raise ValueError("machine_action = 'message' needs machine_message")
        if self.machine_message and ".." in self.machine_message:
            raise ValueError("machine_message must not contain '..'")
        return self


def _weekday(value: Any) -> Any:
    if isinstance(value, str):
        if value.lower() not in WEEKDAYS:
            raise ValueError(f"weekday {value!r} is not one of {', '.join(WEEKDAYS)}")
        return WEEKDAYS.index(value.lower())
    return value


class CallingHoursSettings(Section):
    start: str = "09:00"
    end: str = "20:00"
    weekdays: tuple[Annotated[int, BeforeValidator(_weekday), Field(ge=0, le=6)], ...] = tuple(
        range(7)
    )
    holidays: tuple[date, ...] = ()
    default_timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)  # raises ValueError with the reason
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _window_ok(self) -> CallingHoursSettings:
        self.window()  # CallingWindow refuses empty windows and empty weekdays
        return self

    def window(self) -> CallingWindow:
        return CallingWindow(
            start_minute=parse_hhmm(self.start),
            end_minute=parse_hhmm(self.end),
            weekdays=frozenset(self.weekdays),
            holidays=frozenset(self.holidays),
        )


class RetrySettings(Section):
    retry_permanent: bool = False
    jitter_s: float = Field(default=0.0, ge=0)
    default: RetryConfig | None = None  # for calls (API, CLI, batch) that bring none


class CauseOverrideSettings(Section):
    status: OutcomeStatus
    permanent: bool = False


class OutcomesSettings(Section):
    # trunk (or "*") -> Q.850 cause -> override
    overrides: dict[str, dict[Annotated[int, Field(ge=0, le=127)], CauseOverrideSettings]] = {}

    @field_validator("overrides")
    @classmethod
    def _trunks(cls, value: dict[str, Any]) -> dict[str, Any]:
        for trunk in value:
            if trunk != "*":
                _name(trunk)
        return value


class WebhooksSettings(Section):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)] | None = None
    secret: Secret | None = None
    timeout_s: Seconds = 10.0
    max_age_s: Seconds = 24 * 3600.0
    allow_hosts: tuple[Plain, ...] = ()
    concurrency: int = Field(default=4, gt=0, le=256)

    @model_validator(mode="after")
    def _url_allowed(self) -> WebhooksSettings:
        if self.url and self.allow_hosts and urlsplit(self.url).hostname not in self.allow_hosts:
            raise ValueError("the host of url is not in allow_hosts")
        return self


class AgiSettings(Section):
    fastagi: bool = True  # serve the FastAGI hooks from the daemon
    fastagi_listen: Listen = "127.0.0.1:4573"


class LoggingSettings(Section):
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"
