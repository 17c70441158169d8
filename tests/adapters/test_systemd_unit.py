"""systemd/: the unit, the default config and the secrets file agree with the code.

Static checks (PID 1 is not systemd where the tests run): the unit parses, runs our CLI
with arguments it accepts, has the hardening and reload settings the operator guide
promises, and the default config loads and lists every key the code knows.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from pydantic import BaseModel

from ami_listener import config, config_sections
from ami_listener.cli import build_parser
from ami_listener.config import Settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd/autoretry.service"
DEFAULT_CONFIG = ROOT / "systemd/autoretry.toml"
ENV_FILE = ROOT / "systemd/autoretry.env"
VENV_BIN = "/opt/autoretry/bin/autoretry"
CONFIG_PATH = "/etc/autoretry/autoretry.toml"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd keys may repeat), comments and blanks dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"cannot parse {raw!r}"
        assert re.fullmatch(r"[A-Za-z]+", key), f"bad key {key!r}"
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    unit = parse_unit(UNIT)
    assert set(unit) == {"Unit", "Service", "Install"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    return unit["Service"]


def test_runs_as_its_own_user_and_restarts_on_failure(service: dict[str, list[str]]) -> None:
    assert service["User"] == ["autoretry"]
    assert service["Group"] == ["autoretry"]
    assert service["Restart"] == ["on-failure"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["EnvironmentFile"] == ["/etc/autoretry/autoretry.env"]


@pytest.mark.parametrize("key", ["ExecStart", "ExecStartPre"])
def test_exec_lines_are_commands_our_cli_accepts(service: dict[str, list[str]], key: str) -> None:
    (line,) = service[key]
    argv = shlex.split(line)
    assert argv[0] == VENV_BIN
    args = build_parser().parse_args(argv[1:])  # SystemExit (a failure) if it does not parse
    assert str(args.config) == CONFIG_PATH
    assert args.command == ("serve" if key == "ExecStart" else "check-config")


def test_hardening(service: dict[str, list[str]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert service["SystemCallFilter"][0] == "@system-service"
    assert any(v.startswith("~@privileged") for v in service["SystemCallFilter"])


def test_writable_paths_match_the_default_config(service: dict[str, list[str]]) -> None:
    settings = Settings.load(
        DEFAULT_CONFIG, {"AUTORETRY_AMI_SECRET": "a", "AUTORETRY_API_TOKEN": "t"}
    )
    # StateDirectory=autoretry is /var/lib/autoretry, writable although ProtectSystem=strict.
    assert service["StateDirectory"] == ["autoretry"]
    assert settings.database.path.parent == Path("/var/lib/autoretry")
    assert service["WorkingDirectory"] == ["/var/lib/autoretry"]
    writable = service["ReadWritePaths"][0].split()
    spool = settings.dialer.spool_dir
    assert writable == [f"-{spool / 'tmp'}", f"-{spool / 'outgoing'}"]


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_default_config_lists_every_key() -> None:
    text = DEFAULT_CONFIG.read_text()
    # A key counts when it starts a line, live or commented out ("# key = default").
    present = set(re.findall(r"^(?:# )?([a-z_]+) = ", text, re.M))
    sections = {
        "ami": config_sections.AmiSettings,
        "database": config_sections.DatabaseSettings,
        "api": config_sections.ApiSettings,
        "dialer": config_sections.DialerSettings,
        "targets": config_sections.TargetSettings,
        "calling_hours": config_sections.CallingHoursSettings,
        "retry": config_sections.RetrySettings,
        "webhooks": config_sections.WebhooksSettings,
        "agi": config_sections.AgiSettings,
        "logging": config_sections.LoggingSettings,
    }
    assert set(sections) | {"profiles", "outcomes"} == _fields(Settings)
    for name, model in sections.items():
        assert re.search(rf"^(# )?\[{name}[.\]]", text, re.M), name
        keys = _fields(model) - {"default"}  # [retry.default] is a table of its own
        missing = keys - present
        assert not missing, f"[{name}] keys not in {DEFAULT_CONFIG.name}: {missing}"
    for table in ("retry.default", "profiles.", "outcomes.overrides."):
        assert f"[{table}" in text


def test_default_config_keeps_no_secrets_and_loads() -> None:
    text = DEFAULT_CONFIG.read_text()
    assert not re.search(r"^(secret|token) *=", text, re.M)
    env = {"AUTORETRY_AMI_SECRET": "s", "AUTORETRY_API_TOKEN": "t"}
    settings = Settings.load(DEFAULT_CONFIG, env)
    assert settings.api.listen.startswith("127.0.0.1:")  # loopback unless the operator says
    assert settings.ami.use_filters is False  # manager.conf's user has no "system" write
    assert settings.ami.secret is not None
    assert settings.ami.secret.get_secret_value() == "s"


def test_env_file_names_exactly_the_secrets_the_code_reads() -> None:
    names = set(re.findall(r"^#?(AUTORETRY_[A-Z_]+)=", ENV_FILE.read_text(), re.M))
    assert names == set(config.SECRET_ENV.values())
