"""Outcome commits per second through ``Store.transition`` against raw sqlite3 commits.

An outcome commit is what the daemon writes when an attempt ends: the attempt ends and
the call changes status (one row: a call's attempts are a column of it), one outbox event
(with its execution-object payload) is inserted, all in one BEGIN IMMEDIATE transaction.
The baseline is the cheapest durable write sqlite3 can do: one single-row INSERT and its
commit, same file system, WAL, same ``synchronous`` mode. Rounds alternate between the
two so drift in the machine hits both.

Each call is set up (untimed) as the daemon leaves it before an outcome: in progress, its
``in-progress`` event committed through the same store. A second line times the same
outcome on calls set up without that event (the store then encodes the call's payload
from scratch, as for the first event after a restart). The hand-written line is the same
SQL without the Store's Python: SQLite's own floor on this schema.

    .venv/bin/python bench/store_bench.py [--calls N] [--rounds R]

Where the time of one full-mode outcome commit goes (measured on the dev box, per commit,
after attempts moved into the call row: 3 WAL frames instead of 4, one statement fewer):
COMMIT ~80 us median / ~92 us mean (checkpoints ~10%; the raw side's whole commit is
~85 us), BEGIN + data_version ~7 us, the call UPDATE ~18 us, the outbox INSERT ~9 us,
the bench's transition function (two copies with ``evolve``, as lifecycle makes them)
~9 us (15-22 us with ``dataclasses.replace``), the Store's own Python ~23-27 us (payload
text ~9, attempts text ~5, row diff ~3). The hand-written line runs ~120-130 us:
0.63-0.83x raw. With the Store the same run gives 0.36-0.43x: the remaining gap is
Python (the function's and the Store's), not pages. Python runs 2-4x slower right after
an fsync than in a warm loop, so each of its microseconds counts more under ``full``.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ami_listener.core.lifecycle import Effect, Notify
from ami_listener.core.models import (
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    RetryConfig,
    evolve,
)
from ami_listener.store import Store

T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)


def live_call(i: int, config: RetryConfig) -> Call:
    call_id = f"call-{i:07d}"
    attempt = Attempt(
        id=f"att-{i:07d}-1",
        call_id=call_id,
        number=1,
        status=AttemptStatus.IN_PROGRESS,
        started_at=T0,
        answered_at=T0 + timedelta(seconds=5),
        uniqueid=f"1769421600.{i}",
    )
    return Call(
        id=call_id,
        target="sales-ivr",
        to_number="+14155550123",
        status=CallStatus.IN_PROGRESS,
        retry_config=config,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        scheduled_at=None,
        variables={"name": "Ada", "order": str(i)},
        webhook_url="https://example.com/hook",
        attempts=(attempt,),
    )


def end_attempt(call: Call) -> tuple[Call, tuple[Effect, ...]]:
    """What lifecycle does for a completed call, minus the policy: attempt ends, call final."""
    at = T0 + timedelta(minutes=3)
    live = call.attempts[-1]
    ended = evolve(
        live,
        status=AttemptStatus.COMPLETED,
        ended_at=at,
        cause=16,
        cause_txt="Normal Clearing",
        dial_status="ANSWER",
        reason="answered",
        decision="completed: no retry",
    )
    new = evolve(
        call,
        status=CallStatus.COMPLETED,
        updated_at=at,
        attempts=(*call.attempts[:-1], ended),
    )
    return new, (Notify(CallStatus.COMPLETED),)


def bench_store(path: Path, mode: str, n: int, round_no: int, *, warm: bool = True) -> float:
    """Outcome commits through ``Store.transition``, one per call.

    ``warm``: each call's setup commits the ``in-progress`` event that the daemon commits
    (through the same store) before the outcome, as lifecycle does when the far end
    answers; the store then has that call's unchanging payload text at hand. Not warm:
    the outcome is the first event this store writes for the call, as after a restart.
    """
    config = RetryConfig(enabled=True, max_retries=3, retry_intervals_minutes=(1, 5, 30))
    setup_events = (Notify(CallStatus.IN_PROGRESS),) if warm else ()
    with Store.open(path, synchronous=mode) as store:
        base = round_no * n
        for i in range(base, base + n):  # setup, not timed
            store.create_call(live_call(i, config), setup_events)
        ids = [f"call-{i:07d}" for i in range(base, base + n)]
        started = time.perf_counter()
        for call_id in ids:
            store.transition(call_id, end_attempt)
        elapsed = time.perf_counter() - started
        assert store.get_call(ids[-1]).status is CallStatus.COMPLETED
    return n / elapsed


def bench_raw(path: Path, mode: str, n: int) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {mode.upper()}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.commit()
    started = time.perf_counter()
    for i in range(n):
        conn.execute("INSERT INTO t (v) VALUES (?)", (f"row-{i}",))
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def bench_raw_outcome(path: Path, mode: str, n: int, round_no: int) -> float:
    """The same row changes on the same schema, by hand, payload and attempts text built
    beforehand.

    Not the target: it shows how much of an outcome commit is SQLite's own work (pages
    dirtied: the calls row with its attempts, its calls_live entry, the outbox row) and
    how much is the Store's Python.
    """
    config = RetryConfig(enabled=True, max_retries=3, retry_intervals_minutes=(1, 5, 30))
    with Store.open(path, synchronous=mode) as store:
        base = (round_no + 100) * n
        for i in range(base, base + n):
            store.create_call(live_call(i, config), ())
    ended = "2026-01-26T10:03:00.000000+00:00"
    payload = '{"status":"completed"}' * 40  # about the size of an execution object
    # The call's attempts column as the store writes it for this outcome (one ended attempt).
    attempts = (
        '[["att-{i:07d}-1",1,"completed","2026-01-26T10:00:00.000000+00:00",'
        '"2026-01-26T10:03:00.000000+00:00","2026-01-26T10:00:05.000000+00:00",16,'
        '"Normal Clearing",null,"ANSWER",null,null,null,false,false,"answered",'
        '"completed: no retry","1769421600.{i}"]]'
    )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {mode.upper()}")
    started = time.perf_counter()
    for i in range(base, base + n):
        call_id = f"call-{i:07d}"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE calls SET status = 'completed', updated_at = ?, attempts = ?, "
            "live_at = NULL WHERE id = ?",
            (ended, attempts.format(i=i), call_id),
        )
        conn.execute(
            "INSERT INTO outbox (call_id, status, payload, created_at, next_at) "
            "VALUES (?, 'completed', ?, ?, ?)",
            (call_id, payload, ended, ended),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="commits per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, WAL")
    print(f"{args.rounds} rounds x {args.calls} commits per side; medians")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("full", "normal"):
            store_rates, raw_rates, floor_rates, cold_rates = [], [], [], []
            for r in range(args.rounds):
                raw_rates.append(bench_raw(Path(tmp, f"raw-{mode}.db"), mode, args.calls))
                store_rates.append(bench_store(Path(tmp, f"store-{mode}.db"), mode, args.calls, r))
                floor_rates.append(
                    bench_raw_outcome(Path(tmp, f"store-{mode}.db"), mode, args.calls, r)
                )
                cold_rates.append(
                    bench_store(Path(tmp, f"cold-{mode}.db"), mode, args.calls, r, warm=False)
                )
            store_rate = statistics.median(store_rates)
            raw_rate = statistics.median(raw_rates)
            floor_rate = statistics.median(floor_rates)
            cold_rate = statistics.median(cold_rates)
            print(
                f"synchronous={mode:<6}  outcome commits/s (Store.transition): {store_rate:7.0f}"
                f"   raw sqlite3 single-row commits/s: {raw_rate:7.0f}"
                f"   ratio: {store_rate / raw_rate:.2f}x (goal >= 0.5x)"
            )
            print(
                f"{'':20}  same, call's first event in this store: {cold_rate:5.0f}"
                f"   ({cold_rate / raw_rate:.2f}x raw: payload text built from scratch)"
            )
            print(
                f"{'':20}  same outcome tx in hand-written SQL:  {floor_rate:7.0f}"
                f"   ({floor_rate / raw_rate:.2f}x raw: SQLite's share of the gap)"
            )


if __name__ == "__main__":
    main()
