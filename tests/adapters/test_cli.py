"""The ``autoretry`` command: in-process ``main([...])`` on real SQLite files, plus real
subprocesses of the installed console script."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ami_listener.cli import main
from ami_listener.core.lifecycle import AttemptEnded, Dispatch, advance, new_call
from ami_listener.core.models import CallRequest, CallStatus, OutcomeStatus
from ami_listener.core.outcomes import AttemptFacts, Outcome
from ami_listener.store import Store

from .test_config import ISSUE_TOML, SECRETS

AUTORETRY = Path(sys.executable).parent / "autoretry"
ME = pwd.getpwuid(os.geteuid()).pw_name
T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
RETRY = '{"enabled": true, "max_retries": 3, "retry_intervals_minutes": [30, 60, 120]}'


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The command reads $AUTORETRY_* and ./autoretry.toml: give every test a clean slate.
    for name in ("CONFIG", "AMI_SECRET", "API_TOKEN", "WEBHOOK_SECRET"):
        monkeypatch.delenv(f"AUTORETRY_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "autoretry.toml"
    path.write_text(ISSUE_TOML)
    path.chmod(0o600)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    if code != 0:
        # Every failure is exactly one line, "autoretry: <reason>", never a traceback.
        assert err.count("\n") == 1 and err.startswith("autoretry: "), err
        assert "Traceback" not in err
    return code, out, err


def seed(conf: Path, *, ended: bool = True) -> Store:
    """A migrated database next to ``conf`` holding call c1 (one failed attempt) and c2."""
    store = Store.open(conf.parent / "autoretry.db")
    request = CallRequest.model_validate(
        {
            "agent_id": "sales-ivr",
            "recipient_phone_number": "+14155550100",
            "retry_config": {"enabled": True, "max_retries": 2},
        }
    )
    for call_id in ("c1", "c2"):
        store.create_call(*new_call(call_id, request, T0))
    store.transition("c1", lambda c: advance(c, Dispatch(at=T0, attempt_id="a1")))
    if ended:
        facts = AttemptFacts(cause=17, cause_txt="User busy", tech_cause=486, dial_status="BUSY")
        outcome = Outcome(OutcomeStatus.BUSY, False, "SIP 486 / Q.850 17 User busy", facts=facts)
        ended_at = T0.replace(second=20)
        store.transition("c1", lambda c: advance(c, AttemptEnded(ended_at, "a1", outcome)))
    return store


# ---- help, version, usage ---------------------------------------------------------------
HELP = [
    [],
    ["migrate"],
    ["check-config"],
    ["calls"],
    ["calls", "list"],
    ["calls", "show"],
    ["calls", "cancel"],
    ["preview"],
]


@pytest.mark.parametrize("argv", HELP, ids=lambda a: " ".join(a) or "top")
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith("usage: autoretry")
    assert len(out.splitlines()) >= 4  # a description and options, not a bare usage line


def test_top_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--help")
    for command in ("migrate", "check-config", "calls", "preview", "--config", "--version"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == "autoretry 0.1.0"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["dance"], "invalid choice: 'dance'"),
        (["calls"], "required: ACTION"),
        (["calls", "show"], "required: ID"),
        (["calls", "list", "--limit", "0"], "must be a whole number >= 1"),
        (["calls", "list", "--status", "happy"], "invalid choice: 'happy'"),
        (["preview"], "required: --retry-config"),
        (["preview", "--retry-config", RETRY, "--failed-at", "yesterday"], "not an ISO 8601"),
        (["preview", "--retry-config", RETRY, "--failed-at", "2026-01-26T10:00"], "UTC offset"),
        (["preview", "--retry-config", RETRY, "--attempt-minutes", "-1"], "minutes >= 0"),
        (["preview", "--retry-config", RETRY, "--status", "completed"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert reason in err
    assert out == ""


# ---- check-config -----------------------------------------------------------------------
def test_check_config_ok(capsys: pytest.CaptureFixture[str], conf: Path) -> None:
    # --offline: no Asterisk here (tests/adapters/test_doctor.py runs the network checks)
    code, out, _ = run(capsys, "check-config", "--offline")  # found as ./autoretry.toml
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"ok config: {conf.name}"
    assert "ok targets: 1 (sales-ivr)" in lines
    assert "ok dialer: originate via PJSIP/{number}@carrier, 10 at once, 5/s" in lines
    assert f"ok database: {conf.parent / 'autoretry.db'}" in lines
    assert "ok calling hours: none (any time)" in lines
    assert f"ok secrets: {conf.name} is private" in lines
    assert "ok webhooks: https://example.test (not posted: --offline)" in lines
    assert not any(line.split(" ", 2)[1] in ("ami:", "dialplan:") for line in lines)
    assert all(line.split(" ", 1)[0] in {"ok", "warn", "FAIL"} for line in lines)
    for secret in SECRETS:
        assert secret not in out


def test_check_config_warns_about_readable_secrets(
    capsys: pytest.CaptureFixture[str], conf: Path
) -> None:
    conf.chmod(0o644)
    code, out, _ = run(capsys, "--config", str(conf), "check-config", "--offline")
    assert code == 0
    assert f"warn secrets: {conf} holds secrets and is mode 644: chmod 600" in out


def test_check_config_fails_on_bad_config(
    capsys: pytest.CaptureFixture[str], conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf.write_text(ISSUE_TOML.replace("max_cps = 5", "max_cps = 0"))
    monkeypatch.setenv("AUTORETRY_CONFIG", str(conf))
    code, out, err = run(capsys, "check-config")  # the network is not tried
    assert (code, err) == (1, "autoretry: 1 check(s) failed\n")
    assert out.strip() == f"FAIL config: {conf}: [dialer].max_cps: must be > 0"


def test_check_config_fails_on_missing_spool(
    capsys: pytest.CaptureFixture[str], conf: Path, tmp_path: Path
) -> None:
    text = ISSUE_TOML.replace('"originate"', '"callfile"')
    text = text.replace('"/var/spool/asterisk"', f'"{tmp_path}/spool"')
    conf.write_text(text.replace("max_cps = 5", f'max_cps = 5\nasterisk_user = "{ME}"'))
    code, out, _ = run(capsys, "check-config", "--offline")
    assert code == 1
    spool = tmp_path / "spool"
    assert f"FAIL spool: {spool}/tmp and {spool}/outgoing missing: mkdir -p " in out
    (spool / "outgoing").mkdir(parents=True)
    (spool / "tmp").mkdir()
    code, out, _ = run(capsys, "check-config", "--offline")
    assert code == 0, out
    assert f"ok spool: {spool}/outgoing and {spool}/tmp on one filesystem" in out


def test_missing_config_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "none.toml"), "migrate")
    assert code == 1
    assert err.startswith(f"autoretry: {tmp_path / 'none.toml'}: cannot read")


# ---- migrate ----------------------------------------------------------------------------
def test_migrate_applies_then_reports_up_to_date(
    capsys: pytest.CaptureFixture[str], conf: Path
) -> None:
    code, out, _ = run(capsys, "migrate")
    assert code == 0
    assert out.splitlines()[0].startswith("applied ")
    assert out.splitlines()[-1] == f"migrated {conf.parent / 'autoretry.db'}"
    assert (conf.parent / "autoretry.db").exists()
    code, out, _ = run(capsys, "migrate")
    assert code == 0
    assert out.strip() == f"schema up to date: {conf.parent / 'autoretry.db'}"


# ---- calls ------------------------------------------------------------------------------
def test_calls_without_database(capsys: pytest.CaptureFixture[str], conf: Path) -> None:
    code, _, err = run(capsys, "calls", "list")
    assert code == 1
    assert "no database at" in err and "autoretry migrate" in err
    assert not (conf.parent / "autoretry.db").exists()


def test_calls_list(capsys: pytest.CaptureFixture[str], conf: Path) -> None:
    run(capsys, "migrate")
    code, out, _ = run(capsys, "calls", "list")
    assert (code, out.strip()) == (0, "no calls")
    seed(conf).close()
    code, out, _ = run(capsys, "calls", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "STATUS", "TO", "TARGET", "RETRIES", "NEXT", "DIAL", "UPDATED"]
    assert sorted(row.split()[0] for row in rows) == ["c1", "c2"]
    c1 = next(row.split() for row in rows if row.startswith("c1"))
    assert c1[1:5] == ["scheduled", "+14155550100", "sales-ivr", "1/2"]
    code, out, _ = run(capsys, "calls", "list", "--status", "queued")
    assert [row.split()[0] for row in out.splitlines()[1:]] == ["c2"]
    code, out, _ = run(capsys, "calls", "list", "--limit", "1")
    assert len(out.splitlines()) == 2
    code, out, _ = run(capsys, "calls", "list", "--status", "busy")
    assert out.strip() == "no calls with status busy"


def test_calls_show_timeline(capsys: pytest.CaptureFixture[str], conf: Path) -> None:
    seed(conf).close()
    code, out, _ = run(capsys, "calls", "show", "c1")
    assert code == 0
    assert out.startswith("call c1: sales-ivr -> +14155550100\n")
    assert "status     scheduled, retries 1/2" in out
    assert "attempt 1  2026-01-26T10:00:00Z .. 2026-01-26T10:00:20Z  busy" in out
    assert "cause     Q.850 17 (User busy), SIP 486, DIALSTATUS BUSY" in out
    assert "reason    SIP 486 / Q.850 17 User busy" in out
    decision = next(line for line in out.splitlines() if "decision" in line)
    assert len(decision.split("decision", 1)[1].strip()) > 0
    assert "next dial  2026-01-26T10:" in out
    code, out, _ = run(capsys, "calls", "show", "c2")
    assert "no attempts yet" in out


def test_calls_show_unknown(capsys: pytest.CaptureFixture[str], conf: Path) -> None:
    seed(conf).close()
    code, _, err = run(capsys, "calls", "show", "nope")
    assert (code, err) == (1, "autoretry: no call nope\n")


def test_calls_cancel(capsys: pytest.CaptureFixture[str], conf: Path) -> None:
    seed(conf).close()
    code, out, _ = run(capsys, "calls", "cancel", "c2")
    assert (code, out) == (0, "canceled c2\n")
    with Store.open(conf.parent / "autoretry.db") as store:
        assert store.get_call("c2").status is CallStatus.CANCELED
    code, _, err = run(capsys, "calls", "cancel", "c2")  # already final
    assert code == 1 and err.startswith("autoretry: cannot cancel call c2: ")
    code, _, err = run(capsys, "calls", "cancel", "nope")
    assert (code, err) == (1, "autoretry: no call nope\n")


def test_calls_cancel_live_call_lets_attempt_finish(
    capsys: pytest.CaptureFixture[str], conf: Path
) -> None:
    seed(conf, ended=False).close()
    code, out, _ = run(capsys, "calls", "cancel", "c1", "--reason", "customer asked")
    assert code == 0 and out.startswith("cancel requested for c1")
    with Store.open(conf.parent / "autoretry.db") as store:
        call = store.get_call("c1")
    assert call.status is CallStatus.INITIATED and call.cancel_requested == "canceled"


# ---- preview ----------------------------------------------------------------------------
def test_preview_without_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert not (tmp_path / "autoretry.toml").exists()
    argv = ["preview", "--retry-config", RETRY, "--failed-at", "2026-01-26T10:00:00Z"]
    code, out, _ = run(capsys, *argv, "--timezone", "UTC", "--status", "busy")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "first attempt fails busy at 2026-01-26T10:00:00Z; recipient zone UTC"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["retry", "1:", "2026-01-26T10:30:00Z"],
        ["retry", "2:", "2026-01-26T11:30:00Z"],
        ["retry", "3:", "2026-01-26T13:30:00Z"],
    ]


def test_preview_zone_from_number_and_attempt_minutes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["preview", "--retry-config", RETRY, "--failed-at", "2026-01-26T10:00:00+00:00"]
    code, out, _ = run(capsys, *argv, "--number", "+4930901820", "--attempt-minutes", "1")
    assert code == 0
    assert "recipient zone Europe/Berlin" in out
    assert "retry 2: 2026-01-26T11:31:00Z  Mon 2026-01-26 12:31 CET" in out


def test_preview_applies_calling_hours_and_limit_from_config(
    capsys: pytest.CaptureFixture[str], conf: Path
) -> None:
    conf.write_text(
        ISSUE_TOML.replace("max_cps = 5", "max_cps = 5\nmax_retries_limit = 5")
        + '[calling_hours]\nstart = "09:00"\nend = "20:00"\ndefault_timezone = "Europe/Berlin"\n'
    )
    config = '{"enabled": true, "max_retries": 5, "retry_intervals_minutes": [30]}'
    argv = ["preview", "--retry-config", config, "--failed-at", "2026-01-26T18:20:00Z"]
    code, out, _ = run(capsys, *argv)  # no --number, no --timezone: the default zone
    assert code == 0
    lines = out.splitlines()
    assert "recipient zone Europe/Berlin" in lines[0]
    assert lines[1] == "retry 1: 2026-01-26T18:50:00Z  Mon 2026-01-26 19:50 CET"
    # 20:20 local is after 20:00: the next window opens at 09:00 the next day.
    assert lines[2] == (
        "retry 2: 2026-01-27T08:00:00Z  Tue 2026-01-27 09:00 CET  (moved into calling hours)"
    )
    assert lines[5] == "retry 5: 2026-01-27T09:30:00Z  Tue 2026-01-27 10:30 CET"
    assert len(lines) == 6  # five retries: the operator widened the limit
    conf.write_text(conf.read_text() + "[retry]\njitter_s = 30\n")
    code, out, _ = run(capsys, *argv)
    assert out.splitlines()[1:6] == lines[1:]  # jitter is left out: the times stay exact
    assert out.splitlines()[-1] == "each time may be up to 30 s later ([retry].jitter_s)"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--retry-config", "{bad"], "--retry-config: Invalid JSON"),
        (
            ["--retry-config", '{"max_retries": 5}'],
            "max_retries: max_retries must be between 1 and 3",
        ),
        (["--retry-config", '{"retries": 1}'], "--retry-config: retries: unknown field"),
        (["--retry-config", RETRY, "--number", "12"], "phone number '12' is not E.164"),
        (["--retry-config", RETRY, "--timezone", "Mars/Base"], "'Mars/Base' is not a known"),
    ],
)
def test_preview_bad_input(
    capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    code, _, err = run(capsys, "preview", *args)
    assert code == 2
    assert reason in err


def test_preview_disabled_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "preview", "--retry-config", "{}", "--timezone", "UTC")
    assert code == 0
    assert out.splitlines()[1] == "no retry (retry_config.enabled is false)"


def test_preview_with_broken_config_file_fails(
    capsys: pytest.CaptureFixture[str], conf: Path
) -> None:
    conf.write_text("[ami\n")
    code, _, err = run(capsys, "preview", "--retry-config", RETRY)
    assert code == 1 and "not valid TOML" in err


# ---- the installed console script -------------------------------------------------------
def test_console_script_help() -> None:
    result = subprocess.run(
        [str(AUTORETRY), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: autoretry")
    assert "check-config" in result.stdout and "preview" in result.stdout


def test_console_script_bad_input_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(AUTORETRY), "preview", "--retry-config", "{bad", "--timezone", "UTC"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("autoretry: ")


def test_database_commands_do_not_need_the_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An operator may read the config but not the secrets file (systemd's EnvironmentFile).
    config = tmp_path / "c.toml"
    config.write_text(
        '[ami]\nusername = "u"\n[database]\npath = "a.db"\n[dialer]\n'
        'channel = "PJSIP/{number}@x"\n[targets.t]\ncontext = "c"\nextension = "s"\n'
    )
    assert main(["--config", str(config), "migrate"]) == 0
    assert main(["calls", "list", "--config", str(config)]) == 0
    assert "no calls" in capsys.readouterr().out
    assert main(["--config", str(config), "serve"]) == 1
    assert "[ami].secret: required" in capsys.readouterr().err
