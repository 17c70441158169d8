"""Settings from TOML + environment: the issue's file, every validation error, secrets."""

from __future__ import annotations

import random
import re
import tomllib
from datetime import date
from pathlib import Path

import pydantic
import pytest

from ami_listener.config import Settings, config_path, split_listen
from ami_listener.core.models import OutcomeStatus, RetryableStatus
from ami_listener.core.outcomes import CauseOverride
from ami_listener.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# The issue's example, verbatim (secrets filled in).
ISSUE_TOML = """\
[ami]
host = "127.0.0.1"
port = 5038
username = "autoretry"
secret = "ami-s3cret-value"
[database]
path = "autoretry.db"
[api]
listen = "127.0.0.1:8088"
token = "api-t0ken-value"
[dialer]
method = "originate"                  # or "callfile"
channel = "PJSIP/{number}@carrier"    # dial string; {number} is the validated number
spool_dir = "/var/spool/asterisk"
max_concurrent = 10
max_cps = 5
[targets.sales-ivr]                   # Bolna's agent_id selects a target
context = "autoretry-connect"
extension = "s"
priority = 1
[webhooks]
url = "https://example.test/hook"
secret = "hook-s3cret-value"
"""
SECRETS = ("ami-s3cret-value", "api-t0ken-value", "hook-s3cret-value")


def write(tmp_path: Path, text: str, name: str = "autoretry.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Settings.load(path, environ or {})
    message = str(info.value)
    assert message.startswith(f"{path}: "), message  # every error names the file
    assert "\n" not in message
    return message


def test_issue_toml_parses(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_TOML)
    settings = Settings.load(path, {})
    assert settings.source == path
    assert (settings.ami.host, settings.ami.port, settings.ami.username) == (
        "127.0.0.1",
        5038,
        "autoretry",
    )
    assert settings.ami.secret is not None
    assert settings.ami.secret.get_secret_value() == "ami-s3cret-value"
    assert settings.database.path == tmp_path / "autoretry.db"
    assert settings.database.synchronous == "full"
    assert split_listen(settings.api.listen) == ("127.0.0.1", 8088)
    assert settings.dialer.method == "originate"
    assert settings.dialer.dial_string("+14155550100") == "PJSIP/+14155550100@carrier"
    assert settings.dialer.spool_dir == Path("/var/spool/asterisk")
    assert (settings.dialer.max_concurrent, settings.dialer.max_cps) == (10, 5.0)
    assert settings.dialer.max_retries_limit == 3
    target = settings.targets["sales-ivr"]
    assert (target.context, target.extension, target.priority) == ("autoretry-connect", "s", 1)
    assert target.application is None and not target.amd
    assert settings.webhooks.url == "https://example.test/hook"
    assert settings.calling_hours is None
    assert settings.rules().window is None
    assert settings.rules().default_timezone == "UTC"
    assert settings.agi.fastagi_listen == "127.0.0.1:4573"
    assert settings.logging.level == "INFO"


def test_example_file_parses_and_comments_every_key() -> None:
    example = ROOT / "autoretry.example.toml"
    settings = Settings.load(example, {})
    assert set(settings.targets) == {"sales-ivr", "playback"}
    assert settings.targets["playback"].application == "Playback"
    assert settings.calling_hours is not None
    assert settings.calling_hours.weekdays == (0, 1, 2, 3, 4, 5)
    assert settings.calling_hours.holidays == (date(2026, 12, 25),)
    assert settings.profiles["gentle"].retry_on_statuses == (
        RetryableStatus.NO_ANSWER,
        RetryableStatus.BUSY,
    )
    assert settings.retry.default is not None and settings.retry.default.max_retries == 2
    assert settings.cause_overrides() == {
        "carrier": {34: CauseOverride(OutcomeStatus.BUSY, permanent=False)}
    }
    # Every key line carries a comment, and every key of every section appears in it.
    keys_seen: set[str] = set()
    for line in example.read_text().splitlines():
        match = re.match(r'^\s*("?[\w.-]+"?)\s*=', line)
        if match:
            assert "#" in line.split("=", 1)[1], f"no comment: {line}"
            keys_seen.add(match.group(1))
    raw = tomllib.loads(example.read_text())
    for name in ("ami", "database", "api", "dialer", "webhooks", "agi", "logging", "retry"):
        section = getattr(settings, name)
        missing = set(type(section).model_fields) - keys_seen - {"default"}
        assert not missing, f"[{name}] keys not in the example: {missing}"
        assert name in raw


def test_default_config_path_comes_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_TOML, "elsewhere.toml")
    assert config_path(None, {"AUTORETRY_CONFIG": str(path)}) == path
    assert config_path(None, {}) == Path("autoretry.toml")
    assert Settings.load(None, {"AUTORETRY_CONFIG": str(path)}).source == path


def test_relative_database_path_resolves_against_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = write(tmp_path, ISSUE_TOML.replace('"autoretry.db"', '"data/calls.db"'), "etc/a.toml")
    monkeypatch.chdir(tmp_path)  # a relative --config must still work
    settings = Settings.load(Path("etc/a.toml"), {})
    assert settings.database.path == conf.parent / "data" / "calls.db"
    assert settings.database.path.is_absolute()
    absolute = ISSUE_TOML.replace('"autoretry.db"', '"/var/lib/autoretry/x.db"')
    assert Settings.load(write(tmp_path, absolute), {}).database.path == Path(
        "/var/lib/autoretry/x.db"
    )


def test_environment_provides_and_overrides_secrets(tmp_path: Path) -> None:
    text = "\n".join(
        line for line in ISSUE_TOML.splitlines() if not line.startswith(("secret", "token"))
    )
    environ = {
        "AUTORETRY_AMI_SECRET": "from-env-ami",
        "AUTORETRY_API_TOKEN": "from-env-api",
        "AUTORETRY_WEBHOOK_SECRET": "from-env-hook",
    }
    settings = Settings.load(write(tmp_path, text), environ)
    assert settings.ami.secret is not None and settings.api.token is not None
    assert settings.webhooks.secret is not None
    assert settings.ami.secret.get_secret_value() == "from-env-ami"
    assert settings.api.token.get_secret_value() == "from-env-api"
    assert settings.webhooks.secret.get_secret_value() == "from-env-hook"
    # The environment wins over the file; an empty variable counts as unset.
    over = Settings.load(write(tmp_path, ISSUE_TOML), {"AUTORETRY_AMI_SECRET": "env-wins"})
    assert over.ami.secret is not None and over.ami.secret.get_secret_value() == "env-wins"
    empty = Settings.load(write(tmp_path, ISSUE_TOML), {"AUTORETRY_API_TOKEN": ""})
    assert empty.api.token is not None
    assert empty.api.token.get_secret_value() == "api-t0ken-value"


@pytest.mark.parametrize(
    ("line", "key", "env"),
    [
        ('secret = "ami-s3cret-value"', "[ami].secret", "AUTORETRY_AMI_SECRET"),
        ('token = "api-t0ken-value"', "[api].token", "AUTORETRY_API_TOKEN"),
        ('secret = "hook-s3cret-value"', "[webhooks].secret", "AUTORETRY_WEBHOOK_SECRET"),
    ],
)
def test_missing_secret_names_key_and_env_var(
    tmp_path: Path, line: str, key: str, env: str
) -> None:
    message = load_error(tmp_path, ISSUE_TOML.replace(line, ""))
    assert key in message and env in message


def test_webhook_secret_optional_without_url(tmp_path: Path) -> None:
    text = ISSUE_TOML.split("[webhooks]")[0]
    settings = Settings.load(write(tmp_path, text), {})
    assert settings.webhooks.url is None and settings.webhooks.secret is None


def _sub(old: str, new: str) -> str:
    assert old in ISSUE_TOML
    return ISSUE_TOML.replace(old, new)


def _add(section: str, text: str) -> str:
    """Insert ``text`` right after the ``[section]`` header line."""
    header = re.compile(rf"^\[{re.escape(section)}\].*$", re.MULTILINE)
    assert header.search(ISSUE_TOML)
    return header.sub(lambda m: f"{m.group(0)}\n{text}", ISSUE_TOML, count=1)


CH = '[calling_hours]\nstart = "09:00"\n'
BAD = [
    (_sub("max_cps = 5", "max_cps = 0"), "[dialer].max_cps: must be > 0"),
    (_sub("max_cps = 5", "max_cpss = 5"), "[dialer].max_cpss: unknown key"),
    (_sub("max_concurrent = 10", "max_concurrent = -1"), "[dialer].max_concurrent: must be > 0"),
    (_sub('"originate"', '"sip"'), "[dialer].method: must be one of"),
    (_sub("PJSIP/{number}@carrier", "PJSIP/carrier"), "[dialer].channel: must contain {number}"),
    (_sub("PJSIP/{number}@carrier", "PJSIP/{number}{number}"), "[dialer].channel: must contain"),
    (_sub("PJSIP/{number}@carrier", "PJSIP/{number},x"), "[dialer].channel: must look like"),
    (_sub("PJSIP/{number}@carrier", "PJSIP/{number};x"), "[dialer].channel"),
    (_sub("PJSIP/{number}@carrier", "PJSIP/{number}\\r\\nAction: x"), "[dialer].channel"),
    (_sub("PJSIP/{number}@carrier", "{number}"), "[dialer].channel: must look like TECH/"),
    (_sub("PJSIP/{number}@carrier", "PJSIP/{number}@{trunk}"), "[dialer].channel: the only"),
    (_add("dialer", 'number_pattern = "[0-9"'), "[dialer].number_pattern: invalid regular"),
    (_add("dialer", "max_retries_limit = 11"), "[dialer].max_retries_limit: must be <= 10"),
    (_add("dialer", 'caller_id = "x;y"'), "[dialer].caller_id: must not contain ';'"),
    (_add("dialer", 'caller_id = "x\\ny"'), "[dialer].caller_id: must not contain CR"),
    (_add("dialer", 'asterisk_user = "root user"'), "[dialer].asterisk_user"),
    (_sub("port = 5038", "port = 70000"), "[ami].port: must be < 65536"),
    (_sub('username = "autoretry"', 'username = ""'), "[ami].username: must not be empty"),
    (_sub('username = "autoretry"', ""), "[ami].username: required"),
    (_add("ami", "ping_interval_s = 0"), "[ami].ping_interval_s: must be > 0"),
    (_add("ami", 'events_mask = "maybe"'), "[ami].events_mask"),
    (_sub('"127.0.0.1:8088"', '"localhost"'), "[api].listen: must be host:port"),
    (_sub('"127.0.0.1:8088"', '"localhost:0"'), "[api].listen"),
    (_add("api", "max_body_bytes = 0"), "[api].max_body_bytes: must be > 0"),
    (_add("database", 'synchronous = "off"'), "[database].synchronous: must be one of"),
    (_add("targets.sales-ivr", 'application = "Playback"'), "[targets.sales-ivr]: set either"),
    (_sub('extension = "s"', ""), "[targets.sales-ivr]: context and extension go together"),
    (_sub("priority = 1", "priority = 0"), "[targets.sales-ivr].priority: must be >= 1"),
    (_add("targets.sales-ivr", "greeting_ms = 1500"), "[targets.sales-ivr]: AMD settings need"),
    (
        _add("targets.sales-ivr", 'amd = true\nmachine_action = "message"'),
        "[targets.sales-ivr]: machine_action = 'message' needs machine_message",
    ),
    (_add("targets.sales-ivr", "colour = 1"), "[targets.sales-ivr].colour: unknown key"),
    (_sub("[targets.sales-ivr]", '[targets."sales ivr"]'), "[targets.sales ivr]: name 'sales ivr'"),
    (_sub("[targets.sales-ivr]", "[targetz.sales-ivr]"), "[targetz]: unknown key"),
    (_sub('url = "https://example.test/hook"', 'url = "ftp://x"'), "[webhooks].url"),
    (_add("webhooks", 'allow_hosts = ["other.test"]'), "[webhooks]: the host of url is not"),
    (_add("webhooks", "timeout_s = -1"), "[webhooks].timeout_s: must be > 0"),
    (ISSUE_TOML + CH + 'end = "25:00"', "[calling_hours].end: time '25:00' must be HH:MM"),
    (ISSUE_TOML + CH + 'end = "09:00"', "[calling_hours]: end_minute must differ"),
    (ISSUE_TOML + CH + 'weekdays = ["funday"]', "[calling_hours].weekdays.0: weekday 'funday'"),
    (ISSUE_TOML + CH + "weekdays = []", "[calling_hours]: weekdays must be a non-empty"),
    (ISSUE_TOML + CH + 'holidays = ["2026-13-01"]', "[calling_hours].holidays.0"),
    (ISSUE_TOML + CH + 'default_timezone = "Mars/Base"', "[calling_hours].default_timezone"),
    (ISSUE_TOML + "[retry]\njitter_s = -1", "[retry].jitter_s: must be >= 0"),
    (ISSUE_TOML + "[profiles.p]\nmax_retries = 5", "[profiles.p].max_retries: max_retries must"),
    (ISSUE_TOML + "[profiles.p]\nretries = 5", "[profiles.p].retries: unknown key"),
    (
        ISSUE_TOML + '[outcomes.overrides.carrier]\n"34" = {status = "nope"}',
        "[outcomes.overrides.carrier.34].status: Input should be",
    ),
    (
        ISSUE_TOML + '[outcomes.overrides.carrier]\n"300" = {status = "busy"}',
        "[outcomes.overrides.carrier.300]: must be <= 127",
    ),
    (ISSUE_TOML + '[logging]\nlevel = "loud"', "[logging].level: must be one of"),
    (ISSUE_TOML + '[agi]\nfastagi_listen = "4573"', "[agi].fastagi_listen: must be host:port"),
    ("\n".join(ISSUE_TOML.splitlines()[:16]), "[targets]: required"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_validation_error_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = load_error(tmp_path, text)
    assert expected in message
    for secret in SECRETS:
        assert secret not in message


def test_empty_targets_table_is_an_error(tmp_path: Path) -> None:
    data = tomllib.loads(ISSUE_TOML)
    data["targets"] = {}
    with pytest.raises(ConfigError, match=r"^x\.toml: \[targets\]: must have at least 1"):
        Settings.from_mapping(data, {}, source=Path("x.toml"))


def test_operator_limit_widens_profiles(tmp_path: Path) -> None:
    text = _add("dialer", "max_retries_limit = 5") + "[profiles.p]\nenabled = true\nmax_retries = 5"
    settings = Settings.load(write(tmp_path, text), {})
    assert settings.profiles["p"].max_retries == 5


def test_unreadable_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        Settings.load(missing, {})
    message = load_error(tmp_path, ISSUE_TOML + "\n[ami\n")
    assert "not valid TOML" in message


def test_secrets_never_shown(tmp_path: Path) -> None:
    settings = Settings.load(write(tmp_path, ISSUE_TOML), {})
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(settings.ami)]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text
    assert "**********" in repr(settings.ami)


@pytest.mark.parametrize(
    "text",
    [
        # a secret that would inject AMI headers, a misspelled secret key, another error
        _sub('"ami-s3cret-value"', '"ami-s3cret-value\\r\\nAction: Originate"'),
        _sub('secret = "ami-s3cret-value"', 'secrte = "ami-s3cret-value"'),
        _sub('token = "api-t0ken-value"', "token = 12345678"),
        _sub("max_cps = 5", "max_cps = 0"),
    ],
)
def test_secrets_never_in_error_messages(tmp_path: Path, text: str) -> None:
    message = load_error(tmp_path, text)
    for secret in (*SECRETS, "12345678"):
        assert secret not in message


def test_secret_from_environment_is_checked_and_not_shown(tmp_path: Path) -> None:
    bad = "env-secret\nAction: Originate"
    message = load_error(tmp_path, ISSUE_TOML, {"AUTORETRY_AMI_SECRET": bad})
    assert "[ami].secret: must not contain CR, LF or NUL" in message
    assert "env-secret" not in message


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings.load(write(tmp_path, ISSUE_TOML), {})
    with pytest.raises(pydantic.ValidationError):
        settings.dialer.max_cps = 1000  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        settings.ami = settings.ami  # type: ignore[misc]


def test_rules_and_overrides_from_config(tmp_path: Path) -> None:
    text = (
        ISSUE_TOML
        + '[calling_hours]\nstart = "22:00"\nend = "06:00"\nweekdays = ["Mon", "fri"]\n'
        + 'holidays = ["2026-12-25"]\ndefault_timezone = "America/New_York"\n'
        + "[retry]\nretry_permanent = true\njitter_s = 30\n"
        + '[outcomes.overrides."*"]\n"18" = {status = "no-answer", permanent = false}\n'
        + '[outcomes.overrides.carrier]\n"1" = {status = "failed", permanent = true}\n'
    )
    settings = Settings.load(write(tmp_path, text), {})
    rules = settings.rules()
    assert rules.window is not None
    assert (rules.window.start_minute, rules.window.end_minute) == (22 * 60, 6 * 60)
    assert rules.window.weekdays == frozenset({0, 4})
    assert rules.window.holidays == frozenset({date(2026, 12, 25)})
    assert rules.default_timezone == "America/New_York"
    assert rules.retry_permanent is True
    assert rules.jitter_s == 0.0 and rules.rng is None  # no random source: exact times
    rng = random.Random(1).random
    jittered = settings.rules(rng=rng)
    assert jittered.jitter_s == 30.0 and jittered.rng is rng
    assert settings.cause_overrides() == {
        "*": {18: CauseOverride(OutcomeStatus.NO_ANSWER, permanent=False)},
        "carrier": {1: CauseOverride(OutcomeStatus.FAILED, permanent=True)},
    }


def test_number_pattern_and_application_target(tmp_path: Path) -> None:
    text = _add("dialer", 'number_pattern = "^[0-9]{3,5}$"\ncaller_id = "\\"Sales\\" <100>"')
    text += '[targets.play]\napplication = "Playback"\ndata = "hello-world"\n'
    settings = Settings.load(write(tmp_path, text), {})
    assert settings.dialer.number_pattern is not None
    assert settings.dialer.number_pattern.fullmatch("1234")
    assert settings.dialer.caller_id == '"Sales" <100>'
    assert settings.targets["play"].application == "Playback"
    assert settings.targets["play"].data == "hello-world"
    assert split_listen("[::1]:4573") == ("::1", 4573)
