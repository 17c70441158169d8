"""The FastAGI server against broken and hostile peers, over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ami_listener.config_sections import AgiSettings
from ami_listener.fastagi import FastAgiServer, start_fastagi
from tests.adapters.agi_peer import Channel, agi_env, play

OURS = {"AUTORETRY_CALL_ID": "c1", "AUTORETRY_ATTEMPT_ID": "a1", "AUTORETRY_ATTEMPT": "1"}


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    async with FastAgiServer(
        AgiSettings(), header_timeout_s=0.3, command_timeout_s=0.5, listen=("127.0.0.1", 0)
    ) as srv:
        yield srv


async def exchange(srv: FastAgiServer, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes."""
    reader, writer = await asyncio.open_connection(*srv.address)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return answer


async def still_serves(srv: FastAgiServer) -> None:
    channel = Channel(dict(OURS))
    reader, writer = await asyncio.open_connection(*srv.address)

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    await write(agi_env("amd", [], network=True))
    await asyncio.wait_for(play(channel, reader.readline, write), 5)
    writer.close()
    await writer.wait_closed()
    assert channel.variables["AUTORETRY_AMD"] == "HUMAN"


async def test_binds_loopback_by_default() -> None:
    assert AgiSettings().fastagi_listen == "127.0.0.1:4573"
    srv = await start_fastagi(AgiSettings(fastagi_listen="127.0.0.1:45731"))
    try:
        assert srv.address == ("127.0.0.1", 45731)
    finally:
        await srv.close()


@pytest.mark.parametrize("script", ["nosuch", "", "amd/../manage", "AMD"])
async def test_unknown_route_gets_failure(server: FastAgiServer, script: str) -> None:
    assert await exchange(server, agi_env(script, [], network=True)) == b"FAILURE\n"
    assert server.served["NOROUTE"] == 1
    await still_serves(server)


async def test_not_a_network_request_gets_failure(server: FastAgiServer) -> None:
    assert await exchange(server, agi_env("amd", [], network=False)) == b"FAILURE\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",  # connects and closes
        b"agi_network: yes\nagi_network_script: amd\n",  # closes before the blank line
        b"agi_network: yes\n" + b"x" * 20_000 + b"\n\n",  # a line over the limit
        b"agi_x: y\n" * 500 + b"\n",  # too many lines
        b"agi_network: yes\nagi_network_script: \xff\xfeamd\n\n",  # not UTF-8
    ],
)
async def test_broken_headers_close_cleanly(server: FastAgiServer, data: bytes) -> None:
    answer = await exchange(server, data)
    assert answer in (b"", b"FAILURE\n")
    await still_serves(server)


async def test_silent_peer_times_out(server: FastAgiServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the header deadline
    writer.close()
    await writer.wait_closed()
    assert server.served["BROKEN"] == 1


async def test_peer_hangs_up_mid_command(server: FastAgiServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(agi_env("amd", [], network=True))
    await writer.drain()
    first = await asyncio.wait_for(reader.readline(), 5)
    assert first.startswith(b"GET FULL VARIABLE")
    writer.close()  # Asterisk went away without a reply
    await writer.wait_closed()
    await still_serves(server)
    assert server.served["HANGUP"] == 1


async def test_peer_never_answers_a_command(server: FastAgiServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(agi_env("amd", [], network=True))
    await writer.drain()
    await asyncio.wait_for(reader.readline(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the command deadline
    writer.close()
    await writer.wait_closed()
    assert server.served["BROKEN"] == 1


async def test_garbage_replies_end_the_session(server: FastAgiServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(agi_env("amd", [], network=True))
    await writer.drain()
    await asyncio.wait_for(reader.readline(), 5)
    writer.write(b"HANGUP\n" * 300)  # never a reply line
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 5)
    assert b"EXEC" not in rest  # nothing was run on the strength of garbage
    writer.close()
    await writer.wait_closed()


async def test_usage_error_text_is_swallowed(server: FastAgiServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(agi_env("report", ["failed"], network=True))
    await writer.drain()
    await asyncio.wait_for(reader.readline(), 5)
    writer.write(
        b"520-Invalid command syntax.  Proper usage follows:\nUsage: x\n520 End of proper usage.\n"
    )
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line == b'SET VARIABLE AUTORETRY_HOOK "SKIPPED"\n'
    writer.close()
    await writer.wait_closed()


async def test_close_ends_sessions_in_progress() -> None:
    srv = FastAgiServer(AgiSettings(), listen=("127.0.0.1", 0))
    await srv.start()
    reader, writer = await asyncio.open_connection(*srv.address)
    writer.write(agi_env("amd", [], network=True))
    await writer.drain()
    await asyncio.wait_for(reader.readline(), 5)
    await asyncio.wait_for(srv.close(), 5)  # does not wait for the silent peer
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await writer.wait_closed()
