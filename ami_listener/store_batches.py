"""Batches (minimal): ``BatchStore``, a part of ``Store``.

Separate from store.py because nothing on the per-call write path touches a batch row:
a batch is written once with its calls (through ``Store``'s ``_insert_call`` and
``_write_effects``, in one transaction) and read by the API and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .core.lifecycle import Effect
from .core.models import Call, RetryConfig
from .errors import NotFound
from .store_part import StorePart
from .store_rows import dt_or_none, ts


class BatchStore(StorePart):
    """The batch rows; the rest of ``Store`` is in store.py."""

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
            "created_at": dt_or_none(row[5]),
            "scheduled_at": dt_or_none(row[6]),
        }

    def batch_status_counts(self, batch_id: str) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM calls WHERE batch_id = ? GROUP BY status",
                (batch_id,),
            ).fetchall()
        return {status: n for status, n in rows}
