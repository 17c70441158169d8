"""Webhooks delivered per second from the outbox, against a bare aiohttp client.

Both sides POST the same payloads (execution objects read from the outbox) to the same
local receiver (an aiohttp server in its own process, answering 200) with the same
concurrency. The sender does everything it does in the daemon: reads due events in the
database thread, signs each body, posts, and commits the results (``synchronous`` as
configured, default ``full``). The baseline only posts. Rounds alternate between the two
so drift in the machine hits both; each sender round gets a fresh outbox.

    .venv/bin/python bench/webhooks.py [--events N] [--concurrency C] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ami_listener.config_sections import WebhooksSettings
from ami_listener.core.lifecycle import new_call
from ami_listener.core.models import CallRequest
from ami_listener.store import Store
from ami_listener.store_outbox import Settlement
from ami_listener.webhooks import WebhookSender
from ami_listener.writer import Writer

T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)


# ---- the receiver, in its own process --------------------------------------------------
def serve(port: int) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("receiver did not start")


# ---- the outbox ------------------------------------------------------------------------
def fill(path: Path, n: int, url: str) -> list[bytes]:
    """``n`` calls, one outbox event each (setup, not timed); their payloads."""
    request = CallRequest.model_validate(
        {
            "agent_id": "sales-ivr",
            "recipient_phone_number": "+14155550123",
            "webhook_url": url,
            "retry_config": {"enabled": True, "max_retries": 3},
            "user_data": {"name": "Ada", "order": "A-1042"},
        }
    )
    with Store.open(path, synchronous="normal") as store:
        for i in range(n):
            store.create_call(*new_call(f"call-{i:07d}", request, T0))
        return [e.payload.encode() for e in store.outbox_list(limit=n)]


# ---- the two sides ---------------------------------------------------------------------
async def run_sender(
    path: Path, n: int, url: str, concurrency: int, synchronous: str
) -> tuple[float, float]:
    """(events per second, CPU seconds per event in this process, database thread included)"""
    config = WebhooksSettings.model_validate(
        {"url": url, "secret": "bench-secret", "concurrency": concurrency}
    )
    done = asyncio.Event()
    count = 0

    def settled(result: Settlement) -> None:
        nonlocal count
        count += result.state == "delivered"
        if count == n:
            done.set()

    async with Writer(path, synchronous=synchronous) as writer:
        sender = WebhookSender(
            writer, config, clock=lambda: datetime.now(UTC), rng=random.random, on_settled=settled
        )
        started, cpu = time.perf_counter(), time.process_time()
        task = asyncio.create_task(sender.run())
        await asyncio.wait_for(done.wait(), 600)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sender.failed == 0, f"{sender.failed} failed deliveries"
    return n / elapsed, cpu / n


async def run_bare(payloads: list[bytes], url: str, concurrency: int) -> tuple[float, float]:
    queue = iter(enumerate(payloads))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i, body in queue:
            headers = {"Content-Type": "application/json", "X-Autoretry-Event-Id": str(i)}
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return len(payloads) / elapsed, cpu / len(payloads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per round")
    parser.add_argument("--concurrency", type=int, default=4, help="webhooks.concurrency")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    receiver = multiprocessing.get_context("spawn").Process(target=serve, args=(port,))
    receiver.start()
    try:
        wait_listening(port)
        print(
            f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
            f"SQLite {sqlite3.sqlite_version} (synchronous={args.synchronous}), "
            f"receiver in its own process"
        )
        print(
            f"{args.rounds} rounds x {args.events} events, concurrency {args.concurrency}; medians"
        )
        sender_runs: list[tuple[float, float]] = []
        bare_runs: list[tuple[float, float]] = []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                path = Path(tmp, f"round-{r}.db")
                payloads = fill(path, args.events, url)
                sides = [
                    (bare_runs, partial(run_bare, payloads, url, args.concurrency)),
                    (
                        sender_runs,
                        partial(
                            run_sender, path, args.events, url, args.concurrency, args.synchronous
                        ),
                    ),
                ]
                for runs, side in sides[:: 1 if r % 2 == 0 else -1]:  # who goes first alternates
                    runs.append(asyncio.run(side()))
                (s_rate, s_cpu), (b_rate, b_cpu) = sender_runs[-1], bare_runs[-1]
                print(
                    f"  round {r + 1}: sender {s_rate:6.0f}/s ({s_cpu * 1e6:4.0f} us CPU each)"
                    f"  bare {b_rate:6.0f}/s ({b_cpu * 1e6:4.0f} us CPU each)"
                )
        sender = statistics.median(rate for rate, _ in sender_runs)
        bare = statistics.median(rate for rate, _ in bare_runs)
        s_cpu = statistics.median(cpu for _, cpu in sender_runs)
        b_cpu = statistics.median(cpu for _, cpu in bare_runs)
        paired = statistics.median(s[0] / b[0] for s, b in zip(sender_runs, bare_runs, strict=True))
        print(
            f"webhooks delivered/s from the outbox: {sender:6.0f}   bare aiohttp posts/s: "
            f"{bare:6.0f}   ratio: {sender / bare:.2f}x (goal >= 0.7x); "
            f"median of the rounds' ratios: {paired:.2f}x"
        )
        print(
            f"client CPU per event: sender {s_cpu * 1e6:.0f} us, bare {b_cpu * 1e6:.0f} us "
            f"({b_cpu / s_cpu:.2f}x: the ratio on a machine where the client is the limit)"
        )
    finally:
        receiver.terminate()
        receiver.join()


if __name__ == "__main__":
    main()
