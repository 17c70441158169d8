"""``autoretry check-config``, the doctor, against the AMI simulator over real TCP and a
real aiohttp receiver on 127.0.0.1; plus the simulator's ListCommands/Command/privileges.

The CLI runs ``asyncio.run`` itself, so it runs in a thread here while the simulator and
the receiver serve from the test's loop.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ami_listener.cli import main
from ami_listener.doctor import TEST_EVENT_ID
from ami_listener.doctor_ami import AmiProbe, header, output
from ami_listener.doctor_local import local_checks
from ami_listener.errors import AmiError
from ami_listener.simulator import Simulator
from ami_listener.webhooks_sign import SIGNATURE_HEADER, verify

from .webhook_receiver import Receiver, scripted

SECRET = "ami-s3cret-value"
HOOK_SECRET = "hook-s3cret-value"
ME = pwd.getpwuid(os.geteuid()).pw_name
WAIT = 10.0


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CONFIG", "AMI_SECRET", "API_TOKEN", "WEBHOOK_SECRET"):
        monkeypatch.delenv(f"AUTORETRY_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    for name in ("tmp", "outgoing"):
        (tmp_path / "spool" / name).mkdir(parents=True)
    return tmp_path / "spool"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def config(
    tmp_path: Path,
    *,
    ami_port: int,
    url: str | None,
    spool: Path,
    secret: str = SECRET,
    asterisk_user: str = ME,
    extra_ami: str = "",
) -> Path:
    hooks = f'[webhooks]\nurl = "{url}"\nsecret = "{HOOK_SECRET}"\ntimeout_s = 5\n' if url else ""
    text = f"""\
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "autoretry"
secret = "{secret}"
connect_timeout_s = 5
{extra_ami}
[api]
token = "api-t0ken-value-long-enough"
[dialer]
method = "callfile"
channel = "PJSIP/{{number}}@carrier"
spool_dir = "{spool}"
asterisk_user = "{asterisk_user}"
[targets.sales-ivr]
context = "autoretry-connect"
extension = "s"
{hooks}"""
    path = tmp_path / "autoretry.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


async def doctor(capsys: pytest.CaptureFixture[str], conf: Path, *args: str) -> tuple[int, str]:
    code = await asyncio.wait_for(
        asyncio.to_thread(main, ["--config", str(conf), "check-config", *args]), WAIT
    )
    out, err = capsys.readouterr()
    for secret in (SECRET, HOOK_SECRET, "api-t0ken-value-long-enough"):
        assert secret not in out + err
    lines = out.splitlines()
    assert all(line.split(" ", 1)[0] in {"ok", "warn", "FAIL"} for line in lines), out
    failed = sum(line.startswith("FAIL ") for line in lines)
    assert err == (f"autoretry: {failed} check(s) failed\n" if failed else "")
    return code, out


def line(out: str, name: str) -> str:
    found = [x for x in out.splitlines() if x.split(" ", 1)[1].startswith(f"{name}:")]
    assert len(found) == 1, out
    return found[0]


def sim(**options: Any) -> Simulator:
    return Simulator(username="autoretry", secret=SECRET, **options)


# ---- the acceptance cases ---------------------------------------------------------------
async def test_good_config_all_ok(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path, receiver: Receiver
) -> None:
    async with sim(contexts={"autoretry-connect", "from-internal"}) as s:
        conf = config(tmp_path, ami_port=s.port, url=receiver.url, spool=spool)
        code, out = await doctor(capsys, conf)
    assert code == 0, out
    assert all(x.startswith("ok ") for x in out.splitlines()), out
    assert line(out, "ami") == (
        f"ok ami: logged in to 127.0.0.1:{s.port} as autoretry (Asterisk Call Manager/9.0.0);"
        " may Originate"
    )
    assert (
        line(out, "events") == "ok events: user autoretry receives call,dialplan,user,system events"
    )
    assert line(out, "dialplan") == "ok dialplan: contexts exist: autoretry-connect"
    assert line(out, "spool") == (
        f"ok spool: {spool}/outgoing and {spool}/tmp on one filesystem, writable by us and by {ME}"
    )
    assert line(out, "webhooks") == (
        f"ok webhooks: http://127.0.0.1:{receiver.port} accepted a signed test event (200)"
    )
    names = [x.split(" ", 1)[1].split(":", 1)[0] for x in out.splitlines()]
    assert names == [
        "config",
        "targets",
        "dialer",
        "spool",
        "database",
        "calling hours",
        "api",
        "secrets",
        "ami",
        "events",
        "dialplan",
        "webhooks",
    ]
    # The test event is what the sender posts: JSON, our headers, a valid signature.
    (got,) = receiver.requests
    assert got.headers["X-Autoretry-Event"] == "test"
    assert got.headers["X-Autoretry-Event-Id"] == TEST_EVENT_ID
    assert got.headers["Content-Type"] == "application/json"
    assert verify(
        HOOK_SECRET.encode(), got.headers[SIGNATURE_HEADER], got.body, now=int(time.time())
    )
    assert not verify(b"other", got.headers[SIGNATURE_HEADER], got.body, now=int(time.time()))
    assert json.loads(got.body)["status"] == "test"


async def test_wrong_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path, receiver: Receiver
) -> None:
    async with sim() as s:
        conf = config(tmp_path, ami_port=s.port, url=receiver.url, spool=spool, secret="nope")
        code, out = await doctor(capsys, conf)
    assert code == 1
    assert line(out, "ami").startswith(
        f"FAIL ami: login as 'autoretry' at 127.0.0.1:{s.port} refused (Authentication failed): "
        "check [ami].username and secret"
    )
    assert "nope" not in out
    assert "events:" not in out and "dialplan:" not in out  # nothing to ask without a session
    assert line(out, "webhooks").startswith("ok webhooks:")  # the other checks still run


async def test_unwritable_spool(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path, receiver: Receiver
) -> None:
    # Owned by us, mode 755: we may write, "nobody" (Asterisk here) may not.
    for name in ("tmp", "outgoing"):
        (spool / name).chmod(0o755)
    async with sim() as s:
        conf = config(
            tmp_path, ami_port=s.port, url=receiver.url, spool=spool, asterisk_user="nobody"
        )
        code, out = await doctor(capsys, conf)
    assert code == 1
    assert line(out, "spool") == (
        f"FAIL spool: {spool}/outgoing is not writable by nobody ({ME}:"
        f"{line_group(spool / 'outgoing')}, mode 755), so Asterisk cannot remove call files: "
        f"chown nobody: {spool}/outgoing"
    )
    assert [x for x in out.splitlines() if x.startswith("FAIL")] == [line(out, "spool")]


def line_group(path: Path) -> str:
    return grp.getgrgid(path.stat().st_gid).gr_name


async def test_missing_spool(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, receiver: Receiver
) -> None:
    async with sim() as s:
        conf = config(tmp_path, ami_port=s.port, url=receiver.url, spool=tmp_path / "nospool")
        code, out = await doctor(capsys, conf)
    assert code == 1
    where = tmp_path / "nospool"
    assert line(out, "spool") == (
        f"FAIL spool: {where}/tmp and {where}/outgoing missing: mkdir -p {where}/tmp "
        f"{where}/outgoing && chown {ME}: {where}/tmp {where}/outgoing"
    )


async def test_unknown_context(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path, receiver: Receiver
) -> None:
    async with sim(contexts={"from-internal"}) as s:
        conf = config(tmp_path, ami_port=s.port, url=receiver.url, spool=spool)
        code, out = await doctor(capsys, conf)
    assert code == 1
    assert line(out, "dialplan").startswith(
        "FAIL dialplan: no context 'autoretry-connect' (target sales-ivr) in the dialplan: "
        "define it"
    )
    assert line(out, "ami").startswith("ok ami:")


async def test_unreachable_webhook(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    port = closed_port()
    async with sim() as s:
        conf = config(tmp_path, ami_port=s.port, url=f"http://127.0.0.1:{port}/hook", spool=spool)
        code, out = await doctor(capsys, conf)
    assert code == 1
    webhooks = line(out, "webhooks")
    assert webhooks.startswith(f"FAIL webhooks: cannot post to http://127.0.0.1:{port}: ")
    assert webhooks.endswith("is the receiver up and [webhooks].url right?")
    assert "ClientConnectorError" in webhooks


def test_help_mentions_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--offline" in out and "webhook" in out


# ---- more ways to be wrong ----------------------------------------------------------------
async def test_webhook_answering_500(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    async with Receiver(script=scripted("500")) as r, sim() as s:
        conf = config(tmp_path, ami_port=s.port, url=r.url, spool=spool)
        code, out = await doctor(capsys, conf)
    assert code == 1
    assert line(out, "webhooks").startswith(
        f"FAIL webhooks: http://127.0.0.1:{r.port} answered HTTP 500 to a test event"
    )


async def test_no_webhook_url(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    async with sim() as s:
        code, out = await doctor(capsys, config(tmp_path, ami_port=s.port, url=None, spool=spool))
    assert code == 0
    assert line(out, "webhooks") == "ok webhooks: no default URL"


async def test_asterisk_down(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    port = closed_port()
    code, out = await doctor(capsys, config(tmp_path, ami_port=port, url=None, spool=spool))
    assert code == 1
    assert line(out, "ami").startswith(f"FAIL ami: cannot connect to 127.0.0.1:{port}: ")
    assert line(out, "ami").endswith("this port/bindaddr in manager.conf?")


async def test_offline_skips_the_network(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?token=t0p"
    code, out = await doctor(
        capsys, config(tmp_path, ami_port=closed_port(), url=url, spool=spool), "--offline"
    )
    assert code == 0, out
    assert "ami:" not in out and "dialplan:" not in out
    assert line(out, "webhooks").endswith("(not posted: --offline)")
    assert "t0p" not in out  # the query may carry a token


async def test_user_may_not_originate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    async with sim(write="call,reporting") as s:
        code, out = await doctor(capsys, config(tmp_path, ami_port=s.port, url=None, spool=spool))
    assert code == 1
    assert line(out, "ami") == (
        "FAIL ami: user autoretry may not Originate: add `write = originate` (and call) "
        "to [autoretry] in manager.conf"
    )
    assert line(out, "dialplan") == "warn dialplan: cannot check (user lacks write=command)"
    assert line(out, "events").startswith("warn events: cannot check (user lacks write=command)")


async def test_user_missing_read_classes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    async with sim(read="system,user") as s:
        code, out = await doctor(capsys, config(tmp_path, ami_port=s.port, url=None, spool=spool))
    assert code == 1
    assert line(out, "events").startswith(
        "FAIL events: user autoretry does not receive call,dialplan events: "
        "set read = call,dialplan,user,system in [autoretry]"
    )


async def test_least_privilege_user_passes_with_warnings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    # asterisk-conf/manager.conf: no command, no system (so no Filter: use_filters = false).
    options = {"read": "call,dialplan,user,system", "write": "originate,call,reporting"}
    async with sim(**options) as s:
        conf = config(
            tmp_path, ami_port=s.port, url=None, spool=spool, extra_ami="use_filters = false"
        )
        code, out = await doctor(capsys, conf)
    assert code == 0, out
    assert line(out, "ami").startswith("ok ami:")
    assert line(out, "events").startswith("warn events: cannot check (user lacks write=command)")
    assert line(out, "dialplan") == "warn dialplan: cannot check (user lacks write=command)"


async def test_filter_not_allowed_warns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spool: Path
) -> None:
    async with sim(write="originate,call,reporting,command") as s:
        code, out = await doctor(capsys, config(tmp_path, ami_port=s.port, url=None, spool=spool))
    assert code == 0, out
    assert line(out, "ami").startswith(
        "warn ami: user autoretry may not Filter (write = system): set [ami] use_filters = false"
    )


# ---- the simulator's side ---------------------------------------------------------------
@pytest.fixture
async def probe_for() -> AsyncIterator[Any]:
    opened: list[AmiProbe] = []

    async def open_(s: Simulator) -> AmiProbe:
        probe = await AmiProbe.open(s.host, s.port, WAIT)
        opened.append(probe)
        reply = await probe.action("Login", [("Username", "autoretry"), ("Secret", SECRET)])
        assert header(reply, "Response") == "Success"
        return probe

    yield open_
    for probe in opened:
        await probe.close()


async def test_sim_list_commands_follows_write_classes(probe_for: Any) -> None:
    async with sim(write="originate,call") as s:
        probe = await probe_for(s)
        reply = await probe.action("ListCommands")
    assert reply[0] == ("Response", "Success")
    assert header(reply, "Message") == ""  # astman_start_ack: no Message header
    listed = dict(reply[2:])
    assert listed["Originate"] == "Originate a call. (Priv: originate,all)"
    assert listed["Hangup"] == "Hangup channel. (Priv: system,call,all)"
    assert listed["Ping"] == "Keepalive command. (Priv: <none>)"
    assert "Command" not in listed and "CoreShowChannels" not in listed
    assert list(listed) == sorted(listed, key=str.lower)


async def test_sim_refuses_actions_outside_write_classes(probe_for: Any) -> None:
    async with sim(write="call") as s:
        probe = await probe_for(s)
        reply = await probe.action("Command", [("Command", "core show version")])
        assert (header(reply, "Response"), header(reply, "Message")) == (
            "Error",
            "Permission denied",
        )
        reply = await probe.action("Originate", [("Channel", "PJSIP/100@trunk")])
        assert header(reply, "Message") == "Permission denied"
        assert s.originates == []
        assert header(await probe.action("Ping"), "Response") == "Success"


async def test_sim_dialplan_show(probe_for: Any) -> None:
    async with sim(contexts={"autoretry-connect"}) as s:
        probe = await probe_for(s)
        good = await probe.action("Command", [("Command", "dialplan show autoretry-connect")])
        bad = await probe.action("Command", [("Command", "dialplan show nope")])
        unknown = await probe.action("Command", [("Command", "frobnicate all")])
    assert header(good, "Response") == "Success"
    assert header(good, "Message") == "Command output follows"
    assert output(good) == [
        "[ Context 'autoretry-connect' created by 'pbx_config' ]",
        "",
        "-= 0 extensions (0 priorities) in 1 context. =-",
    ]
    assert header(bad, "Response") == "Error"
    assert output(bad) == [
        "There is no existence of 'nope' context",
        "Command 'dialplan show nope' failed.",
    ]
    assert header(unknown, "Response") == "Error"
    assert output(unknown)[0].startswith("No such command 'frobnicate all'")


async def test_sim_manager_show_user(probe_for: Any) -> None:
    async with sim(read="call,dialplan", write="all") as s:
        probe = await probe_for(s)
        reply = await probe.action("Command", [("Command", "manager show user autoretry")])
    lines = output(reply)
    assert "         read perm: call,dialplan" in lines
    assert any(
        x.startswith("        write perm: system,call,") and x.endswith(",all") for x in lines
    )
    assert "            secret: <Set>" in lines
    assert SECRET not in " ".join(lines)


@pytest.mark.parametrize(("read", "delivered"), [("call", False), ("user,call", True)])
async def test_sim_read_classes_drop_events(probe_for: Any, read: str, delivered: bool) -> None:
    async with sim(read=read) as s:
        probe = await probe_for(s)
        reply = await probe.action("UserEvent", [("UserEvent", "AutoretryAMD"), ("X", "1")])
        assert header(reply, "Response") == "Success"
        # The event is sent right after that reply; the Ping's reply comes after it.
        assert header(await probe.action("Ping"), "Ping") == "Pong"
    names = [header(e, "Event") for e in probe.events]
    assert ("UserEvent" in names) is delivered, names


async def test_probe_refuses_header_injection() -> None:
    async with sim() as s:
        probe = await AmiProbe.open(s.host, s.port, WAIT)
        try:
            with pytest.raises(AmiError, match="CR, LF or NUL"):
                await probe.action("Login", [("Username", "a\r\nAction: Originate")])
        finally:
            await probe.close()


def test_placeholder_secrets_are_flagged_by_name_only(tmp_path: Path) -> None:
    config = tmp_path / "weak.toml"
    config.write_text(
        '[ami]\nusername = "u"\nsecret = "change-me"\n[api]\ntoken = "short"\n'
        '[dialer]\nchannel = "PJSIP/{number}@x"\n[targets.t]\ncontext = "c"\nextension = "s"\n'
    )
    config.chmod(0o600)
    settings, checks = local_checks(config, {})
    assert settings is not None
    (weak,) = [c for c in checks if c.name == "secret strength"]
    assert weak.level == "warn" and "[ami].secret" in weak.detail and "[api].token" in weak.detail
    assert "change-me" not in weak.detail and "short" not in weak.detail
