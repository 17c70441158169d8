"""The AGI hooks, run for real: the ``agi/`` scripts as subprocesses and the FastAGI
server over TCP, with the test playing Asterisk's side (tests/adapters/agi_peer.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ami_listener.config_sections import AgiSettings, TargetSettings
from ami_listener.fastagi import FastAgiServer
from tests.adapters.agi_peer import Channel, agi_env, play

ROOT = Path(__file__).resolve().parents[2]
OURS = {"AUTORETRY_CALL_ID": "c1", "AUTORETRY_ATTEMPT_ID": "a1", "AUTORETRY_ATTEMPT": "2"}
Runner = Callable[[str, list[str], Channel], Awaitable[None]]


async def run_script(route: str, args: list[str], channel: Channel) -> None:
    """``AGI(autoretry-<route>.py,args...)``: a new Python process, as Asterisk runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "agi" / f"autoretry-{route}.py"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def write(data: bytes) -> None:
        stdin.write(data)
        await stdin.drain()

    async def sighup() -> None:
        proc.send_signal(signal.SIGHUP)

    await write(agi_env(f"autoretry-{route}.py", args, network=False))
    await asyncio.wait_for(play(channel, stdout.readline, write, sighup), 20)
    stdin.close()
    assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    targets = {
        "sales": TargetSettings(
            context="autoretry-connect",
            extension="sales",
            amd=True,
            greeting_ms=1200,
            machine_action="message",
            machine_message="custom/sorry",
        )
    }
    async with FastAgiServer(
        AgiSettings(), targets, header_timeout_s=0.5, listen=("127.0.0.1", 0)
    ) as srv:
        yield srv


async def run_fastagi(
    srv: FastAgiServer, route: str, args: list[str], channel: Channel, extension: str = "s"
) -> None:
    reader, writer = await asyncio.open_connection(*srv.address)

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    await write(agi_env(route, args, network=True, extension=extension))
    await asyncio.wait_for(play(channel, reader.readline, write), 20)
    writer.close()
    await writer.wait_closed()


@pytest.fixture(params=["process", "fastagi"])
def run(request: pytest.FixtureRequest, server: FastAgiServer) -> Runner:
    if request.param == "process":
        return run_script

    async def fast(route: str, args: list[str], channel: Channel) -> None:
        await run_fastagi(server, route, args, channel)

    return fast


def event_fields(body: str) -> dict[str, str]:
    name, *fields = body.split(",")
    return {"UserEvent": name} | dict(f.split(": ", 1) for f in fields)


async def test_human_goes_on_to_the_target(run: Runner) -> None:
    channel = Channel(dict(OURS), amd=("HUMAN", "HUMAN-800-800"))
    await run("amd", [], channel)
    (event,) = channel.events
    assert event_fields(event) == {
        "UserEvent": "AutoretryAMD",
        "AMDSTATUS": "HUMAN",
        "AMDCAUSE": "HUMAN-800-800",
        **OURS,
    }
    assert "HANGUP" not in channel.commands
    assert channel.variables["AUTORETRY_AMD"] == "HUMAN"


async def test_machine_is_hung_up(run: Runner) -> None:
    channel = Channel(dict(OURS), amd=("MACHINE", "LONGGREETING-1500-1500"))
    await run("amd", ["initial_silence=2000", "total_analysis_time=4000"], channel)
    assert channel.commands[1] == 'EXEC AMD "2000,,,4000"'
    assert event_fields(channel.events[0])["AMDSTATUS"] == "MACHINE"
    assert channel.commands[-1] == "HANGUP"
    assert not any(c.startswith("EXEC Playback") for c in channel.commands)


async def test_machine_gets_the_message_first(run: Runner) -> None:
    channel = Channel(dict(OURS), amd=("MACHINE", "INITIALSILENCE-2500-2500"))
    await run("amd", ["machine_action=message", "machine_message=custom/sorry"], channel)
    assert channel.commands[-3:] == [
        'EXEC WaitForSilence "1500,1,30"',
        'EXEC Playback "custom/sorry"',
        "HANGUP",
    ]


@pytest.mark.parametrize(("args", "hung_up"), [([], False), (["notsure=machine"], True)])
async def test_notsure_counts_as_human_unless_told(
    run: Runner, args: list[str], hung_up: bool
) -> None:
    channel = Channel(dict(OURS), amd=("NOTSURE", "TOOLONG-5000"))
    await run("amd", args, channel)
    assert event_fields(channel.events[0])["AMDSTATUS"] == "NOTSURE"
    assert ("HANGUP" in channel.commands) is hung_up


async def test_hangup_during_amd_is_published_and_nothing_else(run: Runner) -> None:
    channel = Channel(dict(OURS), hangup_in_amd=True)
    await run("amd", [], channel)
    assert event_fields(channel.events[0])["AMDSTATUS"] == "HANGUP"
    assert "HANGUP" not in channel.commands  # no 511 from a command on the dead channel
    assert not any(c.startswith("EXEC Playback") for c in channel.commands)


async def test_not_our_call_is_left_alone(run: Runner) -> None:
    channel = Channel({"AUTORETRY_ATTEMPT_ID": "a1,Evil: 1"})
    await run("amd", [], channel)
    assert channel.events == []
    assert not any(c.startswith("EXEC AMD") for c in channel.commands)
    assert channel.variables["AUTORETRY_HOOK"] == "SKIPPED"


@pytest.mark.parametrize(
    "bad", ["greeting=abc", "greeting=999999", "machine_message=../../etc/x", "x\ry", "bogus=1"]
)
async def test_hostile_arguments_are_refused(run: Runner, bad: str) -> None:
    channel = Channel(dict(OURS))
    await run("amd", [bad], channel)
    assert channel.variables["AUTORETRY_HOOK"] == "ERROR"
    assert not any(c.startswith("EXEC") for c in channel.commands)


async def test_hostile_channel_values_cannot_add_event_fields(run: Runner) -> None:
    channel = Channel(dict(OURS), amd=("MACHINE", "X,Evil: 1|y\\"))
    await run("amd", [], channel)
    fields = event_fields(channel.events[0])
    assert fields["AMDCAUSE"] == "XEvil1y"
    assert "Evil" not in fields


async def test_manage_publishes_a_failed_call(run: Runner) -> None:
    channel = Channel(
        {"DIALSTATUS": "BUSY", "HANGUPCAUSE": "17"},
        tech_causes={"PJSIP/carrier-00000001": "SIP 486 Busy Here"},
    )
    await run("manage", ["default", "+14155550100", "sales"], channel)
    assert event_fields(channel.events[0]) == {
        "UserEvent": "AutoretryManage",
        "PROFILE": "default",
        "NUMBER": "+14155550100",
        "TARGET": "sales",
        "DIALSTATUS": "BUSY",
        "HANGUPCAUSE": "17",
        "TECHCAUSE": "486",
    }


@pytest.mark.parametrize(
    ("variables", "status"),
    [({"DIALSTATUS": "ANSWER"}, "ANSWERED"), ({**OURS, "DIALSTATUS": "BUSY"}, "OURS")],
)
async def test_manage_ignores_answered_and_our_own_calls(
    run: Runner, variables: dict[str, str], status: str
) -> None:
    channel = Channel(dict(variables))
    await run("manage", ["default"], channel)
    assert channel.events == []
    assert channel.variables["AUTORETRY_HOOK"] == status


async def test_report_from_the_failed_extension(run: Runner) -> None:
    channel = Channel({**OURS, "REASON": "3"})
    await run("report", ["failed"], channel)
    fields = event_fields(channel.events[0])
    assert fields["UserEvent"] == "AutoretryReport"
    assert (fields["HOOK"], fields["REASON"], fields["AUTORETRY_ATTEMPT_ID"]) == (
        "failed",
        "3",
        "a1",
    )


async def test_target_settings_are_the_fastagi_defaults(server: FastAgiServer) -> None:
    channel = Channel(dict(OURS), amd=("MACHINE", "LONGGREETING-1500-1500"))
    await run_fastagi(server, "amd", ["initial_silence=2000"], channel, extension="sales")
    assert channel.commands[1] == 'EXEC AMD "2000,1200"'
    assert 'EXEC Playback "custom/sorry"' in channel.commands


async def test_query_string_arguments(server: FastAgiServer) -> None:
    channel = Channel(dict(OURS), amd=("NOTSURE", "TOOLONG-5000"))
    await run_fastagi(server, "amd?notsure=machine&greeting=900", [], channel)
    assert channel.commands[1] == 'EXEC AMD ",900"'
    assert channel.commands[-1] == "HANGUP"
