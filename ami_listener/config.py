"""Frozen settings, loaded once at the edge from a TOML file and the environment.

Every section (``config_sections.py``) forbids unknown keys, so a typo is an error that
names the key and the file instead of a silently ignored setting. Secrets are
``SecretStr`` (repr/str show ``**********``) and may come from the environment instead of
the file, which keeps them out of the file and its backups.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from .config_sections import (
    AgiSettings,
    AmiSettings,
    ApiSettings,
    CallingHoursSettings,
    DatabaseSettings,
    DialerSettings,
    LoggingSettings,
    Name,
    OutcomesSettings,
    RetrySettings,
    Section,
    TargetSettings,
    WebhooksSettings,
    split_listen,
)
from .core.models import BOLNA_MAX_RETRIES, RetryConfig
from .core.outcomes import CauseOverride, CauseOverrides
from .core.policy import Rules
from .errors import ConfigError

__all__ = [
    "AgiSettings",
    "AmiSettings",
    "ApiSettings",
    "CallingHoursSettings",
    "ConfigError",
    "DatabaseSettings",
    "DialerSettings",
    "LoggingSettings",
    "OutcomesSettings",
    "RetrySettings",
    "Settings",
    "TargetSettings",
    "WebhooksSettings",
    "config_path",
    "split_listen",
]

DEFAULT_CONFIG = Path("autoretry.toml")
ENV_CONFIG = "AUTORETRY_CONFIG"
# (section, key) -> environment variable that provides or overrides it.
SECRET_ENV = {
    ("ami", "secret"): "AUTORETRY_AMI_SECRET",
    ("api", "token"): "AUTORETRY_API_TOKEN",
    ("webhooks", "secret"): "AUTORETRY_WEBHOOK_SECRET",
}


class Settings(Section):
    ami: AmiSettings
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    dialer: DialerSettings
    targets: dict[Name, TargetSettings] = Field(min_length=1)
    calling_hours: CallingHoursSettings | None = None
    retry: RetrySettings = RetrySettings()
    profiles: dict[Name, RetryConfig] = Field(default_factory=dict)
    outcomes: OutcomesSettings = OutcomesSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    agi: AgiSettings = AgiSettings()
    logging: LoggingSettings = LoggingSettings()
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Settings:
        if isinstance(info.context, dict) and not info.context.get("need_secrets", True):
            return self  # a command that only reads the database (calls, status, ...)
        for (section, key), env in SECRET_ENV.items():
            if section == "webhooks" and self.webhooks.url is None:
                continue  # no default webhook: the secret is optional
            if getattr(getattr(self, section), key) is None:
                raise ValueError(f"[{section}].{key}: required (set it in the file or in ${env})")
        return self

    @property
    def source(self) -> Path | None:
        """The file these settings were read from (None when built without one)."""
        return self._source

    def rules(self, *, rng: Callable[[], float] | None = None) -> Rules:
        """The policy's operator knobs. The core owns no randomness, so jitter needs ``rng``
        (the daemon passes ``random.random``); without one, as in ``preview``, jitter is 0
        and retry times are exact."""
        hours = self.calling_hours
        return Rules(
            window=hours.window() if hours else None,
            default_timezone=hours.default_timezone if hours else "UTC",
            retry_permanent=self.retry.retry_permanent,
            jitter_s=self.retry.jitter_s if rng is not None else 0.0,
            rng=rng,
        )

    def cause_overrides(self) -> CauseOverrides:
        return {
            trunk: {cause: CauseOverride(o.status, o.permanent) for cause, o in causes.items()}
            for trunk, causes in self.outcomes.overrides.items()
        }

    @classmethod
    def load(
        cls, path: Path | None, environ: Mapping[str, str], *, need_secrets: bool = True
    ) -> Settings:
        """Read ``path`` (default: ``$AUTORETRY_CONFIG`` or ./autoretry.toml) and the env.

        ``need_secrets=False`` for commands that never talk to AMI or serve the API: they
        work for an operator who may read the config but not the secrets file."""
        path = config_path(path, environ)
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(raw, environ, source=path, need_secrets=need_secrets)

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any],
        environ: Mapping[str, str],
        *,
        source: Path | None = None,
        need_secrets: bool = True,
    ) -> Settings:
        data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
        for (section, key), env in SECRET_ENV.items():
            if environ.get(env) and isinstance(data.setdefault(section, {}), dict):
                data[section][key] = environ[env]
        # RetryConfig tables ([retry.default], [profiles.*]) are bounded by the operator's limit.
        dialer = data.get("dialer")
        limit = dialer.get("max_retries_limit") if isinstance(dialer, dict) else None
        if not (isinstance(limit, int) and 1 <= limit <= 10):
            limit = BOLNA_MAX_RETRIES
        context = {
            "base_dir": source.absolute().parent if source else None,
            "max_retries_limit": limit,
            "need_secrets": need_secrets,
        }
        where = str(source) if source else "<config>"
        try:
            settings = cls.model_validate(data, context=context)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"{where}: {format_errors(exc, raw)}") from None
        settings._source = source
        return settings


def config_path(path: Path | None, environ: Mapping[str, str]) -> Path:
    return path if path is not None else Path(environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown key (misspelled?)",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be one of {expected}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
}


def format_errors(exc: pydantic.ValidationError, raw: Mapping[str, Any]) -> str:
    """``[dialer].max_cps: must be > 0; ...``: TOML table in brackets, then the key.

    Built from loc/type/ctx only, never from the input, so a secret never reaches a message.
    """
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"]]
        template = _MESSAGES.get(err["type"])
        ctx = {k: _number(v) for k, v in err.get("ctx", {}).items()}
        msg = template.format(**ctx) if template else err["msg"]
        if err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        where = _where(loc, raw)
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _number(value: Any) -> Any:
    # pydantic reports the bound of a float field as 0.0; the file said 0.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _where(loc: list[str], raw: Mapping[str, Any]) -> str:
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]  # the key itself is wrong: name it as the location
    if not loc:
        return ""  # a check across sections: its message names the keys
    # The longest prefix that names TOML tables goes in brackets; the rest are keys.
    node: Any = raw
    table: list[str] = []
    for part in loc:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            break
        node = node[part]
        table.append(part)
    table = table or loc[:1]  # a section missing from the file is still a table
    keys = loc[len(table) :]
    return f"[{'.'.join(table)}]" + ("." + ".".join(keys) if keys else "")
