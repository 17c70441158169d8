"""Store against real SQLite files: schema, transactions, claims, outbox order, batches."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ami_listener.core.execution import execution_object
from ami_listener.core.lifecycle import Effect, Notify, Schedule
from ami_listener.core.models import (
    PENDING_STATUSES,
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    RetryConfig,
)
from ami_listener.errors import ConfigError, IllegalTransition, NotFound, StoreError
from ami_listener.store import _PENDING_IN, MIGRATIONS, Store
from ami_listener.store_outbox import Settlement

T0 = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
WORKER = Path(__file__).with_name("store_worker.py")


def make_call(n: int, **changes: object) -> Call:
    call = Call(
        id=f"call-{n:04d}",
        target="sales-ivr",
        to_number="+14155550123",
        status=CallStatus.QUEUED,
        retry_config=RetryConfig(enabled=True),
        created_at=T0 + timedelta(seconds=n),
        updated_at=T0 + timedelta(seconds=n),
        scheduled_at=T0 + timedelta(seconds=n),
    )
    return replace(call, **changes)  # type: ignore[arg-type]


def dial(call: Call, at: datetime = T0) -> tuple[Call, tuple[Effect, ...]]:
    attempt = Attempt(
        id=f"{call.id}-a{len(call.attempts) + 1}",
        call_id=call.id,
        number=len(call.attempts) + 1,
        status=AttemptStatus.DIALING,
        started_at=at,
    )
    new = replace(
        call,
        status=CallStatus.INITIATED,
        scheduled_at=None,
        updated_at=at,
        attempts=(*call.attempts, attempt),
    )
    return new, (Notify(CallStatus.INITIATED),)


def busy(call: Call) -> tuple[Call, tuple[Effect, ...]]:
    """The live attempt ends busy; the call is scheduled for a retry a minute later."""
    at = call.updated_at + timedelta(seconds=30)
    last = replace(call.attempts[-1], status=AttemptStatus.BUSY, ended_at=at, cause=17)
    new = replace(
        call,
        status=CallStatus.SCHEDULED,
        updated_at=at,
        scheduled_at=at + timedelta(minutes=1),
        retry_count=call.retry_count + 1,
        attempts=(*call.attempts[:-1], last),
    )
    return new, (Notify(CallStatus.SCHEDULED), Schedule(at + timedelta(minutes=1)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.db") as s:
        yield s


def outbox_statuses(store: Store, call_id: str) -> list[str]:
    return [e.status for e in store.outbox_list(limit=1000) if e.call_id == call_id]


# ---- opening and schema ---------------------------------------------------------------
def test_open_creates_a_migrated_wal_database_and_migrate_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with Store.open(path) as store:
        assert store.db.journal_mode == "wal"
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert [m.name for m in MIGRATIONS.applied(store.db)] == [
            "0001_initial",
            "0002_outbox_acked",
        ]
        assert store.migrate() == []
        assert {"calls", "batches", "outbox"} <= set(store.db.table_names())
        assert "attempts" not in store.db.table_names()  # they live in their call's row
    with Store.open(path, synchronous="normal") as store:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert len(MIGRATIONS.applied(store.db)) == 2  # opening again applies nothing more


def test_migrate_on_a_fresh_file_reports_what_it_applied(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "bare.db", isolation_level=None)
    from sqlite_utils import Database

    store = Store(Database(conn))
    assert store.migrate() == ["0001_initial", "0002_outbox_acked"]
    assert store.migrate() == []
    store.close()


def test_bad_synchronous_and_unopenable_path_raise_our_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous"):
        Store.open(tmp_path / "x.db", synchronous="off")
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path)  # a directory


def test_partial_index_terms_name_the_model_status_sets() -> None:
    assert (
        "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(PENDING_STATUSES)))
        == _PENDING_IN
    )


def test_hot_queries_use_their_indexes(store: Store) -> None:
    """Capture the SQL the store runs and ask SQLite how it would run each SELECT."""
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    ran: list[str] = []
    store.db.conn.set_trace_callback(ran.append)
    store.claim_due(T0, 5, dial)
    store.next_due_at()
    store.live_calls()
    store.count_live()
    store.outbox_due(T0, 5)
    store.next_outbox_at()
    store.db.conn.set_trace_callback(None)
    plans = {}
    for sql in ran:
        if sql.startswith("SELECT"):
            rows = store.db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            plans[sql] = " | ".join(str(r[-1]) for r in rows)
    # Scanning a partial index is fine (it holds only pending/live rows); a table is not,
    # but for outbox_cursor (one row). `heads` is the outbox's per-call heads: pending ones
    # from outbox_pending alone, new ones from the rowid range at the cursor.
    scans = [
        p
        for p in plans.values()
        if re.search(r"SCAN (?!heads\b|outbox_cursor\b|\(subquery-\d+\))\w+( \||$)", p)
    ]
    assert not scans, plans
    joined = " ".join(plans.values())
    for index in ("calls_due", "calls_live", "outbox_pending"):
        assert index in joined, (index, plans)
    assert "SCAN outbox USING COVERING INDEX outbox_pending" in joined, plans
    assert "SEARCH o USING INTEGER PRIMARY KEY (rowid>?)" in joined, plans  # from the cursor
    assert "SCAN outbox_acked" not in joined, plans  # only ever probed by seq
    assert "SCAN outbox " not in joined.replace("SCAN outbox USING COVERING INDEX", ""), plans


# ---- calls --------------------------------------------------------------------------
def test_create_and_get_round_trip_every_field(store: Store) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    config = RetryConfig.model_validate(
        {"enabled": True, "max_retries": 7, "retry_intervals_by_status": {"busy": [1, 2]}},
        context={"max_retries_limit": 10},  # an operator-widened bound, stored and reloaded
    )
    attempt = Attempt(
        id="a1",
        call_id="c1",
        number=1,
        status=AttemptStatus.NO_ANSWER,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=30),
        cause=19,
        cause_txt="No answer",
        tech_cause=480,
        dial_status="NOANSWER",
        originate_reason=3,
        amd_status="MACHINE",
        amd_cause="TOOLONG-5000",
        answered_by_voice_mail=True,
        permanent=False,
        reason="SIP 480",
        decision="retry in 1 min",
        uniqueid="1769421600.7",
    )
    call = Call(
        id="c1",
        target="sales-ivr",
        to_number="+14155550123",
        status=CallStatus.SCHEDULED,
        retry_config=config,
        created_at=T0.astimezone(ist),
        updated_at=T0 + timedelta(microseconds=1),
        scheduled_at=T0 + timedelta(minutes=1),
        from_number="+14155550100",
        retry_count=1,
        variables={"name": "Ada", "order": "42"},
        webhook_url="https://example.com/h",
        bypass_call_guardrails=True,
        answered_by_voice_mail=True,
        error_message="x",
        timezone="America/Los_Angeles",
        cancel_requested="canceled",
        attempts=(attempt,),
    )
    written, created = store.create_call(call, (Notify(CallStatus.SCHEDULED),))
    assert created and written == call
    loaded = store.get_call("c1")
    assert loaded == call
    assert loaded.created_at.utcoffset() == timedelta(0)  # stored and returned as UTC
    assert loaded.retry_config.max_retries == 7
    stored = store.db.execute("SELECT created_at, updated_at FROM calls").fetchone()
    assert stored == ("2026-01-26T10:00:00.000000+00:00", "2026-01-26T10:00:00.000001+00:00")


def test_naive_datetimes_are_refused_and_nothing_is_written(store: Store) -> None:
    call = make_call(1, created_at=datetime(2026, 1, 26, 10, 0))
    with pytest.raises(StoreError, match="naive"):
        store.create_call(call, (Notify(CallStatus.QUEUED),))
    assert store.list_calls() == [] and store.outbox_depth() == 0


def test_get_call_of_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_call("nope")


def test_idempotency_key_returns_the_existing_call_and_writes_nothing(store: Store) -> None:
    queued = (Notify(CallStatus.QUEUED),)
    first, created = store.create_call(make_call(1), queued, idempotency_key="k")
    again, created_again = store.create_call(make_call(2), queued, idempotency_key="k")
    assert created and not created_again
    assert again == first
    assert [c.id for c in store.list_calls()] == ["call-0001"]
    assert store.outbox_depth() == 1
    _, other = store.create_call(make_call(3), (), idempotency_key="k2")
    assert other


def test_duplicate_id_is_a_store_error_and_rolls_back(store: Store) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    with pytest.raises(StoreError, match="IntegrityError"):
        store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    assert store.outbox_depth() == 1
    assert not store.db.conn.in_transaction


def test_create_call_writes_its_attempts(store: Store) -> None:
    call, effects = dial(make_call(1))
    store.create_call(call, effects)
    assert store.get_call(call.id).attempts == call.attempts
    assert store.count_live() == 1


# ---- transitions --------------------------------------------------------------------
def test_transition_commits_call_attempt_and_outbox_event_together(store: Store) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    call, effects = store.transition("call-0001", dial)
    assert call.status is CallStatus.INITIATED and effects == (Notify(CallStatus.INITIATED),)
    call, effects = store.transition("call-0001", busy)
    assert isinstance(effects[1], Schedule)
    loaded = store.get_call("call-0001")
    assert loaded == call
    assert loaded.attempts[0].status is AttemptStatus.BUSY
    assert outbox_statuses(store, "call-0001") == ["queued", "initiated", "scheduled"]
    last = store.outbox_list(limit=10)[-1]
    assert json.loads(last.payload) == execution_object(call)
    assert last.created_at == last.next_at == call.updated_at


def test_transition_that_raises_writes_nothing(store: Store) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    before = store.get_call("call-0001")

    def refuse(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        raise IllegalTransition("no")

    with pytest.raises(IllegalTransition):
        store.transition("call-0001", refuse)
    assert store.get_call("call-0001") == before
    assert store.outbox_depth() == 1
    assert not store.db.conn.in_transaction


def test_transition_refuses_dropped_attempts_and_foreign_ids(store: Store) -> None:
    store.create_call(*dial(make_call(1)))
    with pytest.raises(StoreError, match="dropped attempts"):
        store.transition("call-0001", lambda c: (replace(c, attempts=()), ()))
    with pytest.raises(StoreError, match="returned call"):
        store.transition("call-0001", lambda c: (replace(c, id="other"), ()))
    assert len(store.get_call("call-0001").attempts) == 1
    with pytest.raises(NotFound):
        store.transition("missing", dial)


def test_transition_returning_the_same_call_writes_only_its_effects(store: Store) -> None:
    store.create_call(make_call(1), ())
    call, _ = store.transition("call-0001", lambda c: (c, (Notify(CallStatus.QUEUED),)))
    assert call == store.get_call("call-0001")
    assert outbox_statuses(store, "call-0001") == ["queued"]


def test_two_notifies_in_one_transition_snapshot_their_own_status(store: Store) -> None:
    store.create_call(make_call(1), ())
    store.transition(
        "call-0001",
        lambda c: (
            replace(c, status=CallStatus.CANCELED, scheduled_at=None),
            (Notify(CallStatus.STOPPED), Notify(CallStatus.CANCELED)),
        ),
    )
    payloads = [json.loads(e.payload)["status"] for e in store.outbox_list()]
    assert payloads == ["stopped", "canceled"]


# ---- claiming -----------------------------------------------------------------------
def test_claim_due_takes_oldest_due_pending_calls_once(store: Store) -> None:
    for n, status in [
        (3, CallStatus.QUEUED),
        (1, CallStatus.RESCHEDULED),
        (2, CallStatus.SCHEDULED),
    ]:
        store.create_call(make_call(n, status=status), ())
    store.create_call(make_call(4, status=CallStatus.COMPLETED, scheduled_at=T0), ())  # not pending
    store.create_call(make_call(90), ())  # due later than now
    now = T0 + timedelta(seconds=10)
    assert store.next_due_at() == T0 + timedelta(seconds=1)
    claimed = store.claim_due(now, 2, dial)
    assert [c.id for c, _ in claimed] == ["call-0001", "call-0002"]
    assert all(effects == (Notify(CallStatus.INITIATED),) for _, effects in claimed)
    assert [c.id for c, _ in store.claim_due(now, 10, dial)] == ["call-0003"]
    assert store.claim_due(now, 10, dial) == []
    assert store.next_due_at() == T0 + timedelta(seconds=90)
    assert store.count_live() == 3
    assert sorted(c.id for c in store.live_calls()) == ["call-0001", "call-0002", "call-0003"]


def test_claim_due_rolls_back_everything_when_fn_raises(store: Store) -> None:
    store.create_call(make_call(1), ())
    store.create_call(make_call(2), ())

    def second_fails(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        if call.id == "call-0002":
            raise IllegalTransition("no")
        return dial(call)

    with pytest.raises(IllegalTransition):
        store.claim_due(T0 + timedelta(minutes=1), 5, second_fails)
    assert store.count_live() == 0 and store.outbox_depth() == 0


@pytest.mark.timeout(30)
def test_a_claim_waits_for_a_concurrent_claim_and_skips_its_calls(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with Store.open(path) as setup:
        for n in range(10):
            setup.create_call(make_call(n), ())
    first, second = Store.open(path), Store.open(path)
    now = T0 + timedelta(minutes=1)
    started = threading.Event()
    results: list[list[str]] = []

    def other_claim() -> None:
        started.set()
        results.append([c.id for c, _ in second.claim_due(now, 10, dial)])

    thread = threading.Thread(target=other_claim)

    def dial_while_other_claims(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        if not thread.is_alive():  # first call of this claim: the write lock is ours
            thread.start()
            assert started.wait(10)
        return dial(call)

    mine = [c.id for c, _ in first.claim_due(now, 5, dial_while_other_claims)]
    thread.join(10)
    assert mine == [f"call-{n:04d}" for n in range(5)]
    assert results == [[f"call-{n:04d}" for n in range(5, 10)]]
    assert first.count_live() == 10
    first.close()
    second.close()


CALLS = 1000


@pytest.mark.timeout(60)
def test_two_processes_claim_each_call_exactly_once(tmp_path: Path) -> None:
    # Enough claims (2 calls each) that a worker scheduled late on a busy machine still
    # finds calls left: with 300 the other one once took them all under the full suite.
    path = tmp_path / "shared.db"
    with Store.open(path) as store:
        for n in range(CALLS):
            store.create_call(make_call(n, scheduled_at=T0), ())
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "claim", str(path), "2"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for w in workers:  # wait until both have opened the store, then release them together
        assert w.stdout is not None
        assert w.stdout.readline() == "ready\n"
    for w in workers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    outputs = [w.communicate(timeout=60)[0].split() for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert all(out[-1] == "done" for out in outputs)
    claimed = [out[:-1] for out in outputs]
    assert all(claimed), "both processes should have claimed some calls"
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == [f"call-{n:04d}" for n in range(CALLS)]
    with Store.open(path) as store:
        assert store.count_live() == CALLS
        assert all(len(c.attempts) == 1 for c in store.live_calls())


# ---- listing ------------------------------------------------------------------------
def test_list_calls_filters_orders_newest_first_and_pages(store: Store) -> None:
    store.create_batch(
        "b1", "sales-ivr", None, RetryConfig(), T0, [(make_call(1, batch_id="b1"), ())]
    )
    for n in range(2, 6):
        store.create_call(
            make_call(n, status=CallStatus.COMPLETED if n % 2 else CallStatus.QUEUED), ()
        )
    assert [c.id for c in store.list_calls()] == [f"call-000{n}" for n in (5, 4, 3, 2, 1)]
    assert [c.id for c in store.list_calls(status="completed")] == ["call-0005", "call-0003"]
    assert [c.id for c in store.list_calls(batch_id="b1")] == ["call-0001"]
    assert [c.id for c in store.list_calls(status="completed", batch_id="b1")] == []
    assert [c.id for c in store.list_calls(limit=2, offset=1)] == ["call-0004", "call-0003"]


# ---- outbox -------------------------------------------------------------------------
def test_outbox_delivers_each_calls_events_in_order(store: Store) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    store.transition("call-0001", dial)
    store.create_call(make_call(2), (Notify(CallStatus.QUEUED),))
    now = T0 + timedelta(minutes=5)
    due = store.outbox_due(now, 10)
    assert [(e.call_id, e.status) for e in due] == [
        ("call-0001", "queued"),
        ("call-0002", "queued"),
    ]
    assert store.outbox_depth() == 3
    head = due[0]
    store.outbox_retry_later(head.id, now + timedelta(minutes=1), "HTTP 503")
    # call-0001's later event waits behind its head, even though it is itself due.
    assert [e.call_id for e in store.outbox_due(now, 10)] == ["call-0002"]
    assert store.next_outbox_at() == due[1].next_at
    store.outbox_delivered(due[1].id, now)
    assert store.next_outbox_at() == now + timedelta(minutes=1)
    later = store.outbox_due(now + timedelta(minutes=1), 10)
    assert [(e.id, e.attempts, e.last_error) for e in later] == [(head.id, 1, "HTTP 503")]
    store.outbox_delivered(head.id, now + timedelta(minutes=1))
    assert [e.status for e in store.outbox_due(now + timedelta(minutes=1), 10)] == ["initiated"]
    assert [e.state for e in store.outbox_list(state="delivered")] == ["delivered"] * 2
    seqs = [e.seq for e in store.outbox_list()]
    assert seqs == sorted(seqs)


def test_dead_events_do_not_block_and_can_be_replayed(store: Store) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    store.transition("call-0001", dial)
    now = T0 + timedelta(minutes=5)
    head = store.outbox_due(now, 10)[0]
    store.outbox_dead(head.id, "HTTP 410")
    assert [e.status for e in store.outbox_due(now, 10)] == ["initiated"]
    assert store.outbox_depth() == 1
    dead = store.outbox_list(state="dead")
    assert [(e.id, e.attempts, e.last_error) for e in dead] == [(head.id, 1, "HTTP 410")]
    assert store.outbox_replay(["nope"]) == 0
    assert store.outbox_replay() == 1
    replayed = store.outbox_due(now, 10)
    assert [(e.id, e.state, e.attempts) for e in replayed] == [(head.id, "pending", 0)]
    store.outbox_dead(head.id, "again")
    assert store.outbox_replay([head.id]) == 1


def test_outbox_updates_of_unknown_events_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.outbox_delivered("nope", T0)
    with pytest.raises(NotFound):
        store.outbox_retry_later("nope", T0, "x")
    with pytest.raises(NotFound):
        store.outbox_dead("nope", "x")
    assert store.next_outbox_at() is None and store.next_due_at() is None


def test_webhook_url_is_the_calls_else_the_batchs_else_none(store: Store) -> None:
    store.create_batch(
        "b1",
        "sales-ivr",
        "https://batch.example/h",
        RetryConfig(),
        T0,
        [
            (make_call(1, batch_id="b1"), (Notify(CallStatus.QUEUED),)),
            (
                make_call(2, batch_id="b1", webhook_url="https://own.example/h"),
                (Notify(CallStatus.QUEUED),),
            ),
        ],
    )
    store.create_call(make_call(3), (Notify(CallStatus.QUEUED),))
    urls = {e.call_id: e.webhook_url for e in store.outbox_list()}
    assert urls == {
        "call-0001": "https://batch.example/h",
        "call-0002": "https://own.example/h",
        "call-0003": None,
    }


# ---- batches ------------------------------------------------------------------------
def test_batches_store_their_calls_and_count_statuses(store: Store) -> None:
    config = RetryConfig(enabled=True, max_retries=2)
    calls = [(make_call(n, batch_id="b1"), (Notify(CallStatus.QUEUED),)) for n in range(3)]
    store.create_batch("b1", "sales-ivr", None, config, T0, calls)
    store.transition("call-0001", dial)
    batch = store.get_batch("b1")
    assert batch == {
        "id": "b1",
        "target": "sales-ivr",
        "state": "created",
        "webhook_url": None,
        "retry_config": config,
        "created_at": T0,
        "scheduled_at": None,
    }
    assert store.batch_status_counts("b1") == {"queued": 2, "initiated": 1}
    assert store.batch_status_counts("other") == {}
    with pytest.raises(NotFound):
        store.get_batch("other")
    with pytest.raises(StoreError):  # a call naming a batch that does not exist
        store.create_call(make_call(9, batch_id="missing"), ())


# ---- attempts inside the call row ---------------------------------------------------
def test_attempts_are_in_their_call_row_and_live_at_follows_the_live_attempt(
    store: Store,
) -> None:
    def live_at(call_id: str) -> str | None:
        row = store.db.execute("SELECT live_at FROM calls WHERE id = ?", (call_id,))
        return row.fetchone()[0]  # type: ignore[no-any-return]

    store.create_call(make_call(1), ())
    assert live_at("call-0001") is None and store.count_live() == 0
    store.transition("call-0001", lambda c: dial(c, T0 + timedelta(seconds=5)))
    assert live_at("call-0001") == "2026-01-26T10:00:05.000000+00:00"

    def answer(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        last = replace(call.attempts[-1], status=AttemptStatus.IN_PROGRESS, answered_at=T0)
        return replace(call, status=CallStatus.IN_PROGRESS, attempts=(last,)), ()

    store.transition("call-0001", answer)  # still live: the same live_at
    assert live_at("call-0001") == "2026-01-26T10:00:05.000000+00:00"
    assert [c.id for c in store.live_calls()] == ["call-0001"] and store.count_live() == 1
    store.transition("call-0001", busy)
    assert live_at("call-0001") is None and store.count_live() == 0 and store.live_calls() == []
    call, _ = store.transition("call-0001", lambda c: dial(c, T0 + timedelta(minutes=2)))
    assert live_at("call-0001") == "2026-01-26T10:02:00.000000+00:00"
    assert store.get_call("call-0001") == call
    assert [a.number for a in call.attempts] == [1, 2]


def test_the_attempts_view_shows_each_attempt_as_a_row(store: Store) -> None:
    from ami_listener.store_rows import ATTEMPT_FIELDS

    store.create_call(*dial(make_call(1)))
    store.transition("call-0001", busy)
    call, _ = store.transition("call-0001", dial)
    cursor = store.db.execute("SELECT * FROM attempts ORDER BY number")
    assert tuple(d[0] for d in cursor.description) == ("call_id", *ATTEMPT_FIELDS)
    rows = cursor.fetchall()
    assert [(r[0], r[2], r[3], r[7], r[14]) for r in rows] == [
        ("call-0001", 1, "busy", 17, 0),
        ("call-0001", 2, "dialing", None, 0),
    ]
    assert rows[0][1] == call.attempts[0].id
    assert "attempts" not in store.db.table_names()  # a view: nothing written twice


def test_an_attempt_of_another_call_is_refused(store: Store) -> None:
    store.create_call(*dial(make_call(1)))
    store.create_call(make_call(2), ())

    other = store.get_call("call-0001").attempts[0]

    def steal(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        return replace(call, attempts=(other,)), ()

    with pytest.raises(StoreError, match="given to call-0002"):
        store.transition("call-0002", steal)
    assert store.get_call("call-0002").attempts == ()


# ---- what a commit costs, and what the store remembers -------------------------------
def test_an_outcome_commit_dirties_three_pages(tmp_path: Path) -> None:
    """WAL frames appended by outcome commits (a new outbox page now and then adds some):
    calls row (its attempts inside it) and its calls_live entry, outbox row (a new event is
    in no index); a retry adds the calls_due entry. More means an index crept onto the hot
    path."""

    def complete(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        at = call.updated_at + timedelta(seconds=30)
        last = replace(call.attempts[-1], status=AttemptStatus.COMPLETED, ended_at=at, cause=16)
        new = replace(call, status=CallStatus.COMPLETED, updated_at=at, attempts=(last,))
        return new, (Notify(CallStatus.COMPLETED),)

    path = tmp_path / "pages.db"
    with Store.open(path) as store:
        store.db.execute("PRAGMA wal_autocheckpoint = 0")
        for n in range(400):
            store.create_call(*dial(make_call(n)))
        frame = store.db.execute("PRAGMA page_size").fetchone()[0] + 24
        wal = Path(f"{path}-wal")
        frames: dict[str, list[int]] = {"complete": [], "busy": []}
        for n in range(0, 400, 10):
            fn = complete if n % 20 else busy
            before = wal.stat().st_size
            store.transition(f"call-{n:04d}", fn)
            frames[fn.__name__].append((wal.stat().st_size - before) // frame)
        assert statistics.median(frames["complete"]) == 3, frames
        assert min(frames["busy"]) == 4, frames  # the outbox's own growth adds pages at times


def test_a_commit_by_another_connection_is_seen_by_the_next_transition(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    with Store.open(path) as mine, Store.open(path) as other:
        mine.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
        mine.transition("call-0001", dial)  # mine now remembers the dialed call
        other.transition("call-0001", busy)
        call, _ = mine.transition("call-0001", dial)
        assert [a.status for a in call.attempts] == [AttemptStatus.BUSY, AttemptStatus.DIALING]
        assert call.retry_count == 1
        assert mine.get_call("call-0001") == other.get_call("call-0001") == call


def test_a_failed_write_leaves_nothing_remembered(store: Store) -> None:
    store.create_call(*dial(make_call(1)))
    before = store.get_call("call-0001")

    def clash(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        new, effects = busy(call)
        return replace(new, batch_id="missing"), effects  # no such batch: a foreign key

    def twin(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        new, effects = busy(call)
        twin = replace(new.attempts[0], id="twin")  # a second attempt number 1
        return replace(new, attempts=(*new.attempts, twin)), effects

    with pytest.raises(StoreError, match="IntegrityError"):
        store.transition("call-0001", clash)
    with pytest.raises(StoreError, match="attempt numbers must increase"):
        store.transition("call-0001", twin)
    assert store.outbox_depth() == 1
    call, _ = store.transition("call-0001", lambda c: (c, ()))
    assert call == before == store.get_call("call-0001")


def test_event_ids_are_stable_and_checked_against_their_call(store: Store) -> None:
    store.create_call(make_call(1), (Notify(CallStatus.QUEUED),))
    store.create_call(make_call(2), (Notify(CallStatus.QUEUED),))
    first, second = store.outbox_list()
    assert (first.id, second.id) == (f"evt_{first.seq}_call-0001", f"evt_{second.seq}_call-0002")
    assert [e.id for e in store.outbox_list()] == [first.id, second.id]  # same ids on reread
    for wrong in (f"evt_{first.seq}_call-0002", f"evt_{first.seq}", "evt_x_call-0001", "nope"):
        with pytest.raises(NotFound):
            store.outbox_delivered(wrong, T0)
    store.outbox_dead(first.id, "HTTP 410")
    assert store.outbox_replay([f"evt_{first.seq}_call-0002"]) == 0
    assert store.outbox_replay([first.id]) == 1


def test_payloads_are_the_execution_object_byte_for_byte(store: Store) -> None:
    """The store builds payload text from pieces kept per call; it must be exactly what
    encoding ``execution_object`` gives, whatever changed between two events."""
    encode = json.JSONEncoder(separators=(",", ":")).encode
    odd = make_call(
        1,
        variables={"näme": 'A"da\n', "z": "1"},
        batch_id=None,
        from_number="+14155550100",
        error_message="x\u2028y",
    )
    store.create_call(odd, (Notify(CallStatus.QUEUED),))
    store.transition("call-0001", dial)
    store.transition("call-0001", busy)
    store.transition("call-0001", lambda c: (replace(c, variables={"z": "2"}), ()))
    store.transition("call-0001", dial)
    answered = T0 + timedelta(hours=1, milliseconds=250)  # instants with milliseconds

    def complete(call: Call) -> tuple[Call, tuple[Effect, ...]]:
        at = answered + timedelta(minutes=3, microseconds=1500)
        last = replace(
            call.attempts[-1],
            status=AttemptStatus.COMPLETED,
            answered_at=answered + timedelta(seconds=2),
            ended_at=at,
            tech_cause=200,
            answered_by_voice_mail=True,
            uniqueid="1769421600.9",
        )
        new = replace(
            call,
            status=CallStatus.COMPLETED,
            updated_at=at,
            answered_by_voice_mail=True,
            attempts=(*call.attempts[:-1], last),
        )
        return new, (Notify(CallStatus.COMPLETED),)

    call, _ = store.transition("call-0001", complete)
    events = store.outbox_list()
    assert [e.status for e in events] == [
        "queued",
        "initiated",
        "scheduled",
        "initiated",
        "completed",
    ]
    assert events[-1].payload == encode(execution_object(call))
    assert json.loads(events[-1].payload)["context_details"]["recipient_data"] == {"z": "2"}
    # A store that never saw the call builds the same text from scratch.
    with Store.open(store.db.conn.execute("PRAGMA database_list").fetchone()[2]) as other:
        other.transition("call-0001", lambda c: (c, (Notify(CallStatus.COMPLETED),)))
        assert other.outbox_list()[-1].payload == events[-1].payload


def test_new_events_behind_a_retrying_head_wait_and_the_cursor_moves_past_them(
    store: Store,
) -> None:
    for n in (1, 2):
        store.create_call(make_call(n), (Notify(CallStatus.QUEUED),))
    now = T0 + timedelta(minutes=5)
    head1, head2 = store.outbox_due(now, 10)
    store.outbox_retry_later(head1.id, now + timedelta(minutes=1), "HTTP 503")
    store.transition("call-0001", dial)  # a new event behind call-0001's retrying head
    store.outbox_delivered(head2.id, now)
    # The cursor passed the delivered event and the blocked one (now pending, untried).
    assert store.db.execute("SELECT seq FROM outbox_cursor").fetchone()[0] > head2.seq
    assert store.outbox_due(now, 10) == []
    assert store.outbox_depth() == 2
    assert [e.state for e in store.outbox_list(state="pending")] == ["pending", "pending"]
    assert store.next_outbox_at() == now + timedelta(minutes=1)
    later = now + timedelta(minutes=1)
    assert [e.id for e in store.outbox_due(later, 10)] == [head1.id]
    store.outbox_settle([Settlement(head1.id, "delivered", later)])
    (second,) = store.outbox_due(later, 10)
    assert (second.call_id, second.status, second.attempts) == ("call-0001", "initiated", 0)
    store.create_call(make_call(3), (Notify(CallStatus.QUEUED),))  # new, above the cursor
    assert [e.call_id for e in store.outbox_due(later, 10)] == ["call-0001", "call-0003"]
    assert store.outbox_depth() == 2


def test_events_settled_out_of_order_leave_the_cursor_at_the_oldest_untried(
    store: Store,
) -> None:
    for n in range(1, 5):
        store.create_call(make_call(n), (Notify(CallStatus.QUEUED),))
    now = T0 + timedelta(minutes=5)
    events = store.outbox_due(now, 10)
    assert len(events) == 4
    store.outbox_settle([Settlement(e.id, "delivered", now) for e in events[1:]])
    assert store.db.execute("SELECT seq FROM outbox_cursor").fetchone()[0] == events[0].seq
    assert [e.id for e in store.outbox_due(now, 10)] == [events[0].id]
    assert store.outbox_depth() == 1
    store.outbox_settle([Settlement(events[0].id, "dead", now, "HTTP 410")])
    assert store.outbox_due(now, 10) == [] and store.outbox_depth() == 0
    assert store.db.execute("SELECT seq FROM outbox_cursor").fetchone()[0] == events[-1].seq + 1
    assert store.outbox_replay() == 1  # a dead event below the cursor comes back
    assert [e.id for e in store.outbox_due(now, 10)] == [events[0].id]
