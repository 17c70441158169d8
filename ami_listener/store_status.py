"""The store reads of ``GET /metrics`` and ``autoretry status`` that ``Store`` does not offer.

Plain functions over a ``Store`` (as ``store_api``), so they need no change to
``store.py``. All are reads: one deferred transaction (one snapshot) each.

Costs: the metrics gauges use partial indexes (``calls_due``, ``calls_live``,
``outbox_pending``) and the outbox rows past its delivery cursor (events never tried yet),
so a scrape stays cheap however many calls the database holds. The
operator's views (``last_errors``, ``dead_events``, ``call_events``) may walk the calls
(their attempts column) or outbox table: fine for a command typed at a terminal, not for
a scrape.
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants;
# every value from outside goes through ``?`` parameters.
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .core.models import AttemptStatus
from .metrics import StoreGauges
from .store import Store
from .store_outbox import DEPTH, SELECT, OutboxEvent, event_of
from .store_rows import attempts_of, dt_or_none, ts
from .store_schema import LIVE, PENDING_IN


def gauges(store: Store) -> StoreGauges:
    with store._read() as conn:
        depth = conn.execute(DEPTH).fetchone()[0]
        live = conn.execute(f"SELECT count(*) FROM calls WHERE {LIVE}")
        pending = conn.execute(f"SELECT count(*) FROM calls WHERE {PENDING_IN}")
        return StoreGauges(int(depth), int(live.fetchone()[0]), int(pending.fetchone()[0]))


@dataclass(frozen=True, slots=True)
class Pending:
    """Calls waiting for a dial, by when: ``hours[i]`` counts those due in the hour that
    starts at ``first_hour_at + i`` hours (UTC hours; the first one holds ``now``)."""

    due_now: int  # overdue or due right now: the scheduler's next claim
    first_hour_at: datetime
    hours: tuple[int, ...]
    later: int  # due after the last hour shown
    unscheduled: int  # in a batch not yet scheduled (no due time)
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return self.due_now + sum(self.hours) + self.later + self.unscheduled


def pending(store: Store, now: datetime, hours: int = 24) -> Pending:
    """Pending calls: due now, per UTC hour for the next ``hours`` hours, later, unscheduled."""
    first = now.replace(minute=0, second=0, microsecond=0)
    end = first + timedelta(hours=hours)
    # Stored instants are fixed-width UTC text, so the first 13 characters
    # (``2026-01-26T10``) name the hour; the range is read from the calls_due index.
    with store._read() as conn:
        due_now = conn.execute(
            f"SELECT count(*) FROM calls WHERE {PENDING_IN} AND scheduled_at <= ?", (ts(now),)
        ).fetchone()[0]
        rows = conn.execute(
            f"SELECT substr(scheduled_at, 1, 13), count(*) FROM calls WHERE {PENDING_IN} "
            "AND scheduled_at > ? AND scheduled_at < ? GROUP BY 1",
            (ts(now), ts(end)),
        ).fetchall()
        later = conn.execute(
            f"SELECT count(*) FROM calls WHERE {PENDING_IN} AND scheduled_at >= ?", (ts(end),)
        ).fetchone()[0]
        unscheduled = conn.execute(
            f"SELECT count(*) FROM calls WHERE {PENDING_IN} AND scheduled_at IS NULL"
        ).fetchone()[0]
        by_status = conn.execute(
            f"SELECT status, count(*) FROM calls WHERE {PENDING_IN} GROUP BY status"
        ).fetchall()
    per_hour = dict(rows)
    counts = tuple(int(per_hour.get(ts(first + timedelta(hours=i))[:13], 0)) for i in range(hours))
    return Pending(
        int(due_now), first, counts, int(later), int(unscheduled), {s: int(n) for s, n in by_status}
    )


@dataclass(frozen=True, slots=True)
class AttemptLine:
    """One attempt, flattened with its call's number and target, for a terminal line."""

    call_id: str
    number: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    reason: str | None
    to_number: str
    target: str


_ATTEMPT_LINE = (
    "SELECT a.call_id, a.number, a.status, a.started_at, a.ended_at, a.reason, "
    "c.to_number, c.target FROM attempts a JOIN calls c ON c.id = a.call_id"
)  # attempts: the view over each call's attempts column (store_schema)
_ERRORS_IN = f"a.status IN ('{AttemptStatus.ERROR.value}', '{AttemptStatus.FAILED.value}')"


def _lines(store: Store, sql: str, args: tuple[object, ...]) -> list[AttemptLine]:
    with store._read() as conn:
        rows = conn.execute(sql, args).fetchall()
    return [
        AttemptLine(r[0], r[1], r[2], datetime.fromisoformat(r[3]), dt_or_none(r[4]), *r[5:])
        for r in rows
    ]


def live_attempts(store: Store, limit: int = 10) -> list[AttemptLine]:
    """Attempts on the wire, the oldest first (a stuck one shows at the top)."""
    # Calls in calls_live order (their first live attempt's start), then their attempts:
    # normally one live attempt per call, so `limit` calls give `limit` lines.
    with store._read() as conn:
        rows = conn.execute(
            f"SELECT id, to_number, target, attempts FROM calls WHERE {LIVE} "
            "ORDER BY live_at, id LIMIT ?",
            (limit,),
        ).fetchall()
    lines = [
        AttemptLine(
            call_id, a.number, a.status.value, a.started_at, a.ended_at, a.reason, to, target
        )
        for call_id, to, target, text in rows
        for a in attempts_of(call_id, text)
        if a.live
    ]
    lines.sort(key=lambda line: (line.started_at, line.call_id))
    return lines[:limit]


def last_errors(store: Store, limit: int = 5) -> list[AttemptLine]:
    """The latest attempts that ended ``error`` or ``failed``, newest first."""
    return _lines(
        store,
        f"{_ATTEMPT_LINE} WHERE {_ERRORS_IN} ORDER BY a.ended_at DESC, a.call_id LIMIT ?",
        (limit,),
    )


def dead_events(store: Store, limit: int = 3) -> tuple[int, list[OutboxEvent]]:
    """How many webhook events are dead, and the latest ``limit`` of them."""
    with store._read() as conn:
        count = conn.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()[0]
        rows = conn.execute(
            f"{SELECT} WHERE o.state = 'dead' ORDER BY o.seq DESC LIMIT ?", (limit,)
        ).fetchall()
    return int(count), [event_of(row) for row in rows]


def call_events(store: Store, call_id: str) -> list[OutboxEvent]:
    """A call's webhook events in commit order (``autoretry calls show``)."""
    with store._read() as conn:
        rows = conn.execute(f"{SELECT} WHERE o.call_id = ? ORDER BY o.seq", (call_id,)).fetchall()
    return [event_of(row) for row in rows]
