"""The store work of the HTTP API that ``Store`` itself does not offer: idempotency-key
lookups, batch scheduling and stopping, and the health probe.

Plain functions over a ``Store`` rather than methods, so they need no change to
``store.py``; they use its transaction and its write path (``_tx``, ``_apply``,
``_insert_call``), so the store's invariants hold: one ``BEGIN IMMEDIATE`` per operation,
every status change through ``lifecycle.advance`` with its outbox event in the same
transaction, and the store's memory of calls kept true.

A created batch "dials nobody until scheduled": its calls are stored ``queued`` with
``scheduled_at`` NULL. The claim query compares ``scheduled_at <= now``, which is never
true for NULL, and ``next_due_at``'s ``min()`` skips NULLs, so the scheduler neither
dials nor wakes for them. Scheduling the batch sets their ``scheduled_at``; it changes no
status (still ``queued``), so it is not a lifecycle event and writes no webhook event.
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants and enum values;
# every value from outside goes through ``?`` parameters.
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .core.lifecycle import Cancel, Effect, advance
from .core.models import LIVE_STATUSES, PENDING_STATUSES, Call, CallStatus
from .errors import IllegalTransition, NotFound, StoreError
from .store import Store
from .store_rows import ts

BATCH_CREATED = "created"
BATCH_SCHEDULED = "scheduled"
BATCH_STOPPED = "stopped"

_OPEN_IN = (
    "status IN ("
    + ", ".join(f"'{s.value}'" for s in sorted(PENDING_STATUSES | LIVE_STATUSES))
    + ")"
)


def create_keyed_call(
    store: Store, call: Call, effects: Sequence[Effect], key_digest: str, request_digest: str
) -> tuple[Call, bool, bool]:
    """Insert ``call`` under an idempotency key, unless the key is known: one transaction.

    Returns ``(call, created, same_request)``: a known key gives the call first stored
    under it, ``created=False``, and whether that call was made from the same request.
    """
    prefix = key_digest + ":"
    with store._tx() as conn:
        # The key digests have a fixed length, so this range holds exactly this key's rows
        # (at most one: the unique index on idempotency_key covers the range scan).
        row = conn.execute(
            "SELECT id, idempotency_key FROM calls "
            "WHERE idempotency_key >= ? AND idempotency_key < ?",
            (prefix, key_digest + ";"),  # ';' is the character after ':'
        ).fetchone()
        if row is not None:
            return store._load(conn, row[0]), False, row[1] == prefix + request_digest
        store._insert_call(conn, call, prefix + request_digest)
        store._write_effects(conn, call, effects)
    return call, True, True


def schedule_batch(store: Store, batch_id: str, at: datetime, now: datetime) -> int:
    """Make a created batch's calls due at ``at`` (a past ``at`` means ``now``).

    Returns how many calls were scheduled. ``IllegalTransition`` unless the batch is
    ``created`` (scheduling twice, or after a stop, would be a second campaign).
    """
    at = max(at, now)
    with store._tx() as conn:
        row = conn.execute("SELECT state FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise NotFound(f"no batch {batch_id!r}")
        if row[0] != BATCH_CREATED:
            raise IllegalTransition(
                f"batch {batch_id} is {row[0]}; only a created batch is scheduled"
            )
        count = conn.execute(
            "UPDATE calls SET scheduled_at = ?, updated_at = ? "
            "WHERE batch_id = ? AND status = ? AND scheduled_at IS NULL",
            (ts(at), ts(now), batch_id, CallStatus.QUEUED.value),
        ).rowcount
        conn.execute(
            "UPDATE batches SET state = ?, scheduled_at = ? WHERE id = ?",
            (BATCH_SCHEDULED, ts(at), batch_id),
        )
        # That UPDATE bypassed the store's write path: forget what it remembers of these
        # calls, or the next transition would start from scheduled_at NULL.
        cache = store._cache
        for call_id in [cid for cid, c in cache.items() if c.batch_id == batch_id]:
            del cache[call_id]
    return int(count)


def add_batch_calls(
    store: Store, batch_id: str, calls: Sequence[tuple[Call, Sequence[Effect]]]
) -> None:
    """More calls (each with its events) for an existing batch, in one transaction.

    A large batch goes in as ``Store.create_batch`` with its first calls, then chunks of
    this, so the writer thread is never held for the whole file (100k rows take ~10 s)
    and the daemon's state changes interleave. A failure part-way leaves a batch its
    client never learned the id of, whose calls are never due (not scheduled).
    """
    with store._tx() as conn:
        if conn.execute("SELECT 1 FROM batches WHERE id = ?", (batch_id,)).fetchone() is None:
            raise NotFound(f"no batch {batch_id!r}")
        for call, effects in calls:
            if call.batch_id != batch_id:
                raise StoreError(f"call {call.id} belongs to batch {call.batch_id}, not {batch_id}")
            store._insert_call(conn, call, None)
            store._write_effects(conn, call, effects)


def stop_batch(store: Store, batch_id: str, now: datetime, limit: int = 500) -> int:
    """Stop a batch: its calls not yet final get ``Cancel(status=stopped)``.

    Pending calls end ``stopped`` at once; a call on the wire finishes its attempt and is
    not retried (lifecycle's rule). One transaction handles at most ``limit`` calls and
    returns how many it changed: call again until it returns less than ``limit`` (the
    writer thread is not held for a whole large batch). A live call already asked to
    stop is not counted again, so a stopped batch returns 0.
    """
    event = Cancel(at=now, status=CallStatus.STOPPED, reason="batch stopped")
    with store._tx() as conn:
        row = conn.execute("SELECT state FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise NotFound(f"no batch {batch_id!r}")
        if row[0] != BATCH_STOPPED:
            conn.execute("UPDATE batches SET state = ? WHERE id = ?", (BATCH_STOPPED, batch_id))
        ids = conn.execute(
            f"SELECT id FROM calls WHERE batch_id = ? AND {_OPEN_IN} "
            "AND cancel_requested IS NULL ORDER BY created_at, id LIMIT ?",
            (batch_id, limit),
        ).fetchall()
        for (call_id,) in ids:
            store._apply(conn, store._current(conn, call_id), lambda c: advance(c, event))
    return len(ids)


def database_writable(store: Store) -> bool:
    """Whether a write transaction can start (lock obtainable, file writable)."""
    try:
        with store._tx() as conn:
            # BEGIN IMMEDIATE alone succeeds on a read-only file; an UPDATE, even one that
            # matches no row (so the commit writes nothing), is refused there.
            conn.execute("UPDATE batches SET state = state WHERE 0")
    except StoreError:
        return False
    return True
