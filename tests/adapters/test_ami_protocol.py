"""Our panoramisk protocol: byte-level framing, early drop, panoramisk's action replies."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from ami_listener.ami_protocol import (
    LOGIN_EVENTS,
    AmiProtocol,
    EventSelection,
    filters,
    protocol_factory,
)

from .ami_transcripts import load, replay_server

NAME = "Zoë Ünal 日本"  # 2- and 3-byte UTF-8 characters


def event(name: str, **headers: str) -> bytes:
    lines = [f"Event: {name}", "Privilege: call,all", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
async def tcp_port() -> AsyncIterator[int]:
    """A TCP peer on 127.0.0.1 that accepts and stays silent: a real transport to attach."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def connect(port: int, protocol: Any) -> asyncio.Transport:
    transport, _ = await asyncio.get_running_loop().create_connection(
        lambda: protocol, "127.0.0.1", port
    )
    return transport


async def test_utf8_character_split_across_two_reads_survives(tcp_port: int) -> None:
    got: list[Mapping[str, str]] = []
    ours = AmiProtocol(got.append, slice_budget_s=60.0)  # all handled inside data_received
    transport = await connect(tcp_port, ours)
    data = event("Newchannel", Channel="SIP/trunk-00000001", Uniqueid="1.1", CallerIDName=NAME)
    cut = data.index("ë".encode()) + 1  # inside the two bytes of "ë"
    ours.data_received(data[:cut])
    assert got == []
    ours.data_received(data[cut:])
    assert [m["CallerIDName"] for m in got] == [NAME]
    transport.close()

    # the trap we work around: stock panoramisk decodes each read alone, errors ignored
    stock = AMIProtocol()
    await connect(tcp_port, stock)
    stock.encoding = "utf8"  # what Manager.connection_made sets
    stock_got: list[Any] = []
    stock.factory = Manager(loop=asyncio.get_running_loop())
    stock.factory.register_event("*", lambda _m, e: stock_got.append(e))
    stock.data_received(data[:cut])
    stock.data_received(data[cut:])
    assert [m["CallerIDName"] for m in stock_got] == ["Zo Ünal 日本"]
    stock.close()


async def test_unwanted_events_are_dropped_before_parsing(tcp_port: int) -> None:
    got: list[Mapping[str, str]] = []
    ours = AmiProtocol(got.append, slice_budget_s=60.0)  # all handled inside data_received
    transport = await connect(tcp_port, ours)
    stream = b"".join(
        [
            event("Newexten", Channel="SIP/a-1", Uniqueid="1.1", Application="NoOp"),
            event("VarSet", Uniqueid="1.1", Variable="DIALSTATUS", Value=""),
            event("VarSet", Uniqueid="1.1", Variable="__AUTORETRY_CALL_ID", Value="c1"),
            event("CEL", EventName="CHAN_START", UniqueID="1.1"),
            event("Hangup", Channel="SIP/a-1", Uniqueid="1.1", Cause="17"),
            event("UserEvent", Uniqueid="1.1", UserEvent="Other"),
            event("UserEvent", Uniqueid="1.1", UserEvent="AutoretryAMD", AMDSTATUS="HUMAN"),
        ]
    )
    ours.data_received(stream)
    assert [(m["Event"], m.get("Variable") or m.get("UserEvent")) for m in got] == [
        ("VarSet", "__AUTORETRY_CALL_ID"),
        ("Hangup", None),
        ("UserEvent", "AutoretryAMD"),
    ]
    assert ours.frames_parsed == 3  # the other four were never decoded
    transport.close()


async def test_a_big_burst_yields_to_the_loop_and_pauses_reading(tcp_port: int) -> None:
    got: list[Mapping[str, str]] = []
    all_wanted = asyncio.Event()

    def on_event(message: Mapping[str, str]) -> None:
        got.append(message)
        if len(got) == 5000:
            all_wanted.set()

    ours = AmiProtocol(on_event, slice_budget_s=0.001)
    transport = await connect(tcp_port, ours)
    noise = event("Newexten", Channel="SIP/a-1", Uniqueid="1.1", Application="NoOp") * 19
    wanted = event("Newstate", Channel="SIP/a-1", Uniqueid="1.1", ChannelState="5")
    ours.data_received((noise + wanted) * 5000)

    seen_by_other_callback: list[int] = []
    asyncio.get_running_loop().call_soon(lambda: seen_by_other_callback.append(len(got)))
    assert not transport.is_reading()  # backlog: TCP pushes back on the sender
    await asyncio.wait_for(all_wanted.wait(), 10)
    assert seen_by_other_callback and 0 < seen_by_other_callback[0] < 5000
    assert len(got) == 5000
    assert transport.is_reading()
    transport.close()


async def test_originate_response_reaches_us_and_completes_the_action() -> None:
    """README point 3: panoramisk alone swallows it into the Originate's reply."""
    transcript = load("local-busy")
    loop = asyncio.get_running_loop()

    async def run(factory: Any) -> tuple[list[str], Any]:
        events: list[str] = []
        async with replay_server(transcript) as port:
            manager = Manager(
                host="127.0.0.1", port=port, loop=loop, ping_delay=3600, protocol_factory=factory
            )
            manager.register_event("*", lambda _m, e: events.append(f"dispatch:{e['Event']}"))
            await asyncio.wait_for(manager.connect(), 5)
            futures = [manager.send_action(dict(a)) for a in transcript.actions]
            replies = await asyncio.wait_for(asyncio.gather(*futures), 10)
            manager.close()
        return events, replies[1]

    ours: list[str] = []
    events, originate = await run(protocol_factory(lambda m: ours.append(m["Event"])))
    assert "OriginateResponse" in ours
    assert [m["Response"] for m in originate] == ["Success", "Failure"]
    assert [m.get("Reason") for m in originate] == [None, "5"]

    stock_events, stock_originate = await run(AMIProtocol)
    assert "dispatch:OriginateResponse" not in stock_events
    assert [m["Response"] for m in stock_originate] == ["Success", "Failure"]
    assert len(stock_events) > len(events)  # stock dispatched the unwanted ones as well


async def test_action_replies_and_event_lists_still_complete() -> None:
    transcript = load("ami-basics")
    got: list[Mapping[str, str]] = []
    async with replay_server(transcript, seed=3) as port:
        manager = Manager(
            host="127.0.0.1",
            port=port,
            loop=asyncio.get_running_loop(),
            ping_delay=3600,
            protocol_factory=protocol_factory(got.append),
        )
        await asyncio.wait_for(manager.connect(), 5)
        futures = [manager.send_action(dict(a)) for a in transcript.actions]
        login, ping, settings, version, module, peers, channels, logoff = await asyncio.wait_for(
            asyncio.gather(*futures), 10
        )
        assert manager.protocol.version == "9.0.0"
        manager.close()
    assert (login["Response"], ping["Ping"], settings["AsteriskVersion"]) == (
        "Success",
        "Pong",
        "20.20.1",
    )
    assert "20.20.1" in version["Output"]
    assert len(module["Output"]) == 3
    assert [m.get("Event") for m in peers] == [None, "PeerEntry", "PeerEntry", "PeerlistComplete"]
    assert [m.get("Event") for m in channels] == [None, "CoreShowChannelsComplete"]
    assert logoff["Response"] == "Goodbye"
    # FullyBooted is wanted (panoramisk sends awaiting actions on it); list items are not
    assert [m["Event"] for m in got] == ["FullyBooted"]


def test_filters_and_login_mask_say_what_we_need() -> None:
    def passes(text: str) -> bool:
        # Asterisk's legacy filters: POSIX regex searched in the whole event text
        return any(re.search(f["Filter"], text) for f in filters())

    assert passes(event("Hangup", Uniqueid="1.1", Cause="17").decode())
    assert passes(event("OriginateResponse", ActionID="a", Response="Failure").decode())
    assert passes(event("VarSet", Variable="__AUTORETRY_ATTEMPT_ID", Value="a").decode())
    assert passes(event("UserEvent", UserEvent="AutoretryAMD").decode())
    assert not passes(event("VarSet", Variable="DIALSTATUS", Value="BUSY").decode())
    assert not passes(event("Newexten", Application="NoOp").decode())
    assert not passes(event("Cdr", Disposition="BUSY").decode())
    for action in filters("X_", "Y"):
        assert action["Action"] == "Filter" and action["Operation"] == "Add"
        assert not any(c in v for v in action.values() for c in "\r\n\0")
    assert set(LOGIN_EVENTS.split(",")) == {"call", "dialplan", "user", "system"}
    selection = EventSelection.default("X_", "Y")
    assert selection.wants("VarSet", b"Event: VarSet\r\nVariable: X_CALL_ID")
    assert not selection.wants("VarSet", b"Event: VarSet\r\nVariable: AUTORETRY_CALL_ID")


@pytest.mark.parametrize("name", ["local-busy", "siplocal-answer", "amd-sip-machine"])
async def test_any_read_boundaries_give_the_same_events(tcp_port: int, name: str) -> None:
    raw = load(name).raw
    selection = EventSelection.default("RETRY_", "LabAMD")

    async def events(sizes: list[int]) -> list[Mapping[str, str]]:
        got: list[Mapping[str, str]] = []
        # a budget no read can exhaust: every event is handled inside data_received
        protocol = AmiProtocol(got.append, selection, slice_budget_s=60.0)
        transport = await connect(tcp_port, protocol)
        position = 0
        for size in sizes:
            protocol.data_received(raw[position : position + size])
            position += size
        assert position >= len(raw)
        assert protocol.version == "9.0.0"
        transport.close()
        return got

    whole = await events([len(raw)])
    assert [m["Event"] for m in whole].count("Hangup") >= 1
    assert await events([1] * len(raw)) == whole
    assert await events([3, 4093] * (len(raw) // 4096 + 1)) == whole
