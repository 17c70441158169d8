"""How late does the scheduler dispatch a due call, and does memory grow with pending calls?

    .venv/bin/python bench/dispatch_lag.py [--pending 100000] [--due 2000] [--rss-pending 1000000]

1. ``--pending`` calls wait in the database (most due tomorrow); ``--due`` of them fall due
   over the next seconds, 5 ms apart. The real ``Scheduler`` (writer thread, claims,
   synchronous=full) dispatches them to a dial function that records how late each came.
   Prints p50/p99/max lateness. Goal (issue): p99 < 10 ms.
2. A fresh process runs the scheduler over ``--rss-pending`` pending calls (and over a small
   database, for comparison) and prints its RSS once it has settled. Goal: < 100 MB at 1M.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ami_listener.core.lifecycle import new_call
from ami_listener.core.models import Attempt, Call, CallRequest, RetryConfig
from ami_listener.core.policy import Rules
from ami_listener.scheduler import Scheduler
from ami_listener.store import Store, ts
from ami_listener.writer import Writer

REQUEST = CallRequest(agent_id="t", recipient_phone_number="+12025550123")


def fill(db: Path, pending: int, due: int, start: datetime, *, events: bool) -> dict[str, datetime]:
    """``pending`` calls: ``due`` of them 5 ms apart from ``start``, the rest tomorrow."""
    due_at: dict[str, datetime] = {}
    calls = []
    tomorrow = start + timedelta(days=1)
    for i in range(pending):
        at = start + timedelta(milliseconds=5 * i) if i < due else tomorrow + timedelta(seconds=i)
        call, effects = new_call(f"c{i:07d}", REQUEST, start)
        # each call its own number: one number is never rung by two calls at once
        call = replace(call, scheduled_at=at, to_number=f"+1202{i:07d}")
        calls.append((call, effects if events else ()))
        if i < due:
            due_at[call.id] = at
    with Store.open(db, synchronous="normal") as store:
        for chunk in range(0, len(calls), 50_000):
            store.create_batch(
                f"b{chunk}", "t", None, RetryConfig(), start, calls[chunk : chunk + 50_000]
            )
    return due_at


def shift(db: Path, due_at: dict[str, datetime], by: timedelta) -> dict[str, datetime]:
    """Move the due calls to start two seconds from now (filling took a while)."""
    moved = {call_id: at + by for call_id, at in due_at.items()}
    with Store.open(db) as store, store.db.conn:
        store.db.conn.executemany(
            "UPDATE calls SET scheduled_at = ? WHERE id = ?",
            [(ts(at), call_id) for call_id, at in moved.items()],
        )
    return moved


async def measure_lateness(db: Path, due_at: dict[str, datetime]) -> list[float]:
    late_ms: list[float] = []
    finished = asyncio.Event()

    async def dial(call: Call, attempt: Attempt) -> None:
        late_ms.append((datetime.now(UTC) - due_at[call.id]).total_seconds() * 1000)
        if len(late_ms) == len(due_at):
            finished.set()

    async with Writer(db, synchronous="full") as writer:
        ids = iter(range(10**9))
        scheduler = Scheduler(
            writer,
            dial,
            rules=Rules(),
            max_concurrent=10**9,
            max_cps=10_000,
            clock=lambda: datetime.now(UTC),
            new_id=lambda: f"a{next(ids)}",
        )
        task = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(finished.wait(), timeout=120)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return late_ms


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def child(db: Path) -> None:
    """Run the scheduler over ``db`` (nothing due) until it sleeps; print RSS."""

    async def dial(call: Call, attempt: Attempt) -> None:
        raise AssertionError("nothing is due")

    async with Writer(db, synchronous="full") as writer:
        scheduler = Scheduler(
            writer,
            dial,
            rules=Rules(),
            max_concurrent=10,
            max_cps=5,
            clock=lambda: datetime.now(UTC),
            new_id=lambda: "x",
        )
        task = asyncio.create_task(scheduler.run())
        for _ in range(5):  # a few wake-ups: each reads the next due call from the index
            scheduler.wake()
            await asyncio.sleep(0.05)
        print(f"{rss_mb():.1f}")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def child_rss(db: Path) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(db)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=2000)
    parser.add_argument("--rss-pending", type=int, default=1_000_000)
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lag.db"
        t = time.perf_counter()
        start = datetime.now(UTC) + timedelta(hours=1)
        due_at = fill(db, args.pending, args.due, start, events=True)
        print(f"filled {args.pending} pending calls in {time.perf_counter() - t:.1f} s")
        due_at = shift(db, due_at, datetime.now(UTC) + timedelta(seconds=2) - start)
        late = asyncio.run(measure_lateness(db, due_at))
        late.sort()
        p50 = statistics.median(late)
        p99 = late[int(len(late) * 0.99) - 1]
        print(
            f"dispatch lateness over {len(late)} due calls among {args.pending} pending: "
            f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {late[-1]:.2f} ms  (goal p99 < 10 ms)"
        )
        small = Path(tmp) / "small.db"
        fill(small, 1000, 0, start, events=False)
        big = Path(tmp) / "big.db"
        t = time.perf_counter()
        fill(big, args.rss_pending, 0, start, events=False)
        print(f"filled {args.rss_pending} pending calls in {time.perf_counter() - t:.1f} s")
        print(
            f"scheduler process RSS: {child_rss(small):.1f} MB with 1000 pending, "
            f"{child_rss(big):.1f} MB with {args.rss_pending} pending (goal < 100 MB)"
        )


if __name__ == "__main__":
    main()
