"""The webhook outbox's rows: events, their stable ids, and the delivery queries.

An event's id is ``evt_<seq>_<call id>``. ``seq`` is the outbox rowid, fixed when the
event commits and never reused (outbox rows are never deleted, so a new seq is always
above every stored one); the call id, unique per call, keeps ids from two databases apart.
So the id is stable once committed (what receivers de-duplicate on) and costs no column
and no UNIQUE index: a lookup by id is a rowid lookup, checked against the call id.

Finding what to deliver without an index entry per new event (the outcome commit would
pay a page for it). Undelivered events are of two kinds:

- ``new``: never tried. Every one has ``seq >= outbox_cursor.seq``, because an insert
  always takes a seq above all stored ones and the cursor only moves past events that are
  no longer new. Delivery reads the rowid range from the cursor on: the new events plus
  those settled after the cursor's (a few, since events are tried about in seq order).
- ``pending``: tried and due again at ``next_at``, or replayed; in the small partial
  index ``outbox_pending``.

Settling moves the cursor up to the first new event that is its call's head; a new event
it passes that waits behind its call's pending one becomes pending itself (same
``next_at``, still untried), so one receiver that is down cannot pin the cursor. A call's
head is its lowest-seq event of either kind; readers see ``new`` as ``pending``.

A fetch (``outbox_due``) costs what it returns, not the backlog. A call's pending events
are all below its new ones (an event is tried only as its call's head, inserts take a seq
above all, and the cursor turns a new event pending only behind a pending one), so a call
with a pending event has its head there, and any other call's head is its first new event.
Pending heads come from ``outbox_pending`` alone; new heads from the rowid range at the
cursor, read in seq order only until ``limit`` due ones are found; the whole rows (payload
included) are read for the events returned.
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants.
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import NotFound, StoreError
from .store_rows import dt_or_none, ts


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One webhook delivery owed: ``payload`` is the execution object at commit time."""

    id: str
    seq: int
    call_id: str
    status: str
    payload: str
    created_at: datetime
    attempts: int  # delivery attempts recorded so far
    next_at: datetime
    state: str  # pending | delivered | dead
    last_error: str | None
    webhook_url: str | None  # the call's url, else its batch's, else None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one delivery attempt ended, for ``outbox_settle``.

    ``state``: 'delivered' (``at`` = delivered_at), 'pending' (retry at ``at``) or 'dead'.
    ``attempted`` is False when nothing was sent (no destination): attempts stay as they are.
    """

    event_id: str
    state: str
    at: datetime
    error: str | None = None
    attempted: bool = True


def event_id(seq: int, call_id: str) -> str:
    return f"evt_{seq}_{call_id}"


def parse_event_id(text: str) -> tuple[int, str] | None:
    """(seq, call id) of an id made by ``event_id``; None for anything else."""
    prefix, _, rest = text.partition("_")
    seq, _, call_id = rest.partition("_")
    if prefix != "evt" or not seq.isdecimal() or not call_id or len(seq) > 18:
        return None
    return int(seq), call_id


def event_of(row: tuple[Any, ...]) -> OutboxEvent:
    return OutboxEvent(
        event_id(row[0], row[1]), row[0], row[1], row[2], row[3],
        datetime.fromisoformat(row[4]), row[5], datetime.fromisoformat(row[6]),
        "pending" if row[7] == "new" else row[7], row[8], row[9],
    )  # fmt: skip


INSERT = "INSERT INTO outbox (call_id, status, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?)"
SELECT = (
    "SELECT o.seq, o.call_id, o.status, o.payload, o.created_at, o.attempts, "
    "o.next_at, o.state, o.last_error, coalesce(c.webhook_url, b.webhook_url) "
    "FROM outbox o JOIN calls c ON c.id = o.call_id LEFT JOIN batches b ON b.id = c.batch_id"
)
# Each call's head: its oldest undelivered event, and when it is due. Per-call delivery
# order: a later event waits behind its head. A dead event is not pending, so it does not
# block the events after it (a receiver that is down for good must not freeze a call's
# later news; `outbox_replay` re-queues the dead ones). Pending events are read from
# outbox_pending alone, new ones from the rowid range at the cursor (see the module doc);
# SQLite takes the bare next_at from the row that has the min(seq).
UNDELIVERED = (
    "SELECT call_id, seq, next_at FROM outbox WHERE state = 'pending' "
    "UNION ALL SELECT call_id, seq, next_at FROM outbox "
    "WHERE seq >= (SELECT seq FROM outbox_cursor) AND state = 'new'"
)
HEADS = f"SELECT min(seq) AS seq, next_at FROM ({UNDELIVERED}) GROUP BY call_id"
# Reads the whole backlog (no index orders new events by next_at); only tests ask.
NEXT_AT = f"SELECT min(next_at) FROM ({HEADS})"
# outbox_due's three reads. The due pending heads, from outbox_pending alone:
_PENDING_DUE = (
    "SELECT next_at, seq FROM (SELECT min(seq) AS seq, next_at FROM outbox "
    "WHERE state = 'pending' GROUP BY call_id) WHERE next_at <= ? ORDER BY next_at, seq LIMIT ?"
)
# New events in seq order, those of calls with a pending event left out (an index probe
# each): the first one per call left is its head. Read lazily, only as far as needed.
_NEW_UNBLOCKED = (
    "SELECT o.seq, o.call_id, o.next_at FROM outbox o "
    "WHERE o.seq >= (SELECT seq FROM outbox_cursor) AND o.state = 'new' AND NOT EXISTS "
    "(SELECT 1 FROM outbox p WHERE p.call_id = o.call_id AND p.state = 'pending') ORDER BY o.seq"
)
# The events chosen, whole: a rowid lookup each (seqs as a JSON array). Put in order in
# Python: an ORDER BY here would copy each row, payload included, into a sorter.
_CHOSEN = f"{SELECT} WHERE o.seq IN (SELECT value FROM json_each(?))"
DEPTH = (
    "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending') + (SELECT count(*) "
    "FROM outbox WHERE seq >= (SELECT seq FROM outbox_cursor) AND state = 'new')"
)
_STATE_IN = {"pending": "o.state IN ('new', 'pending')"}  # else o.state = ?
_ADVANCE_CHUNK = 512
_ADVANCE_SLACK = 8  # the first chunk: events settled, plus a few settled out of order
_CURSOR = "SELECT seq FROM outbox_cursor"
_FROM_CURSOR = "SELECT seq, call_id, state FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?"
_BLOCKED = "SELECT 1 FROM outbox WHERE call_id = ? AND seq < ? AND state = 'pending' LIMIT 1"
BY_ID = "WHERE seq = ? AND call_id = ?"
# One statement for every settlement: ``at`` is delivered_at when delivered, else next_at.
SETTLE = (  # a new event settled 'pending' joins outbox_pending
    "UPDATE outbox SET state = ?1, attempts = attempts + ?4, last_error = ?3, "
    "delivered_at = CASE WHEN ?1 = 'delivered' THEN ?2 ELSE delivered_at END, "
    "next_at = CASE WHEN ?1 = 'pending' THEN ?2 ELSE next_at END "
    "WHERE seq = ?5 AND call_id = ?6"
)


class OutboxStore:
    """The outbox half of ``Store``: delivery reads and the per-event writes."""

    _conn: sqlite3.Connection

    def _tx(self, begin: str = "BEGIN IMMEDIATE") -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Store's: one transaction, see store.py

    def outbox_due(self, now: datetime, limit: int) -> list[OutboxEvent]:
        """Events to deliver now: each call's oldest pending event, if due; at most
        ``limit``, in (next_at, seq) order (the sender stops at the first one not due).

        Past ``limit`` due heads, new ones are taken in seq order: the same events as
        sorting every call's head would give, as long as new events' next_at (their
        commit time) rises with seq.
        """
        if limit <= 0:
            return []
        at = ts(now)
        with self._tx("BEGIN") as conn:  # one snapshot for the three reads
            heads = conn.execute(_PENDING_DUE, (at, limit)).fetchall()
            heads += _new_heads(conn, at, limit)
            heads.sort()
            order = [seq for _, seq in heads[:limit]]
            rows = conn.execute(_CHOSEN, (f"[{','.join(map(str, order))}]",)).fetchall()
        by_seq = {row[0]: row for row in rows}
        return [event_of(by_seq[seq]) for seq in order if seq in by_seq]

    def outbox_delivered(self, event_id: str, at: datetime) -> None:
        self._outbox_set(
            "state = 'delivered', attempts = attempts + 1, delivered_at = ?", (ts(at),), event_id
        )

    def outbox_retry_later(self, event_id: str, next_at: datetime, error: str) -> None:
        self._outbox_set(
            "state = 'pending', attempts = attempts + 1, next_at = ?, last_error = ?",
            (ts(next_at), error),
            event_id,
        )

    def outbox_dead(self, event_id: str, error: str) -> None:
        """Give up on an event after a failed attempt; it no longer blocks its call."""
        self._outbox_set(
            "state = 'dead', attempts = attempts + 1, last_error = ?", (error,), event_id
        )

    def outbox_settle(self, results: Sequence[Settlement]) -> None:
        """Write several delivery results in ONE transaction (one fsync, not one each).

        The webhook sender acknowledges in batches: at hundreds of deliveries a second a
        commit per event would make the disk, not the network, the limit. An id that
        matches no row is skipped (rows are never deleted; it cannot come from a fetch).
        """
        rows = []
        for r in results:
            key = parse_event_id(r.event_id)
            if key is None:
                raise NotFound(f"no outbox event {r.event_id!r}")
            rows.append((r.state, ts(r.at), r.error, int(r.attempted), *key))
        with self._tx() as conn:
            conn.executemany(SETTLE, rows)
            advance_cursor(conn, len(rows))

    def outbox_get(self, event_id: str) -> OutboxEvent:
        key = parse_event_id(event_id)
        found = (
            [] if key is None else self._events(f"{SELECT} WHERE o.seq = ? AND o.call_id = ?", key)
        )
        if not found:
            raise NotFound(f"no outbox event {event_id!r}")
        return found[0]

    def outbox_list(self, *, state: str | None = None, limit: int = 100) -> list[OutboxEvent]:
        """Events in commit order, optionally in one state."""
        args: tuple[Any, ...] = ()
        if state is None:
            where = ""
        elif state in _STATE_IN:
            where = f" WHERE {_STATE_IN[state]}"
        else:
            where, args = " WHERE o.state = ?", (state,)
        return self._events(f"{SELECT}{where} ORDER BY o.seq LIMIT ?", (*args, limit))

    def outbox_replay(self, event_ids: Sequence[str] | None = None) -> int:
        """Dead events back to pending (all dead when ``event_ids`` is None); how many.

        ``attempts`` restarts at 0 so backoff starts over; ``next_at`` is kept, which is in
        the past, so they are due at once.
        """
        sql = "UPDATE outbox SET state = 'pending', attempts = 0 WHERE state = 'dead'"
        with self._tx() as conn:
            if event_ids is None:
                return conn.execute(sql).rowcount
            keys = [k for k in map(parse_event_id, event_ids) if k is not None]
            return sum(conn.execute(f"{sql} AND seq = ? AND call_id = ?", k).rowcount for k in keys)

    def next_outbox_at(self) -> datetime | None:
        return dt_or_none(self._one(NEXT_AT)[0])

    def outbox_depth(self) -> int:
        """Undelivered events, dead ones excluded."""
        return int(self._one(DEPTH)[0])

    # ---- shared with Store ----
    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            return self._conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _events(self, sql: str, args: tuple[Any, ...]) -> list[OutboxEvent]:
        try:
            return [event_of(row) for row in self._conn.execute(sql, args).fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _outbox_set(self, assignments: str, args: tuple[Any, ...], event_id: str) -> None:
        key = parse_event_id(event_id)
        if key is None:
            raise NotFound(f"no outbox event {event_id!r}")
        with self._tx() as conn:
            cur = conn.execute(f"UPDATE outbox SET {assignments} {BY_ID}", (*args, *key))
            if cur.rowcount == 0:
                raise NotFound(f"no outbox event {event_id!r}")
            advance_cursor(conn)


def _new_heads(conn: sqlite3.Connection, at: str, limit: int) -> list[tuple[str, int]]:
    """(next_at, seq) of the first ``limit`` due heads among new events, in seq order.

    Rows are stepped one at a time and the statement closed at the stop: nothing past
    the last head is read (a backlog can be 100k events, payload pages included).
    """
    heads: list[tuple[str, int]] = []
    seen: set[str] = set()  # calls whose head went by, due or not
    cur = conn.execute(_NEW_UNBLOCKED)
    try:
        for seq, call_id, next_at in cur:
            if call_id in seen:
                continue
            seen.add(call_id)
            if next_at <= at:
                heads.append((next_at, seq))
                if len(heads) == limit:
                    break
    finally:
        cur.close()
    return heads


def advance_cursor(conn: sqlite3.Connection, settled: int = 1) -> None:
    """Move outbox_cursor up to the first new event that heads its call (see the module
    doc); new events it passes that wait behind a pending one of their call become pending.

    Reads from the cursor in chunks: events settle about in seq order, so this is the
    ``settled`` events just written (plus, while the cursor's event is in flight, those
    settled after it). The first chunk is sized for them, and chunks double from there:
    rows past the cursor's stop are read for nothing (a whole event each, payload
    included, once the rows no longer fit in the page cache). Run in the transaction that
    settled events, after their updates.
    """
    start = seq = conn.execute(_CURSOR).fetchone()[0]
    chunk = min(_ADVANCE_CHUNK, settled + _ADVANCE_SLACK)
    while True:
        rows = conn.execute(_FROM_CURSOR, (seq, chunk)).fetchall()
        for row_seq, call_id, state in rows:
            if state == "new":
                if conn.execute(_BLOCKED, (call_id, row_seq)).fetchone() is None:
                    seq = row_seq  # a head: it stays new and the cursor stops at it
                    break
                conn.execute("UPDATE outbox SET state = 'pending' WHERE seq = ?", (row_seq,))
            seq = row_seq + 1
        else:
            if len(rows) == chunk:
                chunk = min(_ADVANCE_CHUNK, 2 * chunk)
                continue
        break
    if seq != start:
        conn.execute("UPDATE outbox_cursor SET seq = ? WHERE id = 0", (seq,))
