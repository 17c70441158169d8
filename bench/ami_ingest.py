"""AMI ingest: stock panoramisk dispatch against our protocol + tracker, same run, same bytes.

A 200k-event stream shaped like a busy PBX (VarSet and Newexten dominate, ~6 % of events
are ones the tracker needs) is built from the recorded Asterisk transcripts, with Uniqueids
and channel names rewritten so that ~30 events belong to each synthetic call. A child
process serves it over TCP on 127.0.0.1 (sendfile); each pipeline connects with
panoramisk's ``Manager``:

(a) stock: ``AMIProtocol`` + an event callback registered for ``*``;
(b) ours: ``ami_protocol.AmiProtocol`` feeding ``ami_tracker.AttemptTracker``.

Printed: events/s for each, the ratio, the longest event-loop stall (a probe task asks for
a 1 ms sleep and records how late it wakes) and the longest single protocol callback.

    .venv/bin/python bench/ami_ingest.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from ami_listener.ami_protocol import (
    AmiProtocol,
    EventSelection,
    event_name,
    split_frames,
)
from ami_listener.ami_tracker import AttemptTracker

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "tests" / "transcripts"
WANTED_SHARE = 0.06
NOISE_MIX = {"VarSet": 0.45, "Newexten": 0.35}  # the rest of the noise: other unwanted events
EVENTS_PER_CALL = 30
_UNIQUEID = re.compile(rb"\b1795\d{6}\.\d+\b")
_CHANNEL_SEQ = re.compile(rb"-[0-9a-f]{8}\b")  # SIP/sipp-0000000b, Local/x@y-00000003;1


def templates() -> tuple[dict[str, list[bytes]], list[bytes], list[bytes]]:
    """Recorded frames: unwanted by name, wanted, and our own VarSets."""
    selection = EventSelection.default()
    noise: dict[str, list[bytes]] = {}
    wanted: list[bytes] = []
    ours: list[bytes] = []
    for path in sorted(TRANSCRIPTS.glob("*.ami.raw")):
        raw = path.read_bytes()
        frames, _ = split_frames(raw[raw.index(b"\r\n") + 2 :])
        for frame in frames:
            name = event_name(frame)
            if name is None or name in ("FullyBooted", "Shutdown", "OriginateResponse"):
                continue
            if name == "VarSet" and b"RETRY_" in frame:
                ours.append(frame.replace(b"RETRY_", b"AUTORETRY_"))
            elif selection.wants(name, frame):
                wanted.append(frame)
            else:
                noise.setdefault(name, []).append(frame)
    return noise, wanted, ours


def build_stream(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    noise, wanted, ours = templates()
    others = [f for name, frames in noise.items() if name not in NOISE_MIX for f in frames]
    parts = []
    for i in range(count):
        roll = rng.random()
        if roll < WANTED_SHARE:
            frame = rng.choice(ours if rng.random() < 0.1 else wanted)
        elif roll < WANTED_SHARE + (1 - WANTED_SHARE) * NOISE_MIX["VarSet"]:
            frame = rng.choice(noise["VarSet"])
        elif roll < WANTED_SHARE + (1 - WANTED_SHARE) * sum(NOISE_MIX.values()):
            frame = rng.choice(noise["Newexten"])
        else:
            frame = rng.choice(others)
        call = i // EVENTS_PER_CALL
        frame = _UNIQUEID.sub(f"1800000000.{call}".encode(), frame)
        parts.append(_CHANNEL_SEQ.sub(f"-{call:08x}".encode(), frame) + b"\r\n\r\n")
    return b"Asterisk Call Manager/9.0.0\r\n" + b"".join(parts) + END


# the last message: both pipelines deliver it, so each knows it has seen everything
END = b"Event: UserEvent\r\nUserEvent: AutoretryAMD\r\nAUTORETRY_ATTEMPT_ID: bench-end\r\n\r\n"


_SERVER = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.recv(1)  # the client is set up (stock panoramisk crashes on data before that)
with conn, open(sys.argv[1], "rb") as stream:
    conn.sendfile(stream)
    conn.recv(1)  # until the client closes
"""


async def serve_once(path: Path) -> tuple[int, asyncio.subprocess.Process]:
    """Another process (no GIL shared with our loop) sends the stream to one client."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVER, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    return int(await server.stdout.readline()), server


def timed(
    cls: type[Any],
    stats: tuple[list[float], list[float], list[float], list[int]],
) -> type[Any]:
    """The protocol class with each data_received (and our drain slices) timed."""
    worst, worst_cpu, busy, reads = stats

    class Timed(cls):  # type: ignore[misc, valid-type]
        depth = 0  # our data_received calls _drain: time the outer call only

        def _timed(self, call: Callable[[], None]) -> None:
            self.depth += 1
            start, cpu_start = time.perf_counter(), time.thread_time()
            call()
            self.depth -= 1
            if self.depth == 0:
                spent = time.perf_counter() - start
                worst[0] = max(worst[0], spent)
                # CPU time of this thread: a callback preempted by another process on a
                # busy machine looks long on the wall clock only
                worst_cpu[0] = max(worst_cpu[0], time.thread_time() - cpu_start)
                busy[0] += spent

        def data_received(self, data: bytes) -> None:
            reads[0] += 1
            self._timed(lambda: super(Timed, self).data_received(data))

        def _drain(self, *args: Any) -> None:
            self._timed(lambda: super(Timed, self)._drain(*args))

    return Timed


async def probe(stop: asyncio.Event, lag: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lag[0] = max(lag[0], time.perf_counter() - start - 0.001)


async def run_pipeline(stream: Path, total: int, stock: bool) -> tuple[float, ...]:
    """Seconds from connect to the last event handled (wall, and CPU of this process),
    worst loop lag, worst callback, time inside the protocol, number of reads."""
    loop = asyncio.get_running_loop()
    done, stop = asyncio.Event(), asyncio.Event()
    lag, worst, worst_cpu, busy, reads = [0.0], [0.0], [0.0], [0.0], [0]
    count = [0]

    def counted() -> None:
        count[0] += 1
        if count[0] == total + 1:  # and END
            done.set()

    if stock:
        stock_cls = timed(AMIProtocol, (worst, worst_cpu, busy, reads))

        def factory() -> Any:
            return stock_cls()

    else:
        tracker = AttemptTracker()
        at = datetime(2026, 1, 1, tzinfo=UTC)
        for k in range(0, total // EVENTS_PER_CALL, 50):  # some of the calls are ours
            tracker.expect(
                f"att-{k}",
                call_id=f"c{k}",
                attempt_number=1,
                channel_id=f"1800000000.{k}",
                action_id=None,
                at=at,
            )
        ours_cls = timed(AmiProtocol, (worst, worst_cpu, busy, reads))

        def on_event(message: Mapping[str, str]) -> None:
            tracker.feed(message, at)
            if message.get("AUTORETRY_ATTEMPT_ID") == "bench-end":
                done.set()

        def factory() -> Any:
            return ours_cls(on_event)

    port, server = await serve_once(stream)
    manager = Manager(
        host="127.0.0.1", port=port, loop=loop, ping_delay=3600, protocol_factory=factory
    )
    if stock:
        manager.register_event("*", lambda _manager, _event: counted())
    prober = asyncio.create_task(probe(stop, lag))
    start, cpu_start = time.perf_counter(), time.process_time()
    await manager.connect()
    manager.protocol.transport.write(b"\n")  # go
    await asyncio.wait_for(done.wait(), 600)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    stop.set()
    await prober
    manager.close()
    await asyncio.wait_for(server.wait(), 10)
    return elapsed, cpu, lag[0], worst[0], worst_cpu[0], busy[0], reads[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    stream = build_stream(args.events)
    path = Path(tempfile.mkdtemp()) / "stream.ami"
    path.write_bytes(stream)
    frames, _ = split_frames(stream[stream.index(b"\r\n") + 2 :])
    selection = EventSelection.default()
    wanted = sum(1 for f in frames if selection.wants(event_name(f) or "", f))
    print(
        f"stream: {args.events} events, {len(stream) / 1e6:.1f} MB, "
        f"{wanted / args.events:.1%} wanted by the tracker"
    )
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}")
        rates = []
        for label, stock in (("(a) stock panoramisk", True), ("(b) ours + tracker  ", False)):
            gc.collect()  # start each pipeline without the previous one's garbage
            wall, cpu, lag, worst, worst_cpu, busy, reads = await run_pipeline(
                path, args.events, stock
            )
            rates.append((args.events / wall, args.events / busy))
            print(
                f"  {label}: {args.events / wall:>9,.0f} events/s "
                f"({args.events / busy:>9,.0f}/s inside the protocol, "
                f"{args.events / cpu:>9,.0f}/s of process CPU, {reads:.0f} reads)  "
                f"loop stall max {lag * 1e3:5.2f} ms, longest callback {worst * 1e3:5.2f} ms "
                f"({worst_cpu * 1e3:5.2f} ms CPU)"
            )
        (stock_wall, stock_busy), (ours_wall, ours_busy) = rates
        print(
            f"  ratio (b)/(a): {ours_wall / stock_wall:.1f}x wall clock, "
            f"{ours_busy / stock_busy:.1f}x inside the protocol (goal >= 10x, stall < 5 ms)"
        )


if __name__ == "__main__":
    asyncio.run(main())
