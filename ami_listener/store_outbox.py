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
  A new event delivered at its first try keeps its row as it is ('new', attempts 0) and
  gets a row in ``outbox_acked`` (seq, delivered_at): settling a batch writes a page of
  those instead of rewriting a page per ~3 events (rows hold the payload). Readers see it
  as 'delivered' with one attempt (``SELECT``), and every "new" query leaves it out.
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

import json
import sqlite3
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .errors import NotFound, StoreError
from .store_rows import dt_or_none, ts


class OutboxEvent(NamedTuple):
    """One webhook delivery owed: ``payload`` is the execution object at commit time.

    A NamedTuple, not a frozen dataclass: the sender builds one per event in the database
    thread, and a frozen dataclass's __init__ (a setattr per field) cost ~2 us of the ~7
    an event fetch takes."""

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


def event_of(row: Sequence[Any]) -> OutboxEvent:
    created = datetime.fromisoformat(row[4])
    # A new event is due at its commit time: the same text, parsed once.
    next_at = created if row[6] is row[4] else datetime.fromisoformat(row[6])
    return OutboxEvent(
        event_id(row[0], row[1]), row[0], row[1], row[2], row[3], created, row[5], next_at,
        "pending" if row[7] == "new" else row[7], row[8], row[9],
    )  # fmt: skip


INSERT = "INSERT INTO outbox (call_id, status, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?)"
# An event in outbox_acked was delivered at its first try; its row still says 'new'.
_STATE = "CASE WHEN a.seq IS NULL THEN o.state ELSE 'delivered' END"
_ACKED = "LEFT JOIN outbox_acked a ON a.seq = o.seq"
SELECT = (  # named, so that _AGG can select from it
    "SELECT o.seq AS seq, o.call_id AS call_id, o.status AS status, o.payload AS payload, "
    "o.created_at AS created_at, o.attempts + (a.seq IS NOT NULL) AS attempts, "
    f"o.next_at AS next_at, {_STATE} AS state, o.last_error AS last_error, "
    "coalesce(c.webhook_url, b.webhook_url) AS url "
    f"FROM outbox o {_ACKED} JOIN calls c ON c.id = o.call_id "
    "LEFT JOIN batches b ON b.id = c.batch_id"
)
_NOT_ACKED = "NOT EXISTS (SELECT 1 FROM outbox_acked a WHERE a.seq = o.seq)"
# Each call's head: its oldest undelivered event, and when it is due. Per-call delivery
# order: a later event waits behind its head. A dead event is not pending, so it does not
# block the events after it (a receiver that is down for good must not freeze a call's
# later news; `outbox_replay` re-queues the dead ones). Pending events are read from
# outbox_pending alone, new ones from the rowid range at the cursor (see the module doc);
# SQLite takes the bare next_at from the row that has the min(seq).
UNDELIVERED = (
    "SELECT call_id, seq, next_at FROM outbox WHERE state = 'pending' "
    "UNION ALL SELECT call_id, seq, next_at FROM outbox o "
    f"WHERE seq >= (SELECT seq FROM outbox_cursor) AND state = 'new' AND {_NOT_ACKED}"
)
HEADS = f"SELECT min(seq) AS seq, next_at FROM ({UNDELIVERED}) GROUP BY call_id"
# Reads the whole backlog (no index orders new events by next_at); only tests ask.
NEXT_AT = f"SELECT min(next_at) FROM ({HEADS})"
# outbox_due's reads. Each returns ONE row, its rows as a JSON array: the database thread
# lets go of the GIL around every step of a statement and must win it back from the event
# loop after each, so a statement per row, or a row per step, costs a GIL round trip per
# event (measured: most of the webhook sender's database time). The due pending heads,
# from outbox_pending alone:
# (``?3``: the calls to leave out, a JSON array: those the sender has an event of in hand.)
_PENDING_DUE = (
    "SELECT json_group_array(json_array(next_at, seq)) FROM (SELECT next_at, seq FROM "
    "(SELECT min(seq) AS seq, next_at, call_id FROM outbox WHERE state = 'pending' "
    "GROUP BY call_id) WHERE next_at <= ?1 AND call_id NOT IN (SELECT value FROM json_each(?3)) "
    "ORDER BY next_at, seq LIMIT ?2)"
)
# SELECT's rows in one row (see above): the small columns as a JSON array of arrays, the
# payloads joined by RS (\x1e), which compact JSON text written by ExecutionJson never holds
# (control characters are escaped), so they are not escaped and unescaped on the way.
_AGG = (
    "SELECT json_group_array(json_array(seq, call_id, status, created_at, attempts, next_at, "
    "state, last_error, url)), group_concat(payload, char(30)) FROM ({})"
)
# New events in seq order from ``seq`` on, those of calls with a pending event left out (an
# index probe each), ``limit`` at a time, whole: the first one per call is its head. Only
# the columns a new event does not know already (``_new_rows`` fills in the rest: never
# tried, so no attempts and no error, and due at its commit time).
_NEW_UNBLOCKED = (
    "SELECT json_group_array(json_array(seq, call_id, status, created_at, url)), "
    "group_concat(payload, char(30)) FROM (SELECT o.seq AS seq, o.call_id AS call_id, "
    "o.status AS status, o.created_at AS created_at, o.payload AS payload, "
    "coalesce(c.webhook_url, b.webhook_url) AS url FROM outbox o "
    "JOIN calls c ON c.id = o.call_id LEFT JOIN batches b ON b.id = c.batch_id "
    "WHERE o.seq >= max(?1, (SELECT seq FROM outbox_cursor)) "
    f"AND o.state = 'new' AND {_NOT_ACKED} AND NOT EXISTS (SELECT 1 FROM outbox p "
    "WHERE p.call_id = o.call_id AND p.state = 'pending') "
    "AND o.call_id NOT IN (SELECT value FROM json_each(?3)) ORDER BY o.seq LIMIT ?2)"
)
# The pending heads chosen, whole: a rowid lookup each (seqs as a JSON array).
_CHOSEN = _AGG.format(f"{SELECT} WHERE o.seq IN (SELECT value FROM json_each(?))")
DEPTH = (
    "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending') + (SELECT count(*) "
    "FROM outbox o WHERE seq >= (SELECT seq FROM outbox_cursor) AND state = 'new' "
    f"AND {_NOT_ACKED})"
)
_STATE_IN = {  # outbox_list's filters; a state not here is o.state = ?
    "pending": "o.state IN ('new', 'pending') AND a.seq IS NULL",
    "delivered": "(o.state = 'delivered' OR a.seq IS NOT NULL)",
}
# advance_cursor: (cursor, where it stops): the first new event from the cursor on that no
# pending event of its call precedes, else past the last event (never below the cursor).
_ADVANCE = (
    "SELECT c.seq, max(c.seq, coalesce((SELECT o.seq FROM outbox o WHERE o.seq >= c.seq "
    f"AND o.state = 'new' AND {_NOT_ACKED} AND NOT EXISTS (SELECT 1 FROM outbox p "
    "WHERE p.call_id = o.call_id AND p.seq < o.seq AND p.state = 'pending') "
    "ORDER BY o.seq LIMIT 1), (SELECT max(seq) + 1 FROM outbox), c.seq)) FROM outbox_cursor c"
)
_PASSED = (  # the new events the cursor passes: each waits behind a pending one of its call
    "UPDATE outbox SET state = 'pending' "
    "WHERE seq >= ?1 AND seq < ?2 AND state = 'new' "
    "AND NOT EXISTS (SELECT 1 FROM outbox_acked a WHERE a.seq = outbox.seq)"
)
_NO_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)  # a dead event sets no instant (SETTLE)
# Settlements as one JSON array of [state, at, error, attempted, seq, call id] rows, so a
# batch is two statements, not two per event (see outbox_due's reads on the GIL): a first
# try that delivered goes into outbox_acked, anything else updates the row (``at`` is
# delivered_at when delivered, else next_at).
_BATCH = (
    "SELECT value ->> 0 AS state, value ->> 1 AS at, value ->> 2 AS error, value ->> 3 AS "
    "attempted, value ->> 4 AS seq, value ->> 5 AS call_id FROM json_each(?)"
)
ACK = (  # its own array, of the deliveries only: [seq, call id, delivered_at] rows
    "INSERT OR IGNORE INTO outbox_acked (seq, delivered_at) SELECT o.seq, s.value ->> 2 "
    "FROM json_each(?) s JOIN outbox o ON o.seq = s.value ->> 0 AND o.call_id = s.value ->> 1 "
    "WHERE o.state = 'new'"
)
SETTLE = (  # a new event settled 'pending' joins outbox_pending
    "UPDATE outbox SET state = s.state, attempts = attempts + s.attempted, last_error = s.error, "
    "delivered_at = CASE WHEN s.state = 'delivered' THEN s.at ELSE delivered_at END, "
    "next_at = CASE WHEN s.state = 'pending' THEN s.at ELSE next_at END "
    f"FROM ({_BATCH}) s WHERE outbox.seq = s.seq AND outbox.call_id = s.call_id "
    "AND NOT EXISTS (SELECT 1 FROM outbox_acked a WHERE a.seq = outbox.seq)"
)


class OutboxStore:
    """The outbox half of ``Store``: delivery reads and the per-event writes."""

    _conn: sqlite3.Connection

    def _tx(self, begin: str = "BEGIN IMMEDIATE") -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Store's: one transaction, see store.py

    def outbox_due(
        self, now: datetime, limit: int, *, skip: Collection[str] = ()
    ) -> list[OutboxEvent]:
        """Events to deliver now: each call's oldest pending event, if due; at most
        ``limit``, in (next_at, seq) order (the sender stops at the first one not due).
        Calls in ``skip`` are left out (the sender's, with an event in flight: their head
        is that event, and it is not read again).

        Past ``limit`` due heads, new ones are taken in seq order: the same events as
        sorting every call's head would give, as long as new events' next_at (their
        commit time) rises with seq.
        """
        if limit <= 0:
            return []
        at = ts(now)
        with self._tx("BEGIN") as conn:  # one snapshot for the reads
            skipped = json.dumps(list(skip))
            pending = json.loads(conn.execute(_PENDING_DUE, (at, limit, skipped)).fetchone()[0])
            heads: list[tuple[str, int, list[Any] | None]] = [(n, q, None) for n, q in pending]
            heads += [(row[6], row[0], row) for row in _new_heads(conn, at, limit, skipped)]
            heads.sort(key=lambda head: head[:2])
            del heads[limit:]
            wanted = [seq for _, seq, row in heads if row is None]
            chosen = _rows(conn.execute(_CHOSEN, (json.dumps(wanted),))) if wanted else []
        by_seq = {row[0]: row for row in chosen}
        return [event_of(by_seq[seq] if row is None else row) for _, seq, row in heads]

    def outbox_delivered(self, event_id: str, at: datetime) -> None:
        self._settle_one(Settlement(event_id, "delivered", at))

    def outbox_retry_later(self, event_id: str, next_at: datetime, error: str) -> None:
        self._settle_one(Settlement(event_id, "pending", next_at, error))

    def outbox_dead(self, event_id: str, error: str) -> None:
        """Give up on an event after a failed attempt; it no longer blocks its call."""
        self._settle_one(Settlement(event_id, "dead", _NO_INSTANT, error))

    def outbox_settle(self, results: Sequence[Settlement]) -> None:
        """Write several delivery results in ONE transaction (one fsync, not one each).

        The webhook sender acknowledges in batches: at hundreds of deliveries a second a
        commit per event would make the disk, not the network, the limit. An id that
        matches no row is skipped (rows are never deleted; it cannot come from a fetch).
        """
        rows = _settle_rows(results)
        with self._tx() as conn:
            _settle(conn, rows)

    def _settle_one(self, result: Settlement) -> None:
        rows = _settle_rows([result])
        with self._tx() as conn:
            if _settle(conn, rows) == 0:
                raise NotFound(f"no outbox event {result.event_id!r}")

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


Batch = tuple[str, int, str, int]  # SETTLE's JSON, its row count; ACK's JSON, its row count


def _settle_rows(results: Sequence[Settlement]) -> Batch:
    """The settlements as SETTLE's JSON, and the deliveries among them as ACK's."""
    rows = []
    acks = []
    for r in results:
        key = parse_event_id(r.event_id)
        if key is None:
            raise NotFound(f"no outbox event {r.event_id!r}")
        at = ts(r.at)
        rows.append((r.state, at, r.error, int(r.attempted), *key))
        if r.attempted and r.state == "delivered":
            acks.append((*key, at))
    return json.dumps(rows), len(rows), json.dumps(acks), len(acks)


def _settle(conn: sqlite3.Connection, batch: Batch) -> int:
    """Write settlements (``_settle_rows``) and move the cursor; how many events matched."""
    rows, count, acks, deliveries = batch
    matched = conn.execute(ACK, (acks,)).rowcount if deliveries else 0
    # The usual batch is first tries that all delivered: ACK took every one, nothing is
    # left for SETTLE (which would look each one up again to find it acked).
    if matched < count:
        matched += conn.execute(SETTLE, (rows,)).rowcount
    advance_cursor(conn)
    return matched


def _split(cursor: sqlite3.Cursor) -> tuple[list[list[Any]], list[str]]:
    """An aggregated read's rows (small columns) and their payloads."""
    small, payloads = cursor.fetchone()
    rows: list[list[Any]] = json.loads(small)
    texts = payloads.split("\x1e") if payloads is not None else []
    if len(texts) != len(rows):  # only a payload not written by the store could do this
        raise StoreError("an outbox payload holds an RS (\\x1e) character")
    return rows, texts


def _rows(cursor: sqlite3.Cursor) -> list[list[Any]]:
    """An ``_AGG`` query's rows, in SELECT's column order."""
    rows, texts = _split(cursor)
    for row, text in zip(rows, texts, strict=True):
        row.insert(3, text)
    return rows


def _new_rows(cursor: sqlite3.Cursor) -> list[list[Any]]:
    """``_NEW_UNBLOCKED``'s rows, in SELECT's column order."""
    rows, texts = _split(cursor)
    return [
        [seq, call_id, status, text, created, 0, created, "new", None, url]
        for (seq, call_id, status, created, url), text in zip(rows, texts, strict=True)
    ]


def _new_heads(conn: sqlite3.Connection, at: str, limit: int, skipped: str) -> list[list[Any]]:
    """The first ``limit`` due heads among new events, whole, in seq order.

    Read ``limit`` rows at a time from the cursor, and no further once ``limit`` heads are
    found: a backlog can be 100k events, payload pages included.
    """
    heads: list[list[Any]] = []
    seen: set[str] = set()  # calls whose head went by, due or not
    start = 0
    while True:
        rows = _new_rows(conn.execute(_NEW_UNBLOCKED, (start, limit, skipped)))
        rows.sort()  # json_group_array keeps the subquery's order in practice, not by contract
        for row in rows:
            if row[1] in seen:
                continue
            seen.add(row[1])
            if row[6] <= at:
                heads.append(row)
                if len(heads) == limit:
                    return heads
        if len(rows) < limit:
            return heads
        start = rows[-1][0] + 1


def advance_cursor(conn: sqlite3.Connection) -> None:
    """Move outbox_cursor up to the first new event that heads its call (see the module
    doc); new events it passes that wait behind a pending one of their call become pending.

    The first new event from the cursor on with no pending event of its call below it is
    where the cursor stops: every new event before it waits behind a pending one (were one
    not, the cursor would stop there), and becomes pending. Run in the transaction that
    settled events, after their updates.
    """
    start, stop = conn.execute(_ADVANCE).fetchone()
    if stop != start:
        conn.execute(_PASSED, (start, stop))
        conn.execute("UPDATE outbox_cursor SET seq = ? WHERE id = 0", (stop,))
