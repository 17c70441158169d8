"""The webhook outbox: ``OutboxStore``, the outbox half of ``Store``.

Events and their ids are in ``store_events``; the sender's fetch and settle statements in
``store_delivery``.

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
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants.
from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from . import store_delivery as delivery
from .errors import NotFound, StoreError
from .store_events import (
    INSERT,
    NOT_ACKED,
    SELECT,
    OutboxEvent,
    Settlement,
    event_id,
    event_of,
    parse_event_id,
)
from .store_part import StorePart
from .store_rows import ts

__all__ = [
    "DEPTH",
    "INSERT",
    "SELECT",
    "OutboxEvent",
    "OutboxStore",
    "Settlement",
    "event_id",
    "event_of",
    "parse_event_id",
]

# Each call's head is its oldest undelivered event. Per-call delivery order: a later event
# waits behind its head. A dead event is not pending, so it does not block the events after
# it (a receiver that is down for good must not freeze a call's later news;
# `outbox_replay` re-queues the dead ones). Pending events are read from outbox_pending
# alone, new ones from the rowid range at the cursor (see the module doc).
DEPTH = (
    "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending') + (SELECT count(*) "
    "FROM outbox o WHERE seq >= (SELECT seq FROM outbox_cursor) AND state = 'new' "
    f"AND {NOT_ACKED})"
)
_STATE_IN = {  # outbox_list's filters; a state not here is o.state = ?
    "pending": "o.state IN ('new', 'pending') AND a.seq IS NULL",
    "delivered": "(o.state = 'delivered' OR a.seq IS NOT NULL)",
}
_NO_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)  # a dead event sets no instant (SETTLE)
_LAST_INSTANT = datetime.max.replace(tzinfo=UTC)  # next_outbox_at: due or not


class OutboxStore(StorePart):
    """The outbox half of ``Store``: delivery reads and the per-event writes."""

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
        with self._tx("BEGIN", calls=False) as conn:  # one snapshot for the reads
            return delivery.due(conn, ts(now), limit, skip)

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
        with self._tx(calls=False) as conn:
            delivery.settle(conn, results)

    def outbox_settle_and_due(
        self,
        results: Sequence[Settlement],
        now: datetime,
        limit: int,
        *,
        skip: Collection[str] = (),
    ) -> list[OutboxEvent]:
        """``outbox_settle(results)`` then ``outbox_due(now, limit, skip=skip)``, in one
        transaction: the webhook sender's trip to the database. One BEGIN and COMMIT
        fewer per trip; the database thread gives up the GIL around each statement
        (``store_delivery``'s module doc), so a statement less is a GIL round trip less."""
        if not results:
            return self.outbox_due(now, limit, skip=skip)
        with self._tx(calls=False) as conn:
            delivery.settle(conn, results)
            return delivery.due(conn, ts(now), limit, skip) if limit > 0 else []

    def _settle_one(self, result: Settlement) -> None:
        with self._tx() as conn:
            if delivery.settle(conn, [result]) == 0:
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
        """When the soonest head is due (past or not), None when nothing is undelivered.

        ``outbox_due``'s fetch for one head, due or not: it costs what the pending heads
        hold, not the backlog of new events, and takes the first new head by seq, the
        soonest as long as new events' next_at (their commit time) rises with seq.
        """
        heads = self.outbox_due(_LAST_INSTANT, 1)
        return heads[0].next_at if heads else None

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
