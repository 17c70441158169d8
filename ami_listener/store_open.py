"""Opening, migrating and closing the database file: ``StoreFile``, a part of ``Store``.

Separate from store.py because it runs once per process: store.py keeps what runs per
transaction (``migrate`` is one of its transactions, like every write).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlite_utils import Database

from .errors import ConfigError, StoreError
from .store_part import StorePart
from .store_schema import MIGRATIONS

MMAP_BYTES = 256 * 1024 * 1024  # of the database file read through mmap (address space only)


def connect(path: str | Path, *, synchronous: str, busy_timeout_s: float) -> Database:
    """The database at ``path`` (created if needed) in WAL mode, with foreign keys on.

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
        # Reads straight from the mapped file, not a pread and a copy per page: the
        # webhook sender reads every payload and its call's row (bench/webhooks.py:
        # ~10% more deliveries a second). Writes still go through the WAL; a file
        # larger than this is read the usual way past it.
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open {path}: {exc}") from exc
    return db


class StoreFile(StorePart):
    """The database file of a ``Store``: open, migrate, close."""

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "full",
        busy_timeout_s: float = 10.0,
        migrate: bool = True,  # False: `autoretry migrate` calls migrate() to list what ran
    ) -> Self:
        """Open (creating if needed) the database at ``path``: WAL, foreign keys, migrated.

        ``synchronous``: see ``connect``.
        """
        db = connect(path, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
        try:
            store = cls(db)
            if migrate:
                store.migrate()
        except sqlite3.Error as exc:
            db.conn.close()
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
