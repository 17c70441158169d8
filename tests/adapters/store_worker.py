"""A separate process writing to a Store, for the crash and two-process claim tests.

    python store_worker.py crash DB SEED   # write state changes forever, one line per commit
    python store_worker.py claim DB LIMIT  # after "go" on stdin, claim due calls until none

The crash loop drives every call through one small, deterministic state machine (below),
so the test can recompute from a call's attempts exactly which outbox events it must have.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ami_listener.core.lifecycle import Effect, Notify
from ami_listener.core.models import (
    FINAL_STATUSES,
    PENDING_STATUSES,
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    RetryConfig,
)
from ami_listener.store import Store

MAX_ATTEMPTS = 3
Result = tuple[Call, tuple[Effect, ...]]


def new_call(now: datetime) -> Call:
    return Call(
        id=uuid.uuid4().hex,
        target="sales-ivr",
        to_number="+14155550123",
        status=CallStatus.QUEUED,
        retry_config=RetryConfig(enabled=True, max_retries=MAX_ATTEMPTS - 1),
        created_at=now,
        updated_at=now,
        scheduled_at=now,
        variables={"k": "v"},
    )


def expected_events(call: Call) -> list[str]:
    """The statuses the machine below announced for ``call``, in order."""
    events = [CallStatus.QUEUED.value]
    for a in call.attempts:
        events.append(CallStatus.INITIATED.value)
        if a.status is not AttemptStatus.DIALING:
            events.append(CallStatus.RINGING.value)
        if a.answered_at is not None:
            events.append(CallStatus.IN_PROGRESS.value)
        if a.status is AttemptStatus.COMPLETED:
            events.append(CallStatus.COMPLETED.value)
        elif a.status is AttemptStatus.BUSY:
            retry = a.number < MAX_ATTEMPTS
            events.append((CallStatus.SCHEDULED if retry else CallStatus.BUSY).value)
    return events


def step(call: Call, now: datetime, answer: bool) -> Result:
    """One status change: pending -> initiated -> ringing -> in-progress -> completed,
    or ringing -> busy, which retries (scheduled) until MAX_ATTEMPTS."""
    status, last = call.status, call.last_attempt
    if status in PENDING_STATUSES:
        attempt = Attempt(
            id=uuid.uuid4().hex,
            call_id=call.id,
            number=len(call.attempts) + 1,
            status=AttemptStatus.DIALING,
            started_at=now,
        )
        new = replace(
            call,
            status=CallStatus.INITIATED,
            scheduled_at=None,
            updated_at=now,
            attempts=(*call.attempts, attempt),
        )
        return new, (Notify(new.status),)
    assert last is not None
    retry_count, scheduled_at = call.retry_count, call.scheduled_at
    if status is CallStatus.INITIATED:
        ended, new_status = replace(last, status=AttemptStatus.RINGING), CallStatus.RINGING
    elif status is CallStatus.RINGING and answer:
        ended = replace(last, status=AttemptStatus.IN_PROGRESS, answered_at=now)
        new_status = CallStatus.IN_PROGRESS
    elif status is CallStatus.RINGING:
        ended = replace(last, status=AttemptStatus.BUSY, ended_at=now, cause=17, tech_cause=486)
        new_status = CallStatus.BUSY
        if last.number < MAX_ATTEMPTS:
            new_status, retry_count, scheduled_at = CallStatus.SCHEDULED, retry_count + 1, now
    elif status is CallStatus.IN_PROGRESS:
        ended = replace(last, status=AttemptStatus.COMPLETED, ended_at=now, cause=16)
        new_status = CallStatus.COMPLETED
    else:
        raise AssertionError(f"no step from {status}")
    new = replace(
        call,
        status=new_status,
        updated_at=now,
        retry_count=retry_count,
        scheduled_at=scheduled_at,
        attempts=(*call.attempts[:-1], ended),
    )
    return new, (Notify(new_status),)


def report(call: Call) -> None:
    # Printed only after the commit returned: the test checks this much survived.
    print(call.id, len(expected_events(call)), flush=True)


def crash_loop(path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = Store.open(path, synchronous="full" if seed % 2 else "normal")
    active = [c.id for c in store.list_calls(limit=100_000) if c.status not in FINAL_STATUSES]
    while True:
        now = datetime.now(UTC)
        roll = rng.random()
        if roll < 0.2 or not active:
            call = new_call(now)
            call, _ = store.create_call(call, (Notify(CallStatus.QUEUED),), idempotency_key=call.id)
            active.append(call.id)
            report(call)
        elif roll < 0.3:
            for event in store.outbox_due(now, 5):
                store.outbox_delivered(event.id, now)
        elif roll < 0.4:
            for call, _ in store.claim_due(now, 2, partial(step, now=now, answer=False)):
                report(call)
        else:
            call_id = rng.choice(active)
            call, _ = store.transition(call_id, partial(step, now=now, answer=rng.random() < 0.5))
            if call.status in FINAL_STATUSES:
                active.remove(call_id)
            report(call)


def claim_loop(path: str, limit: int) -> None:
    store = Store.open(path)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": both workers start claiming together
    while True:
        now = datetime.now(UTC)
        claimed = store.claim_due(now, limit, partial(step, now=now, answer=False))
        if not claimed:
            break
        for call, _ in claimed:
            print(call.id, flush=True)
        # Work outside the write lock, as a dialer would; without it one process can
        # re-take the lock before the other's busy handler wakes, and claim everything.
        store.list_calls(limit=20)
    print("done", flush=True)
    store.close()


if __name__ == "__main__":
    mode, db, arg = sys.argv[1], sys.argv[2], int(sys.argv[3])
    crash_loop(db, arg) if mode == "crash" else claim_loop(db, arg)
