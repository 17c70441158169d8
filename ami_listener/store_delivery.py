"""The webhook sender's two trips to the database: the fetch and the settle.

Both run in the database thread, which lets go of the GIL around every step of a SQLite
statement and must win it back from the event loop after each: a statement per event, or
a row per step, cost a GIL round trip per event (measured: most of the sender's database
time). So each trip is a handful of statements whatever it holds: reads return ONE row
(rows as a JSON array, payloads joined by RS), writes take one JSON array.

The fetch costs what it returns, not the backlog. A call's pending events are all below
its new ones (an event is tried only as its call's head, inserts take a seq above all, and
the cursor turns a new event pending only behind a pending one), so a call with a pending
event has its head there, and any other call's head is its first new event. Pending heads
come from ``outbox_pending`` alone; new heads from the rowid range at the cursor, read in
seq order only until ``limit`` due ones are found, whole.

The settle records a first try that delivered in ``outbox_acked`` (the outbox row, which
holds the payload, is not rewritten), anything else in the event's row, then moves the
cursor (``store_outbox``'s module doc).
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants.
from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from .errors import NotFound, StoreError
from .store_events import NOT_ACKED, SELECT, OutboxEvent, Settlement, event_of, parse_event_id
from .store_rows import ts

# The fetch's reads, each returning ONE row (see the module doc). The due pending heads,
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
# index probe each), ``limit`` at a time, whole: the first one per call is its head.
_NEW_UNBLOCKED = _AGG.format(
    f"{SELECT} WHERE o.seq >= max(?1, (SELECT seq FROM outbox_cursor)) "
    "AND o.state = 'new' AND a.seq IS NULL AND NOT EXISTS (SELECT 1 FROM outbox p "
    "WHERE p.call_id = o.call_id AND p.state = 'pending') "
    "AND o.call_id NOT IN (SELECT value FROM json_each(?3)) ORDER BY o.seq LIMIT ?2"
)
# The pending heads chosen, whole: a rowid lookup each (seqs as a JSON array).
_CALL, _NEXT_AT = itemgetter(1), itemgetter(6)  # of a row in SELECT's column order
_DUE_ORDER = itemgetter(6, 0)  # (next_at, seq)
_CHOSEN = _AGG.format(f"{SELECT} WHERE o.seq IN (SELECT value FROM json_each(?))")
# advance_cursor: (cursor, where it stops, whether any event is pending): it stops at the
# first new event from the cursor on that no pending event of its call precedes, else past
# the last event (never below the cursor). With no pending event (outbox_pending empty, the
# usual case) no event can wait behind one: the stop's search finds the first unacked new
# event, and nothing is passed.
# The cursor's stop, from the cursor ``c`` on: the first new event that no pending event
# of its call precedes (``{blocked}``), else past the last event; never below the cursor.
_STOP = (
    "max(c.seq, coalesce((SELECT o.seq FROM outbox o WHERE o.seq >= c.seq "
    f"AND o.state = 'new' AND {NOT_ACKED}{{blocked}} ORDER BY o.seq LIMIT 1), "
    "(SELECT max(seq) + 1 FROM outbox), c.seq))"
)
_ANY_PENDING = "EXISTS (SELECT 1 FROM outbox WHERE state = 'pending')"
# advance_cursor: (cursor, where it stops, whether any event is pending).
_ADVANCE = (
    "SELECT c.seq, "
    + _STOP.format(
        blocked=" AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.call_id = o.call_id "
        "AND p.seq < o.seq AND p.state = 'pending')"
    )
    + f", {_ANY_PENDING} FROM outbox_cursor c"
)
# advance_cursor's one statement for the usual case, no event pending (nothing can wait
# behind one, so the stop needs no such test): the stop, written only if it moves the
# cursor. No row changed means the cursor stays or an event is pending: then _ADVANCE
# decides, as always.
_ADVANCE_UNBLOCKED = (
    f"UPDATE outbox_cursor SET seq = s.stop FROM (SELECT {_STOP.format(blocked='')} AS stop "
    "FROM outbox_cursor c) s WHERE outbox_cursor.id = 0 AND outbox_cursor.seq != s.stop "
    f"AND NOT {_ANY_PENDING}"
)
_PASSED = (  # the new events the cursor passes: each waits behind a pending one of its call
    "UPDATE outbox SET state = 'pending' "
    "WHERE seq >= ?1 AND seq < ?2 AND state = 'new' "
    "AND NOT EXISTS (SELECT 1 FROM outbox_acked a WHERE a.seq = outbox.seq)"
)
# Settlements as one JSON array of [state, at, error, attempted, seq, call id] rows, so a
# batch is two statements, not two per event (see the module doc): a first
# try that delivered goes into outbox_acked, anything else updates the row (``at`` is
# delivered_at when delivered, else next_at).
_BATCH = (
    "SELECT value ->> 0 AS state, value ->> 1 AS at, value ->> 2 AS error, value ->> 3 AS "
    "attempted, value ->> 4 AS seq, value ->> 5 AS call_id FROM json_each(?)"
)
_ACK = (  # its own array, of the deliveries only: [event id, delivered_at in us] rows
    # The id is taken apart here, and the instant written out, in C: the database thread
    # holds the GIL while it runs Python, and each microsecond of that per event cost
    # the sender 1.5-2% of its rate (an A/B of the sender with Python added there). The
    # id must be exactly the one event_id() gives for the row it names, and the instant
    # not before 1970 (the integer arithmetic below); anything else is left to SETTLE.
    "INSERT OR IGNORE INTO outbox_acked (seq, delivered_at) SELECT o.seq, "
    "strftime('%Y-%m-%dT%H:%M:%S', s.us / 1000000, 'unixepoch') "
    "|| printf('.%06d+00:00', s.us % 1000000) "
    "FROM (SELECT value ->> 0 AS id, value ->> 1 AS us FROM json_each(?)) s "
    "JOIN outbox o ON o.seq = CAST(substr(s.id, 5, instr(substr(s.id, 5), '_') - 1) AS INTEGER) "
    "AND 'evt_' || o.seq || '_' || o.call_id = s.id WHERE o.state = 'new' AND s.us >= 0"
)
_SETTLE = (  # a new event settled 'pending' joins outbox_pending
    "UPDATE outbox SET state = s.state, attempts = attempts + s.attempted, last_error = s.error, "
    "delivered_at = CASE WHEN s.state = 'delivered' THEN s.at ELSE delivered_at END, "
    "next_at = CASE WHEN s.state = 'pending' THEN s.at ELSE next_at END "
    f"FROM ({_BATCH}) s WHERE outbox.seq = s.seq AND outbox.call_id = s.call_id "
    "AND NOT EXISTS (SELECT 1 FROM outbox_acked a WHERE a.seq = outbox.seq)"
)


def due(conn: sqlite3.Connection, at: str, limit: int, skip: Collection[str]) -> list[OutboxEvent]:
    """``OutboxStore.outbox_due``'s reads, in its read transaction (``at``: ``ts(now)``)."""
    skipped = json.dumps(list(skip))
    pending = json.loads(conn.execute(_PENDING_DUE, (at, limit, skipped)).fetchone()[0])
    new = _new_heads(conn, at, limit, skipped)
    if not pending:  # the usual case; the same as below, in C (this thread holds the GIL)
        new.sort(key=_DUE_ORDER)
        return list(map(event_of, new))
    heads: list[tuple[str, int, list[Any] | None]] = [(n, q, None) for n, q in pending]
    heads += [(row[6], row[0], row) for row in new]
    heads.sort()  # by (next_at, seq): seq is unique, so the row is never compared
    del heads[limit:]
    wanted = [seq for _, seq, row in heads if row is None]
    chosen = _rows(conn.execute(_CHOSEN, (json.dumps(wanted),))) if wanted else []
    by_seq = {row[0]: row for row in chosen}
    return [event_of(by_seq[seq] if row is None else row) for _, seq, row in heads]


def settle_rows(results: Sequence[Settlement]) -> list[tuple[Any, ...]]:
    """The settlements as SETTLE's rows; ``NotFound`` for an id ``event_id`` did not make."""
    rows = []
    for r in results:
        key = parse_event_id(r.event_id)
        if key is None:
            raise NotFound(f"no outbox event {r.event_id!r}")
        rows.append((r.state, ts(r.at), r.error, int(r.attempted), *key))
    return rows


def settle(conn: sqlite3.Connection, results: Sequence[Settlement]) -> int:
    """Write settlements and move the cursor; how many events matched. ``NotFound`` (the
    caller's transaction then rolls back) for an id ``event_id`` did not make."""
    acks = json.dumps(
        [(r.event_id, micros(r.at)) for r in results if r.attempted and r.state == "delivered"]
    )
    matched = conn.execute(_ACK, (acks,)).rowcount if acks != "[]" else 0
    # The usual batch is first tries that all delivered: ACK took every one, nothing is
    # left for SETTLE (which would look each one up again to find it acked).
    if matched < len(results):
        matched += conn.execute(_SETTLE, (json.dumps(settle_rows(results)),)).rowcount
    advance_cursor(conn)
    return matched


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """Microseconds since the epoch; ACK writes them out as ``ts`` would."""
    try:
        return (at - _EPOCH) // _MICROSECOND
    except TypeError:
        raise StoreError(f"naive datetime {at!r}: instants must be aware UTC") from None


def _rows(cursor: sqlite3.Cursor) -> list[list[Any]]:
    """An ``_AGG`` query's rows, in SELECT's column order."""
    small, payloads = cursor.fetchone()
    rows: list[list[Any]] = json.loads(small)
    texts = payloads.split("\x1e") if payloads is not None else []
    if len(texts) != len(rows):  # only a payload not written by the store could do this
        raise StoreError("an outbox payload holds an RS (\\x1e) character")
    for row, text in zip(rows, texts, strict=True):
        row.insert(3, text)
    return rows


def _new_heads(conn: sqlite3.Connection, at: str, limit: int, skipped: str) -> list[list[Any]]:
    """The first ``limit`` due heads among new events, whole, in seq order.

    Read ``limit`` rows at a time from the cursor, and no further once ``limit`` heads are
    found: a backlog can be 100k events, payload pages included.
    """
    heads: list[list[Any]] = []
    seen: set[str] = set()  # calls whose head went by, due or not
    start = 0
    while True:
        rows = _rows(conn.execute(_NEW_UNBLOCKED, (start, limit, skipped)))
        rows.sort()  # json_group_array keeps the subquery's order in practice, not by contract
        calls = list(map(_CALL, rows))
        if (  # the usual read: each row is its call's first, all are due (in C, see due())
            len(set(calls)) == len(rows)
            and seen.isdisjoint(calls)
            and (not rows or max(map(_NEXT_AT, rows)) <= at)
        ):
            heads += rows[: limit - len(heads)]
            if len(heads) == limit:
                return heads
            seen.update(calls)
        else:
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
    if conn.execute(_ADVANCE_UNBLOCKED).rowcount:  # one statement, not two or three
        return
    start, stop, pending = conn.execute(_ADVANCE).fetchone()
    if stop != start:
        if pending:  # else every event passed is acked or settled: nothing waits
            conn.execute(_PASSED, (start, stop))
        conn.execute("UPDATE outbox_cursor SET seq = ? WHERE id = 0", (stop,))
