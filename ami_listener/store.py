"""SQLite persistence: the only module that speaks SQL.

Schema changes are sqlite-utils ``Migrations``; the database runs in WAL mode. Every write
is one ``BEGIN IMMEDIATE`` transaction, so a state change (call row, its attempts, one
outbox row per ``Notify``) commits whole or not at all, and two processes on one file
serialize on the write lock instead of failing on a stale snapshot. Hot-path writes are raw
``execute`` calls on sqlite-utils' connection: ``Table.insert`` runs schema queries per row,
2-6x the cost of the commit itself (ARCHITECTURE.md, section 7).

Instants are stored as TEXT in one format, aware UTC with microseconds
(``2026-01-26T10:00:00.000000+00:00``), so string order is time order and the indexes
sort correctly. A ``Store`` is used by one thread at a time (the daemon's writer thread);
it may be opened in another thread than the one using it.
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants and enum values;
# every value from outside goes through ``?`` parameters.
from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .core.execution import execution_object
from .core.lifecycle import Effect, Notify
from .core.models import (
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    RetryConfig,
)
from .errors import ConfigError, NotFound, StoreError

T = TypeVar("T")
Fn = Callable[[Call], tuple[Call, Sequence[Effect]]]

MIGRATIONS = Migrations("ami_listener")

# Written into partial indexes by 0001_initial and repeated verbatim by the queries that
# must use them: SQLite uses a partial index only when the query repeats its WHERE term.
# Literal, not derived from the enums, so the migration's text never changes; a test
# checks they still name PENDING_STATUSES and LIVE_ATTEMPT_STATUSES.
_PENDING_IN = "status IN ('queued', 'rescheduled', 'scheduled')"
_LIVE_IN = "status IN ('dialing', 'in-progress', 'ringing')"


@MIGRATIONS(name="0001_initial")
def _initial(db: Database) -> None:
    for sql in (
        """CREATE TABLE batches (id TEXT PRIMARY KEY, target TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'created', webhook_url TEXT,
            retry_config TEXT NOT NULL, created_at TEXT NOT NULL, scheduled_at TEXT) STRICT""",
        """CREATE TABLE calls (id TEXT PRIMARY KEY, target TEXT NOT NULL,
            to_number TEXT NOT NULL, from_number TEXT, status TEXT NOT NULL,
            retry_config TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            scheduled_at TEXT, retry_count INTEGER NOT NULL, variables TEXT NOT NULL,
            batch_id TEXT REFERENCES batches(id), webhook_url TEXT,
            bypass_call_guardrails INTEGER NOT NULL, answered_by_voice_mail INTEGER NOT NULL,
            error_message TEXT, timezone TEXT, cancel_requested TEXT,
            idempotency_key TEXT UNIQUE) STRICT""",
        # The claim query reads only pending rows in scheduled_at order: a partial index on
        # (scheduled_at) WHERE status is pending is the (status, scheduled_at) index
        # without the rows no claim ever looks at.
        f"CREATE INDEX calls_due ON calls(scheduled_at) WHERE {_PENDING_IN}",
        # No (status, ...) index: status changes on every transition, and an index on it
        # would add pages to every commit. Listing by status walks calls_created instead.
        "CREATE INDEX calls_created ON calls(created_at, id)",
        "CREATE INDEX calls_batch ON calls(batch_id, created_at)",
        # UNIQUE(call_id, number) is also the attempts(call_id) index.
        """CREATE TABLE attempts (id TEXT PRIMARY KEY,
            call_id TEXT NOT NULL REFERENCES calls(id), number INTEGER NOT NULL,
            status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, answered_at TEXT,
            cause INTEGER, cause_txt TEXT, tech_cause INTEGER, dial_status TEXT,
            originate_reason INTEGER, amd_status TEXT, amd_cause TEXT,
            answered_by_voice_mail INTEGER NOT NULL, permanent INTEGER NOT NULL,
            reason TEXT, decision TEXT, uniqueid TEXT, UNIQUE (call_id, number)) STRICT""",
        f"CREATE INDEX attempts_live ON attempts(call_id) WHERE {_LIVE_IN}",
        # seq (the rowid) is commit order, hence each call's order of events. Without
        # AUTOINCREMENT a new seq is max(seq) + 1: still above every stored event, and one
        # page (sqlite_sequence) fewer per commit.
        """CREATE TABLE outbox (seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE, call_id TEXT NOT NULL REFERENCES calls(id),
            status TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'dead')),
            last_error TEXT, delivered_at TEXT) STRICT""",
        "CREATE INDEX outbox_due ON outbox(state, next_at)",
        "CREATE INDEX outbox_head ON outbox(call_id, seq) WHERE state = 'pending'",
    ):
        db.execute(sql)


# ---- values <-> columns -------------------------------------------------------------
def ts(at: datetime) -> str:
    """The one stored form of an instant; refuses naive datetimes (they are bugs)."""
    if at.utcoffset() is None:
        raise StoreError(f"naive datetime {at!r}: instants must be aware UTC")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _ts(at: datetime | None) -> str | None:
    return None if at is None else ts(at)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class _Configs:
    """RetryConfig <-> JSON, memoized: stored configs repeat and pydantic is the hot cost.

    Configs are frozen, so one object may be shared by every call that stored that JSON.
    """

    def __init__(self) -> None:
        self._by_text: dict[str, RetryConfig] = {}
        self._by_id: dict[int, tuple[RetryConfig, str]] = {}

    def load(self, text: str) -> RetryConfig:
        config = self._by_text.get(text)
        if config is None:
            # Stored configs were validated on the way in, maybe against a wider operator
            # bound than Bolna's; re-validating must not reject them.
            config = RetryConfig.model_validate_json(text, context={"max_retries_limit": 99})
            self._remember(config, text)
        return config

    def dump(self, config: RetryConfig) -> str:
        hit = self._by_id.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        text = config.model_dump_json()
        self._remember(config, text)
        return text

    def _remember(self, config: RetryConfig, text: str) -> None:
        if len(self._by_id) > 4096:  # bound memory; a refill costs one parse per config
            self._by_text.clear()
            self._by_id.clear()
        self._by_text[text] = config
        self._by_id[id(config)] = (config, text)  # holding config keeps its id() unique


_CALL_FIELDS = tuple(f.name for f in fields(Call) if f.name != "attempts")
_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
# Columns are named as the dataclass fields and selected in field order.
_CALL_COLS = ", ".join(_CALL_FIELDS)
_ATTEMPT_COLS = ", ".join(_ATTEMPT_FIELDS)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (id, call_id, status, payload, created_at, next_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_OUTBOX_SELECT = (
    "SELECT o.id, o.seq, o.call_id, o.status, o.payload, o.created_at, o.attempts, "
    "o.next_at, o.state, o.last_error, coalesce(c.webhook_url, b.webhook_url) "
    "FROM outbox o JOIN calls c ON c.id = o.call_id LEFT JOIN batches b ON b.id = c.batch_id"
)
# The oldest pending event of its call: per-call delivery order. A dead event is not
# pending, so it does not block the events after it (a receiver that is down for good
# must not freeze a call's later news; `outbox_replay` re-queues the dead ones).
_HEAD = (
    "o.state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox p "
    "WHERE p.call_id = o.call_id AND p.state = 'pending' AND p.seq < o.seq)"
)

_JSON = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps(**kw) builds one per call
Encoders = dict[str, Callable[[Any], Any]]
# Fields missing here bind as they are: str, int, None, bool (as 0/1), StrEnum (as str).
_ATTEMPT_ENC: Encoders = {"started_at": ts, "ended_at": _ts, "answered_at": _ts}


_GETTERS = {_CALL_FIELDS: attrgetter(*_CALL_FIELDS), _ATTEMPT_FIELDS: attrgetter(*_ATTEMPT_FIELDS)}


def _values(obj: Any, names: tuple[str, ...], enc: Encoders) -> list[Any]:
    values = list(_GETTERS[names](obj))
    for i, name in enumerate(names):
        encode = enc.get(name)
        if encode is not None:
            values[i] = encode(values[i])
    return values


def _attempt(row: tuple[Any, ...]) -> Attempt:
    return Attempt(
        row[0], row[1], row[2], AttemptStatus(row[3]), datetime.fromisoformat(row[4]),
        _dt(row[5]), _dt(row[6]), row[7], row[8], row[9], row[10], row[11], row[12],
        row[13], bool(row[14]), bool(row[15]), row[16], row[17], row[18],
    )  # fmt: skip


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


def _event(row: tuple[Any, ...]) -> OutboxEvent:
    return OutboxEvent(
        row[0], row[1], row[2], row[3], row[4], datetime.fromisoformat(row[5]), row[6],
        datetime.fromisoformat(row[7]), row[8], row[9], row[10],
    )  # fmt: skip


class Store:
    """Calls, attempts, batches and the webhook outbox in one SQLite file."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: sqlite3.Connection = db.conn
        self._configs = _Configs()
        self._call_enc: Encoders = {
            "retry_config": self._configs.dump,
            "created_at": ts,
            "updated_at": ts,
            "scheduled_at": _ts,
            "variables": json.dumps,
        }

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "full",
        busy_timeout_s: float = 10.0,
        migrate: bool = True,  # False: `autoretry migrate` calls migrate() to list what ran
    ) -> Store:
        """Open (creating if needed) the database at ``path``: WAL, foreign keys, migrated.

        ``synchronous="full"`` survives power loss; ``"normal"`` may lose the last commits
        on power loss (never on a process crash) and is several times faster in WAL.
        """
        if synchronous not in ("full", "normal"):
            raise ConfigError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        try:
            # isolation_level=None: the driver opens no implicit transactions; we BEGIN.
            conn = sqlite3.connect(
                str(path),
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        try:
            db = Database(conn)
            db.enable_wal()
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            store = cls(db)
            if migrate:
                store.migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied now ([] when up to date).

        The whole run is one BEGIN IMMEDIATE transaction (sqlite-utils nests each migration
        in a savepoint), so two processes opening a new file migrate it once.
        """
        with self._tx():
            names = [m.name for m in MIGRATIONS.pending(self.db)]
            MIGRATIONS.apply(self.db)
        return names

    # ---- transactions ---------------------------------------------------------------
    @contextmanager
    def _tx(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise StoreError(f"{begin} failed: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{type(exc).__name__}: {exc}") from exc
            raise

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        # A deferred transaction: one snapshot for a read that takes several statements.
        return self._tx("BEGIN")

    # ---- calls ------------------------------------------------------------------------
    def create_call(
        self, call: Call, effects: Sequence[Effect], *, idempotency_key: str | None = None
    ) -> tuple[Call, bool]:
        """Insert ``call`` (+ its attempts) and one outbox event per ``Notify``, in one tx.

        A key already used returns ``(existing call, False)`` and writes nothing.
        """
        with self._tx() as conn:
            if idempotency_key is not None:
                row = conn.execute(
                    "SELECT id FROM calls WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return self._load(conn, row[0]), False
            self._insert_call(conn, call, idempotency_key)
            self._write_effects(conn, call, effects)
        return call, True

    def get_call(self, call_id: str) -> Call:
        """The call with its attempts, oldest first; ``NotFound`` if there is none."""
        with self._read() as conn:
            return self._load(conn, call_id)

    def transition(self, call_id: str, fn: Fn) -> tuple[Call, tuple[Effect, ...]]:
        """Load the call fresh, apply ``fn``, write the result and its events; one tx.

        If ``fn`` raises, nothing is written and the exception propagates unchanged.
        """
        with self._tx() as conn:
            return self._apply(conn, self._load(conn, call_id), fn)

    def claim_due(self, now: datetime, limit: int, fn: Fn) -> list[tuple[Call, tuple[Effect, ...]]]:
        """Apply ``fn`` to up to ``limit`` pending calls due at ``now``, oldest first; one tx.

        The write lock is taken before the due calls are read, so a call is claimed once
        even by two processes. ``fn`` raising rolls back the whole claim.
        """
        with self._tx() as conn:
            ids = conn.execute(
                f"SELECT id FROM calls WHERE {_PENDING_IN} AND scheduled_at <= ? "
                "ORDER BY scheduled_at, id LIMIT ?",
                (ts(now), limit),
            ).fetchall()
            return [self._apply(conn, self._load(conn, row[0]), fn) for row in ids]

    def next_due_at(self) -> datetime | None:
        row = self._one(f"SELECT min(scheduled_at) FROM calls WHERE {_PENDING_IN}")
        return _dt(row[0])

    def list_calls(
        self,
        *,
        status: str | None = None,
        batch_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Call]:
        """Calls, newest first, optionally of one status and/or batch."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if batch_id is not None:
            where.append("batch_id = ?")
            args.append(batch_id)
        sql = "SELECT id FROM calls" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        return self._load_many(sql, (*args, limit, offset))

    def live_calls(self) -> list[Call]:
        """Calls that have an attempt on the wire (to reconcile after a restart)."""
        return self._load_many(f"SELECT DISTINCT call_id FROM attempts WHERE {_LIVE_IN}", ())

    def count_live(self) -> int:
        return int(self._one(f"SELECT count(DISTINCT call_id) FROM attempts WHERE {_LIVE_IN}")[0])

    # ---- outbox -----------------------------------------------------------------------
    def outbox_due(self, now: datetime, limit: int) -> list[OutboxEvent]:
        """Events to deliver now: each call's oldest pending event, if due (see ``_HEAD``)."""
        return self._events(
            f"{_OUTBOX_SELECT} WHERE {_HEAD} AND o.next_at <= ? ORDER BY o.next_at, o.seq LIMIT ?",
            (ts(now), limit),
        )

    def outbox_delivered(self, event_id: str, at: datetime) -> None:
        self._outbox_set(
            "state = 'delivered', attempts = attempts + 1, delivered_at = ?", (ts(at),), event_id
        )

    def outbox_retry_later(self, event_id: str, next_at: datetime, error: str) -> None:
        self._outbox_set(
            "attempts = attempts + 1, next_at = ?, last_error = ?", (ts(next_at), error), event_id
        )

    def outbox_dead(self, event_id: str, error: str) -> None:
        """Give up on an event after a failed attempt; it no longer blocks its call."""
        self._outbox_set(
            "state = 'dead', attempts = attempts + 1, last_error = ?", (error,), event_id
        )

    def outbox_list(self, *, state: str | None = None, limit: int = 100) -> list[OutboxEvent]:
        """Events in commit order, optionally in one state."""
        where = "" if state is None else " WHERE o.state = ?"
        args: tuple[Any, ...] = () if state is None else (state,)
        return self._events(f"{_OUTBOX_SELECT}{where} ORDER BY o.seq LIMIT ?", (*args, limit))

    def outbox_replay(self, event_ids: Sequence[str] | None = None) -> int:
        """Dead events back to pending (all dead when ``event_ids`` is None); how many.

        ``attempts`` restarts at 0 so backoff starts over; ``next_at`` is kept, which is in
        the past, so they are due at once.
        """
        sql = "UPDATE outbox SET state = 'pending', attempts = 0 WHERE state = 'dead'"
        with self._tx() as conn:
            if event_ids is None:
                return conn.execute(sql).rowcount
            return sum(conn.execute(f"{sql} AND id = ?", (i,)).rowcount for i in event_ids)

    def next_outbox_at(self) -> datetime | None:
        row = self._one(f"SELECT o.next_at FROM outbox o WHERE {_HEAD} ORDER BY o.next_at LIMIT 1")
        return None if row is None else _dt(row[0])

    def outbox_depth(self) -> int:
        """Undelivered events, dead ones excluded."""
        return int(self._one("SELECT count(*) FROM outbox WHERE state = 'pending'")[0])

    # ---- batches (minimal) --------------------------------------------------------------
    def create_batch(
        self,
        batch_id: str,
        target: str,
        webhook_url: str | None,
        retry_config: RetryConfig,
        created_at: datetime,
        calls: Sequence[tuple[Call, Sequence[Effect]]] = (),
    ) -> None:
        """The batch row and its calls (each with its events), in one transaction."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO batches (id, target, webhook_url, retry_config, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch_id, target, webhook_url, self._configs.dump(retry_config), ts(created_at)),
            )
            for call, effects in calls:
                self._insert_call(conn, call, None)
                self._write_effects(conn, call, effects)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        row = self._one(
            "SELECT id, target, state, webhook_url, retry_config, created_at, scheduled_at "
            "FROM batches WHERE id = ?",
            (batch_id,),
        )
        if row is None:
            raise NotFound(f"no batch {batch_id!r}")
        return {
            "id": row[0],
            "target": row[1],
            "state": row[2],
            "webhook_url": row[3],
            "retry_config": self._configs.load(row[4]),
            "created_at": _dt(row[5]),
            "scheduled_at": _dt(row[6]),
        }

    def batch_status_counts(self, batch_id: str) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM calls WHERE batch_id = ? GROUP BY status",
                (batch_id,),
            ).fetchall()
        return {status: n for status, n in rows}

    # ---- internals ----------------------------------------------------------------------
    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            return self._conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _load(self, conn: sqlite3.Connection, call_id: str) -> Call:
        row = conn.execute(f"SELECT {_CALL_COLS} FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"no call {call_id!r}")
        attempts = conn.execute(
            f"SELECT {_ATTEMPT_COLS} FROM attempts WHERE call_id = ? ORDER BY number", (call_id,)
        ).fetchall()
        return Call(
            row[0], row[1], row[2], CallStatus(row[3]), self._configs.load(row[4]),
            datetime.fromisoformat(row[5]), datetime.fromisoformat(row[6]), _dt(row[7]),
            row[8], row[9], json.loads(row[10]), row[11], row[12], bool(row[13]),
            bool(row[14]), row[15], row[16], row[17], tuple(_attempt(a) for a in attempts),
        )  # fmt: skip

    def _load_many(self, sql: str, args: tuple[Any, ...]) -> list[Call]:
        with self._read() as conn:
            return [self._load(conn, row[0]) for row in conn.execute(sql, args).fetchall()]

    def _events(self, sql: str, args: tuple[Any, ...]) -> list[OutboxEvent]:
        try:
            return [_event(row) for row in self._conn.execute(sql, args).fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _outbox_set(self, assignments: str, args: tuple[Any, ...], event_id: str) -> None:
        with self._tx() as conn:
            cur = conn.execute(f"UPDATE outbox SET {assignments} WHERE id = ?", (*args, event_id))
            if cur.rowcount == 0:
                raise NotFound(f"no outbox event {event_id!r}")

    def _insert_call(self, conn: sqlite3.Connection, call: Call, key: str | None) -> None:
        conn.execute(
            f"INSERT INTO calls ({_CALL_COLS}, idempotency_key) "
            f"VALUES ({', '.join('?' * (len(_CALL_FIELDS) + 1))})",
            (*_values(call, _CALL_FIELDS, self._call_enc), key),
        )
        for attempt in call.attempts:
            self._insert_attempt(conn, attempt)

    def _insert_attempt(self, conn: sqlite3.Connection, attempt: Attempt) -> None:
        conn.execute(
            f"INSERT INTO attempts ({_ATTEMPT_COLS}) "
            f"VALUES ({', '.join('?' * len(_ATTEMPT_FIELDS))})",
            _values(attempt, _ATTEMPT_FIELDS, _ATTEMPT_ENC),
        )

    def _update(
        self, conn: sqlite3.Connection, table: str, old: Any, new: Any, names: tuple[str, ...],
        enc: Encoders,
    ) -> None:  # fmt: skip
        """UPDATE only the columns whose values changed.

        SQLite rewrites every index on a column named in SET, changed or not; naming only
        changed columns keeps an outcome commit to a few dirty pages (the WAL cost).
        """
        cols, args = [], []
        get = _GETTERS[names]
        for name, value, was in zip(names, get(new), get(old), strict=True):
            if value is was or value == was:
                continue
            encode = enc.get(name)
            cols.append(name)
            args.append(value if encode is None else encode(value))
        if cols:
            sets = ", ".join(f"{c} = ?" for c in cols)
            conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", (*args, new.id))

    def _apply(
        self, conn: sqlite3.Connection, old: Call, fn: Fn
    ) -> tuple[Call, tuple[Effect, ...]]:
        new, effects = fn(old)
        effects = tuple(effects)
        if new.id != old.id:
            raise StoreError(f"transition of call {old.id} returned call {new.id}")
        if new is not old:
            self._update(conn, "calls", old, new, _CALL_FIELDS, self._call_enc)
            before = {a.id: a for a in old.attempts}
            for attempt in new.attempts:
                was = before.pop(attempt.id, None)
                if was is None:
                    self._insert_attempt(conn, attempt)
                elif was is not attempt:
                    self._update(conn, "attempts", was, attempt, _ATTEMPT_FIELDS, _ATTEMPT_ENC)
            if before:
                raise StoreError(f"transition of call {old.id} dropped attempts {sorted(before)}")
        self._write_effects(conn, new, effects)
        return new, effects

    def _write_effects(
        self, conn: sqlite3.Connection, call: Call, effects: Sequence[Effect]
    ) -> None:
        at = ts(call.updated_at)
        for effect in effects:
            if isinstance(effect, Notify):
                # The snapshot carries the notified status, should one transition report
                # two statuses (each event then says what it announces).
                snap = call if effect.status == call.status else replace(call, status=effect.status)
                payload = _JSON.encode(execution_object(snap))
                conn.execute(
                    _INSERT_OUTBOX,
                    (uuid.uuid4().hex, call.id, effect.status.value, payload, at, at),
                )
