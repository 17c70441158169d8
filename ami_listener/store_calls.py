"""Reads of the calls table, and the scheduler's claim: ``CallQueries``, a part of ``Store``.

Separate from store.py, which keeps the per-call write path (``transition`` and what it
runs) with the memory of calls that path relies on. These are listings and counts (the
API, the CLI, the scheduler's look ahead), plus ``claim_due``, which runs ``Store``'s own
``_apply`` on each due call: no code of the transition path lives here.
"""

# ruff: noqa: S608 -- SQL text here is built only from module constants and enum values;
# every value from outside goes through ``?`` parameters.
from __future__ import annotations

from datetime import datetime
from typing import Any

from .core.lifecycle import Effect
from .core.models import Call
from .store_part import Fn, StorePart
from .store_rows import dt_or_none, ts
from .store_schema import LIVE, PENDING_IN


class CallQueries(StorePart):
    """Listings, counts and the claim of due calls; the rest of ``Store`` is in store.py."""

    def claim_due(self, now: datetime, limit: int, fn: Fn) -> list[tuple[Call, tuple[Effect, ...]]]:
        """Apply ``fn`` to up to ``limit`` pending calls due at ``now``, oldest first; one tx.

        The write lock is taken before the due calls are read, so a call is claimed once
        even by two processes. ``fn`` raising rolls back the whole claim.
        """
        with self._tx() as conn:
            ids = conn.execute(
                f"SELECT id FROM calls WHERE {PENDING_IN} AND scheduled_at <= ? "
                "ORDER BY scheduled_at, id LIMIT ?",
                (ts(now), limit),
            ).fetchall()
            return [self._apply(conn, self._current(conn, row[0]), fn) for row in ids]

    def next_due_at(self) -> datetime | None:
        row = self._one(f"SELECT min(scheduled_at) FROM calls WHERE {PENDING_IN}")
        return dt_or_none(row[0])

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
        return self._load_many(f"SELECT id FROM calls WHERE {LIVE} ORDER BY live_at, id", ())

    def live_numbers(self) -> set[str]:
        """The numbers that have an attempt on the wire (the scheduler never rings them)."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT to_number FROM calls WHERE {LIVE}").fetchall()
        return {row[0] for row in rows}

    def count_live(self) -> int:
        return int(self._one(f"SELECT count(*) FROM calls WHERE {LIVE}")[0])

    def _load_many(self, sql: str, args: tuple[Any, ...]) -> list[Call]:
        with self._read() as conn:
            return [self._load(conn, row[0]) for row in conn.execute(sql, args).fetchall()]
