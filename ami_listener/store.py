"""SQLite persistence: the only modules that speak SQL are this one and its ``store_*``.

Schema changes are sqlite-utils ``Migrations`` (``store_schema``); the database runs in WAL
mode. Every write is one ``BEGIN IMMEDIATE`` transaction, so a state change (call row, the
attempts inside it, one outbox row per ``Notify``) commits whole or not at all, and two processes on
one file serialize on the write lock instead of failing on a stale snapshot. Hot-path
writes are raw ``execute`` calls on sqlite-utils' connection: ``Table.insert`` runs schema
queries per row, 2-6x the cost of the commit itself (ARCHITECTURE.md, section 7).

A ``Store`` is used by one thread at a time (the daemon's writer thread); it may be opened
in another thread than the one using it. It keeps the calls it last wrote in memory and
hands them to the next transition instead of reading them back: valid because
``PRAGMA data_version`` (read once per transaction, under its lock) changes whenever
another connection commits, and then the memory is dropped. Writes through ``self.db``
itself bypass this; the store's methods are the way to write. It also keeps each call's
payload text that state changes leave alone (``core.execution.ExecutionJson``), so an
outbox event is pieced together rather than encoded whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn

from sqlite_utils import Database

from . import store_outbox as ob
from .core.execution import ExecutionJson
from .core.lifecycle import Effect, Notify
from .core.models import FINAL_STATUSES, Call, evolve
from .errors import NotFound, StoreError
from .store_batches import BatchStore
from .store_calls import CallQueries
from .store_open import StoreFile
from .store_outbox import OutboxEvent, OutboxStore
from .store_part import Fn
from .store_rows import (
    INSERT_CALL,
    SELECT_CALL,
    AttemptsText,
    Configs,
    Stamps,
    call_of,
    call_rows,
    live_start,
    ts,
)
from .store_schema import MIGRATIONS, PENDING_IN

__all__ = ["MIGRATIONS", "OutboxEvent", "Store", "ts"]
_PENDING_IN = PENDING_IN  # the name tests and older callers import


_CACHE_MAX = 20_000  # calls kept in memory; the oldest written is dropped first
_FINAL = frozenset(map(id, FINAL_STATUSES))


class Store(StoreFile, CallQueries, BatchStore, OutboxStore):
    """Calls, attempts, batches and the webhook outbox in one SQLite file.

    Opening and migrating are in ``store_open``, listings and the claim of due calls in
    ``store_calls``, batches in ``store_batches``, the outbox in ``store_outbox``: this
    class keeps the write path.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: sqlite3.Connection = db.conn
        self._configs = Configs()
        self._ts = Stamps()
        self._calls = call_rows(self._configs, self._ts)
        self._attempts = AttemptsText(self._ts, _CACHE_MAX)
        self._cache: dict[str, Call] = {}  # as committed, valid while _version holds
        self._staged: dict[str, Call] = {}  # written by the open transaction
        self._json = ExecutionJson()  # outbox payloads, from text kept per call
        self._version: int | None = None

    # ---- transactions ---------------------------------------------------------------
    # One transaction is _begin, the work, COMMIT, then _publish; _fail on any error.
    # ``transition`` spells this out, the hot path; everything else uses ``_tx``.
    @contextmanager
    def _tx(
        self, begin: str = "BEGIN IMMEDIATE", *, calls: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """``calls=False``: the transaction neither reads nor writes calls, so the call
        cache needs no check (the webhook sender's trips: each statement less is a GIL
        hand-off less, see ``store_delivery``). Skipping it loses nothing: ``_version``
        stays as last read, and the next check still sees any other connection's commit."""
        conn = self._begin(begin, calls)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._fail(exc)
        self._publish()

    def _begin(self, begin: str, calls: bool = True) -> sqlite3.Connection:
        conn = self._conn
        try:
            conn.execute(begin)
            if not calls:
                return conn
            # Another connection's commit changes data_version: what we remember is stale.
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{begin} failed: {exc}") from exc
        if version != self._version:
            self._cache.clear()
            self._version = version
        return conn

    def _fail(self, exc: BaseException) -> NoReturn:
        """Roll back after ``exc`` and raise it (a sqlite3 error as a ``StoreError``)."""
        conn = self._conn
        self._staged.clear()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        else:  # COMMIT itself failed: whether it landed is not ours to assume
            self._cache.clear()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        raise exc

    def _publish(self) -> None:
        """After a commit: remember the calls it wrote (final ones are forgotten)."""
        staged = self._staged
        if not staged:
            return
        cache = self._cache
        for call_id, call in staged.items():
            cache.pop(call_id, None)
            # A final call is not transitioned. (Members by id: a set of the members
            # would hash each member in Python.)
            if id(call.status) in _FINAL:
                self._json.forget(call_id)
                self._attempts.forget(call_id)
            else:
                cache[call_id] = call
        staged.clear()
        while len(cache) > _CACHE_MAX:
            del cache[next(iter(cache))]

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
        conn = self._begin("BEGIN IMMEDIATE")  # _tx by hand: this is the hot path
        try:
            done = self._apply(conn, self._current(conn, call_id), fn)
            conn.execute("COMMIT")
        except BaseException as exc:
            self._fail(exc)
        self._publish()
        return done

    # ---- internals ----------------------------------------------------------------------
    def _load(self, conn: sqlite3.Connection, call_id: str) -> Call:
        row = conn.execute(SELECT_CALL, (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"no call {call_id!r}")
        return call_of(row, self._configs)

    def _current(self, conn: sqlite3.Connection, call_id: str) -> Call:
        """The call as committed: remembered (see the module doc) or read."""
        call = self._cache.get(call_id)
        return self._load(conn, call_id) if call is None else call

    def _insert_call(self, conn: sqlite3.Connection, call: Call, key: str | None) -> None:
        live_at = self._ts.or_none(live_start(call.attempts))
        conn.execute(INSERT_CALL, (*self._calls.values(call), key, live_at, self._attempts(call)))
        self._staged[call.id] = call

    def _apply(
        self, conn: sqlite3.Connection, old: Call, fn: Fn
    ) -> tuple[Call, tuple[Effect, ...]]:
        new, effects = fn(old)
        if type(effects) is not tuple:
            effects = tuple(effects)
        if new.id != old.id:
            raise StoreError(f"transition of call {old.id} returned call {new.id}")
        if new is not old:
            if new.attempts is old.attempts:
                update = self._calls.update(old, new)
            else:
                update = self._calls.update(old, new, *self._attempts_sets(old, new))
            if update is not None:
                conn.execute(*update)
            self._staged[new.id] = new
        if effects:
            self._write_effects(conn, new, effects)
        return new, effects

    def _attempts_sets(self, old: Call, new: Call) -> tuple[tuple[str, ...], list[Any]]:
        """The columns that write ``new``'s attempts: the text, and live_at if it moved.

        Attempts are kept, ended or appended, never dropped or reordered.
        """
        olds, news = old.attempts, new.attempts
        if len(news) < len(olds):
            self._refuse(old, new)
        for was, attempt in zip(olds, news, strict=False):
            if was is not attempt and was.id != attempt.id:
                self._refuse(old, new)
        text = self._attempts(new)
        was_live, live = live_start(olds), live_start(news)
        if live == was_live:  # calls_live untouched: a dial's ringing, answer
            return ("attempts",), [text]
        return ("attempts", "live_at"), [text, self._ts.or_none(live)]

    @staticmethod
    def _refuse(old: Call, new: Call) -> NoReturn:
        dropped = {a.id for a in old.attempts} - {a.id for a in new.attempts}
        if dropped:
            raise StoreError(f"transition of call {old.id} dropped attempts {sorted(dropped)}")
        raise StoreError(f"transition of call {old.id} reordered its attempts")

    def _write_effects(
        self, conn: sqlite3.Connection, call: Call, effects: Sequence[Effect]
    ) -> None:
        at = None
        for effect in effects:
            if isinstance(effect, Notify):
                # The snapshot carries the notified status, should one transition report
                # two statuses (each event then says what it announces).
                snap = call if effect.status == call.status else evolve(call, status=effect.status)
                at = at or self._ts(call.updated_at)
                conn.execute(ob.INSERT, (call.id, effect.status.value, self._json(snap), at, at))
