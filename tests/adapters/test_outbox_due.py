"""``outbox_due`` (and ``next_outbox_at``) against the one-statement queries they replaced,
and how much a fetch reads.

The old query built every call's head from the whole undelivered backlog, then sorted and
cut; it is kept here, verbatim, as the oracle. The new fetch reads pending heads from the
``outbox_pending`` index and new events from the cursor only until it has ``limit`` heads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ami_listener.core.lifecycle import Effect, Notify
from ami_listener.core.models import Call, CallStatus, RetryConfig
from ami_listener.errors import NotFound, StoreError
from ami_listener.store import Store
from ami_listener.store_outbox import OutboxEvent, Settlement, event_id, event_of
from ami_listener.store_rows import dt_or_none, ts

from .test_store import T0, make_call

# ---- the oracle: outbox_due's query before it read only what it returns ----------------
# (With outbox_acked, migration 0002: an acknowledged first try is delivered, not new.)
OLD_SELECT = (
    "SELECT o.seq, o.call_id, o.status, o.payload, o.created_at, "
    "o.attempts + (a.seq IS NOT NULL), o.next_at, "
    "CASE WHEN a.seq IS NULL THEN o.state ELSE 'delivered' END, o.last_error, "
    "coalesce(c.webhook_url, b.webhook_url) FROM outbox o "
    "LEFT JOIN outbox_acked a ON a.seq = o.seq JOIN calls c ON c.id = o.call_id "
    "LEFT JOIN batches b ON b.id = c.batch_id"
)
NOT_ACKED = "seq NOT IN (SELECT seq FROM outbox_acked)"
OLD_UNDELIVERED = (
    "SELECT call_id, seq, next_at FROM outbox WHERE state = 'pending' "
    "UNION ALL SELECT call_id, seq, next_at FROM outbox "
    f"WHERE seq >= (SELECT seq FROM outbox_cursor) AND state = 'new' AND {NOT_ACKED}"
)
OLD_HEADS = f"SELECT min(seq) AS seq, next_at FROM ({OLD_UNDELIVERED}) GROUP BY call_id"
OLD_DUE = (
    f"{OLD_SELECT} JOIN ({OLD_HEADS}) heads ON heads.seq = o.seq WHERE heads.next_at <= ? "
    "ORDER BY heads.next_at, heads.seq LIMIT ?"
)

END = datetime.max.replace(tzinfo=UTC)  # what the sender fetches with
STATUSES = (CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS)


def oracle_rows(store: Store, now: datetime, limit: int) -> list[Any]:
    """The old query's rows: raw state kept ('new' vs 'pending' tells the head's kind)."""
    return store._conn.execute(OLD_DUE, (ts(now), limit)).fetchall()


def oracle(store: Store, now: datetime, limit: int) -> list[OutboxEvent]:
    return [event_of(row) for row in oracle_rows(store, now, limit)]


def relaxed(store: Store, now: datetime, limit: int) -> list[OutboxEvent]:
    """The documented contract when new events' next_at does not rise with seq: the due
    pending heads compete by (next_at, seq), the due new heads by seq (commit order)."""
    heads = oracle_rows(store, now, 1 << 30)  # every due head, in (next_at, seq) order
    pending = [row for row in heads if row[7] == "pending"][:limit]
    new = sorted((row for row in heads if row[7] == "new"), key=lambda row: row[0])[:limit]
    return [event_of(row) for row in sorted(pending + new, key=lambda r: (r[6], r[0]))[:limit]]


def assert_invariants(store: Store) -> None:
    """What the fetch relies on: new events from the cursor on, pending below new per call."""
    conn = store._conn
    below = (
        "SELECT count(*) FROM outbox WHERE state = 'new' AND seq < (SELECT seq FROM outbox_cursor) "
        f"AND {NOT_ACKED}"
    )
    assert conn.execute(below).fetchone()[0] == 0
    inverted = (
        "SELECT count(*) FROM outbox p WHERE p.state = 'pending' AND EXISTS (SELECT 1 "
        "FROM outbox n WHERE n.call_id = p.call_id AND n.state = 'new' AND n.seq < p.seq "
        "AND n.seq NOT IN (SELECT seq FROM outbox_acked))"
    )
    assert conn.execute(inverted).fetchone()[0] == 0


def notified(at: datetime, status: CallStatus) -> Callable[[Call], tuple[Call, tuple[Effect]]]:
    return lambda call: (replace(call, updated_at=at), (Notify(status),))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.db", synchronous="normal") as s:
        yield s


# ---- random outbox histories, driven the way the sender drives the store --------------
class History:
    """Calls notifying, the sender fetching heads and settling them (in batches or one by
    one, possibly after a replay made them no longer heads), and the operator replaying."""

    def __init__(self, store: Store, data: st.DataObject, monotone: bool) -> None:
        self.store, self.data, self.monotone = store, data, monotone
        self.clock = T0
        self.created: set[int] = set()
        self.in_flight: dict[str, str] = {}  # call id -> event id fetched and not settled
        store.create_batch("b1", "sales-ivr", "https://batch.example/h", RetryConfig(), T0)

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def step(self) -> None:
        kind = self.draw(st.sampled_from(["event", "event", "fetch", "settle", "replay"]))
        getattr(self, kind)()

    def event(self) -> None:
        n = self.draw(st.integers(1, 6))
        if self.monotone:  # commit time rises with seq, as a clock read at commit does
            self.clock += timedelta(seconds=self.draw(st.integers(0, 20)))
            at = self.clock
        else:
            at = T0 + timedelta(seconds=self.draw(st.integers(-100, 100)))
        if n not in self.created:
            self.created.add(n)
            owner = {0: {"batch_id": "b1"}, 1: {"webhook_url": "https://own.example/h"}}
            call = make_call(n, updated_at=at, **owner.get(n % 3, {}))
            self.store.create_call(call, (Notify(CallStatus.QUEUED),))
        else:
            status = self.draw(st.sampled_from(STATUSES))
            self.store.transition(f"call-{n:04d}", notified(at, status))

    def fetch(self) -> None:
        for event in self.store.outbox_due(END, self.draw(st.integers(1, 8))):
            self.in_flight.setdefault(event.call_id, event.id)

    def settle(self) -> None:
        if not self.in_flight:
            return
        picked = self.draw(st.lists(st.sampled_from(sorted(self.in_flight)), unique=True))
        results = []
        for call_id in picked:
            event_id = self.in_flight.pop(call_id)
            state = self.draw(st.sampled_from(["delivered", "pending", "dead"]))
            at = self.clock + timedelta(seconds=self.draw(st.integers(-120, 240)))
            results.append(Settlement(event_id, state, at, None if state == "delivered" else "x"))
        how = self.draw(st.sampled_from(["batch", "batch and fetch", "one by one"]))
        if how == "batch":
            self.store.outbox_settle(results)
            return
        if how == "batch and fetch":  # the sender's trip: the fetch sees the settle
            limit = self.draw(st.integers(1, 8))
            got = self.store.outbox_settle_and_due(results, END, limit)
            assert got == self.store.outbox_due(END, limit)
            for event in got:
                self.in_flight.setdefault(event.call_id, event.id)
            return
        for r in results:  # the one-event methods
            if r.state == "delivered":
                self.store.outbox_delivered(r.event_id, r.at)
            elif r.state == "pending":
                self.store.outbox_retry_later(r.event_id, r.at, "HTTP 503")
            else:
                self.store.outbox_dead(r.event_id, "HTTP 410")

    def replay(self) -> None:
        dead = [e.id for e in self.store.outbox_list(state="dead", limit=1000)]
        if dead:
            some = self.draw(st.lists(st.sampled_from(dead), unique=True))
            self.store.outbox_replay(some if self.draw(st.booleans()) else None)

    def probe(self) -> tuple[datetime, int]:
        offset = self.draw(st.integers(-200, 400))
        return T0 + timedelta(seconds=offset), self.draw(st.integers(1, 9))


def run_history(data: st.DataObject, monotone: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp, "s.db")) as store:
        history = History(store, data, monotone)
        for _ in range(data.draw(st.integers(1, 40))):
            history.step()
            assert_invariants(store)
            for now, limit in (history.probe(), (END, 1 << 20)):
                got = store.outbox_due(now, limit)
                assert all(e.id == event_id(e.seq, e.call_id) for e in got)
                if monotone or len(oracle(store, now, 1 << 20)) <= limit:
                    assert got == oracle(store, now, limit)
                else:
                    assert got == relaxed(store, now, limit)
            if monotone:  # next_outbox_at is the soonest head, as the old full read found it
                soonest = store._conn.execute(f"SELECT min(next_at) FROM ({OLD_HEADS})")
                assert store.next_outbox_at() == dt_or_none(soonest.fetchone()[0])


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_outbox_due_returns_what_the_old_query_returned(data: st.DataObject) -> None:
    run_history(data, monotone=True)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_with_next_at_out_of_seq_order_new_heads_are_taken_in_commit_order(
    data: st.DataObject,
) -> None:
    run_history(data, monotone=False)


# ---- examples ----------------------------------------------------------------------------
def test_a_pending_head_not_yet_due_still_holds_back_its_calls_new_events(store: Store) -> None:
    now = T0 + timedelta(minutes=5)
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    (head,) = store.outbox_due(now, 10)
    store.outbox_retry_later(head.id, now + timedelta(minutes=1), "HTTP 503")
    store.transition("call-0001", notified(T0, CallStatus.INITIATED))  # new, due, blocked
    store.create_call(make_call(2), (Notify(CallStatus.QUEUED),))
    assert [e.call_id for e in store.outbox_due(now, 10)] == ["call-0002"]
    queued2 = store.outbox_list()[2]
    assert (queued2.call_id, queued2.status) == ("call-0002", "queued")
    assert [e.id for e in store.outbox_due(END, 10)] == [queued2.id, head.id]
    assert store.outbox_due(END, 10) == oracle(store, END, 10)


def test_past_the_limit_new_heads_go_in_commit_order_not_next_at_order(store: Store) -> None:
    store.create_call(
        make_call(1, updated_at=T0 + timedelta(seconds=10)), (Notify(CallStatus.QUEUED),)
    )
    store.create_call(
        make_call(2, updated_at=T0), (Notify(CallStatus.QUEUED),)
    )  # clock stepped back
    assert [e.call_id for e in store.outbox_due(END, 1)] == ["call-0001"]
    assert [e.call_id for e in oracle(store, END, 1)] == ["call-0002"]  # the old answer
    assert [e.call_id for e in store.outbox_due(END, 2)] == ["call-0002", "call-0001"]


def test_skipped_calls_are_left_out_head_and_all(store: Store) -> None:
    now = T0 + timedelta(minutes=5)
    for n in (1, 2, 3):
        store.create_call(make_call(n), (Notify(CallStatus.QUEUED),))
    store.transition("call-0001", notified(T0, CallStatus.INITIATED))  # a second event
    head3 = store.outbox_due(now, 10)[2]
    store.outbox_retry_later(head3.id, T0, "HTTP 503")  # call 3's head: pending, due
    everything = store.outbox_due(now, 10)
    assert [e.call_id for e in everything] == ["call-0003", "call-0001", "call-0002"]
    got = store.outbox_due(now, 10, skip={"call-0001", "call-0003"})
    assert [e.call_id for e in got] == ["call-0002"]  # not call 1's next event either
    assert store.outbox_due(now, 10, skip=()) == everything


def test_a_payload_the_store_did_not_write_is_refused_not_misread(store: Store) -> None:
    # Payloads travel joined by RS (\x1e), which the store's JSON never holds; one written
    # behind the store's back that does must not shift every later event's payload.
    for n in (1, 2):
        store.create_call(make_call(n), (Notify(CallStatus.QUEUED),))
    store._conn.execute('UPDATE outbox SET payload = \'{"a":"x\x1ey"}\' WHERE seq = 1')
    with pytest.raises(StoreError, match="RS"):
        store.outbox_due(END, 10)


ZONES = st.sampled_from([UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/St_Johns")])


@settings(max_examples=60, deadline=None)
@given(
    at=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)),
    zone=ZONES,
    whole=st.booleans(),
)
def test_a_first_try_delivered_records_its_instant_as_ts_writes_it(
    at: datetime, zone: ZoneInfo, whole: bool
) -> None:
    # The acknowledgement writes delivered_at in SQL from microseconds since the epoch
    # (an instant before 1970, which no clock here gives, goes the other way: same text).
    at = at.replace(tzinfo=zone, microsecond=0 if whole else at.microsecond)
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp, "s.db")) as store:
        store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
        (event,) = store.outbox_due(END, 1)
        store.outbox_settle([Settlement(event.id, "delivered", at)])
        row = store._conn.execute(
            "SELECT coalesce((SELECT delivered_at FROM outbox_acked), delivered_at) FROM outbox"
        ).fetchone()
        assert row == (ts(at),)
        assert store.outbox_get(event.id).state == "delivered"


def test_settling_an_id_not_made_by_event_id_is_not_found_and_writes_nothing(
    store: Store,
) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    (event,) = store.outbox_due(END, 1)
    assert event.id == "evt_1_call-0001"
    for bad in ("evt_1x_call-0001", "evt_1", "evt__call-0001", "xyz_1_call-0001"):
        with pytest.raises(NotFound):
            store.outbox_settle(
                [Settlement(event.id, "delivered", T0), Settlement(bad, "delivered", T0)]
            )
        assert store.outbox_due(END, 1) == [event]  # the good one was not written either
    # An id naming the event but not as event_id() writes it (leading zero): still that event.
    store.outbox_settle([Settlement("evt_01_call-0001", "delivered", T0)])
    assert store.outbox_due(END, 1) == []
    assert store.outbox_get(event.id).state == "delivered"


# ---- what a fetch reads ---------------------------------------------------------------
def vm_steps(store: Store, read: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions ``read`` runs: a progress handler called every
    instruction counts them. Rows visited cost instructions, so a read that visits the
    whole backlog counts in proportion to it; not a row count, and not a timing."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0  # go on

    store._conn.set_progress_handler(tick, 1)
    try:
        read()
    finally:
        store._conn.set_progress_handler(None, 1)
    return count


def add_backlog(store: Store, batch: str, first: int, count: int) -> None:
    """``count`` calls with one new event each, in one transaction."""
    calls = [
        (make_call(n, batch_id=batch), (Notify(CallStatus.QUEUED),))
        for n in range(first, first + count)
    ]
    store.create_batch(batch, "sales-ivr", "https://batch.example/h", RetryConfig(), T0, calls)


def test_a_fetch_of_ten_reads_the_same_whatever_the_backlog(store: Store) -> None:
    add_backlog(store, "b1", 1, 300)
    (first,) = store.outbox_due(END, 1)
    store.outbox_retry_later(first.id, END - timedelta(days=1), "HTTP 503")  # one pending, too
    small = vm_steps(store, lambda: store.outbox_due(END, 10))
    old_small = vm_steps(store, lambda: oracle(store, END, 10))
    add_backlog(store, "b2", 301, 2700)
    large = vm_steps(store, lambda: store.outbox_due(END, 10))
    old_large = vm_steps(store, lambda: oracle(store, END, 10))
    # The measure sees a read of the backlog: the old query's count grows with it ...
    assert old_large > 5 * old_small
    # ... and the new fetch's does not (ten backlogs' worth would be ten times as many).
    assert large < 1.2 * small
    assert large < old_large / 20
    got = store.outbox_due(END, 10)
    assert got == oracle(store, END, 10)
    assert [e.call_id for e in got] == [f"call-{n:04d}" for n in range(2, 12)]


# ---- what a sender's trip runs ----------------------------------------------------------
def statements(store: Store, trip: Callable[[], object]) -> list[str]:
    """The SQL ``trip`` runs, in order (SQLite's trace hook): each statement the database
    thread runs gives up the GIL and must win it back from the event loop."""
    ran: list[str] = []
    store._conn.set_trace_callback(ran.append)
    try:
        trip()
    finally:
        store._conn.set_trace_callback(None)
    return ran


def test_a_settle_trip_with_nothing_pending_is_four_statements(store: Store) -> None:
    add_backlog(store, "b1", 1, 5)
    heads = store.outbox_due(END, 3)
    acks = [Settlement(e.id, "delivered", T0 + timedelta(seconds=1)) for e in heads]
    ran = statements(store, lambda: store.outbox_settle(acks))
    # BEGIN, the acks, the cursor (one UPDATE: nothing is pending), COMMIT. No call is read,
    # so no data_version check for the call cache.
    assert len(ran) == 4, ran
    assert not any("data_version" in sql for sql in ran)
    assert store._one("SELECT seq FROM outbox_cursor")[0] == heads[-1].seq + 1
    # With an event pending the cursor takes the full path, which finds the same stop.
    (fourth,) = store.outbox_due(END, 1)
    store.outbox_retry_later(fourth.id, END - timedelta(days=1), "HTTP 503")
    assert store._one("SELECT seq FROM outbox_cursor")[0] == fourth.seq + 1
    (fifth,) = store.outbox_due(END, 1)
    ran = statements(store, lambda: store.outbox_delivered(fifth.id, T0))
    assert len(ran) > 4
    assert store.outbox_due(END, 5) == [store.outbox_get(fourth.id)]
    assert store._one("SELECT seq FROM outbox_cursor")[0] == fifth.seq + 1


def test_a_calls_transaction_after_outbox_trips_still_sees_another_connections_commit(
    store: Store, tmp_path: Path
) -> None:
    # The outbox trips skip the data_version check; the next calls transaction makes it,
    # and a commit by another connection in between is not missed (the call cache, which
    # ``transition`` reads, is dropped).
    call = make_call(1)
    store.create_call(call, (Notify(CallStatus.QUEUED),))
    seen: list[int] = []

    def look(c: Call) -> tuple[Call, tuple[Effect, ...]]:
        seen.append(c.retry_count)
        return c, ()

    store.transition(call.id, look)  # the call is in the cache from here on
    with Store.open(tmp_path / "store.db") as other:
        other.transition(call.id, lambda c: (replace(c, retry_count=7), ()))
    (event,) = store.outbox_due(END, 5)
    store.outbox_delivered(event.id, T0)
    store.transition(call.id, look)
    assert seen == [call.retry_count, 7]
