"""SIGKILL a process that writes state changes, many times; the database must stay whole.

After every kill the file is reopened (recovering the WAL) and checked: integrity_check is
"ok", foreign keys hold, every call's outbox events are exactly the status changes its
attempts imply (store_worker.expected_events), the last event is the call's status, no
attempt is half written, and every commit the worker reported before the kill is there.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from ami_listener.core.models import (
    LIVE_ATTEMPT_STATUSES,
    LIVE_STATUSES,
    PENDING_STATUSES,
    AttemptStatus,
    CallStatus,
)
from ami_listener.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from store_worker import MAX_ATTEMPTS, expected_events

WORKER = Path(__file__).with_name("store_worker.py")
KILLS = 50


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout_s: float) -> list[str]:
    """Read ``count`` lines from the worker's stdout, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buffer, lines = b"", []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while len(lines) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"worker gave {len(lines)} of {count} lines in {timeout_s}s"
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            assert chunk, f"worker exited ({proc.wait()}): {proc.stderr and proc.stderr.read()!r}"
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            lines.extend(line.decode() for line in done)
    return lines


def check_consistent(store: Store, reported: dict[str, int]) -> int:
    """Assert every invariant on the reopened store; return the number of calls."""
    db = store.db
    assert [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()] == ["ok"]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    events: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event in store.outbox_list(limit=1_000_000):
        assert event.state in {"pending", "delivered"}
        events[event.call_id].append((event.status, event.payload))
    calls = store.list_calls(limit=1_000_000)
    assert set(events) == {c.id for c in calls}  # no event without its call, nor the reverse
    for call in calls:
        statuses = [status for status, _ in events[call.id]]
        assert statuses == expected_events(call), call
        assert statuses[-1] == call.status.value
        for status, payload in events[call.id]:
            body = json.loads(payload)
            assert (body["id"], body["status"]) == (call.id, status)
        attempts = call.attempts
        assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
        for a in attempts[:-1]:  # only the newest attempt may be live
            assert a.status is AttemptStatus.BUSY
        for a in attempts:
            final = a.status not in LIVE_ATTEMPT_STATUSES
            assert (a.ended_at is not None) == final, a
            answered = a.status in {AttemptStatus.IN_PROGRESS, AttemptStatus.COMPLETED}
            assert (a.answered_at is not None) == answered, a
            assert a.call_id == call.id
        live = bool(attempts) and attempts[-1].status in LIVE_ATTEMPT_STATUSES
        assert (call.status in LIVE_STATUSES) == live
        assert (call.scheduled_at is not None) == (call.status in PENDING_STATUSES)
        busy_retried = [a for a in attempts if a.status is AttemptStatus.BUSY]
        assert call.retry_count == len([a for a in busy_retried if a.number < MAX_ATTEMPTS])
        if call.status is CallStatus.BUSY:
            assert len(attempts) == MAX_ATTEMPTS
    by_id = {c.id: c for c in calls}
    for call_id, count in reported.items():  # every reported commit survived the kill
        assert len(expected_events(by_id[call_id])) >= count
    return len(calls)


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_sigkill_at_random_moments_leaves_a_consistent_database(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    rng = random.Random(20260126)
    reported: dict[str, int] = {}
    calls_seen = []
    started = time.monotonic()
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), "crash", str(path), str(kill)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wanted = rng.randint(0, 40)  # 0: killed while starting, maybe mid-migration
            for line in read_lines(proc, wanted, timeout_s=20):
                call_id, count = line.split()
                reported[call_id] = max(reported.get(call_id, 0), int(count))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        with Store.open(path) as store:
            calls_seen.append(check_consistent(store, reported))
    assert calls_seen[-1] > 50, calls_seen  # the workers made real progress across kills
    assert len(reported) > 50
    assert time.monotonic() - started < 60
