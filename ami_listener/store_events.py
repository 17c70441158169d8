"""The webhook outbox's values: events, settlements, their stable ids, and the row SELECT.

An event's id is ``evt_<seq>_<call id>``. ``seq`` is the outbox rowid, fixed when the
event commits and never reused (outbox rows are never deleted, so a new seq is always
above every stored one); the call id, unique per call, keeps ids from two databases apart.
So the id is stable once committed (what receivers de-duplicate on) and costs no column
and no UNIQUE index: a lookup by id is a rowid lookup, checked against the call id.
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants.
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple


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


class Settlement(NamedTuple):
    """How one delivery attempt ended, for ``outbox_settle``.

    ``state``: 'delivered' (``at`` = delivered_at), 'pending' (retry at ``at``) or 'dead'.
    ``attempted`` is False when nothing was sent (no destination): attempts stay as they are.

    A NamedTuple, like ``OutboxEvent``: the sender makes one per delivery on the event
    loop, and a frozen dataclass's __init__ took 1.7 us of that loop's time (0.7 now).
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


_tuple_new = tuple.__new__
_instant = datetime.fromisoformat


def event_of(row: Sequence[Any]) -> OutboxEvent:
    """The event of a row in SELECT's column order.

    Built per event fetched, in the database thread, which holds the GIL meanwhile: the
    tuple is made directly (not through the NamedTuple's Python ``__new__``) and the id
    written inline as ``event_id`` writes it: 0.67 us a row, was 0.97. A new event's next_at
    is its created_at, parsed once."""
    seq, call_id, created, state = row[0], row[1], row[4], row[7]
    created_at = _instant(created)
    return _tuple_new(
        OutboxEvent,
        (
            f"evt_{seq}_{call_id}", seq, call_id, row[2], row[3], created_at, row[5],
            created_at if row[6] == created else _instant(row[6]),  # a new event: the same
            "pending" if state == "new" else state, row[8], row[9],
        ),
    )  # fmt: skip


INSERT = "INSERT INTO outbox (call_id, status, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?)"
# An event in outbox_acked was delivered at its first try; its row still says 'new'.
STATE = "CASE WHEN a.seq IS NULL THEN o.state ELSE 'delivered' END"
ACKED = "LEFT JOIN outbox_acked a ON a.seq = o.seq"
SELECT = (  # named, so that store_delivery can select from it
    "SELECT o.seq AS seq, o.call_id AS call_id, o.status AS status, o.payload AS payload, "
    "o.created_at AS created_at, o.attempts + (a.seq IS NOT NULL) AS attempts, "
    f"o.next_at AS next_at, {STATE} AS state, o.last_error AS last_error, "
    "coalesce(c.webhook_url, b.webhook_url) AS url "
    f"FROM outbox o {ACKED} JOIN calls c ON c.id = o.call_id "
    "LEFT JOIN batches b ON b.id = c.batch_id"
)
NOT_ACKED = "NOT EXISTS (SELECT 1 FROM outbox_acked a WHERE a.seq = o.seq)"
