"""What every part of ``Store`` may call on the whole: ``StorePart``.

``Store`` is put together from parts (``StoreFile``, ``CallQueries``, ``BatchStore``,
``OutboxStore``) that each use a few of its internals: the transaction helpers, the
call loading and writing of store.py, ``_one`` of store_outbox.py. They are declared
here once, for the type checker only, so at run time each name is the real one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from .core.lifecycle import Effect
from .core.models import Call
from .store_rows import Configs

Fn = Callable[[Call], tuple[Call, Sequence[Effect]]]  # a transition: Store.transition's fn


class StorePart:
    db: Database
    _conn: sqlite3.Connection
    _configs: Configs

    if TYPE_CHECKING:  # defined in store.py (and _one in store_outbox.py)

        def __init__(self, db: Database) -> None: ...
        def _tx(
            self, begin: str = "BEGIN IMMEDIATE", *, calls: bool = True
        ) -> AbstractContextManager[sqlite3.Connection]: ...
        def _read(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any: ...
        def _load(self, conn: sqlite3.Connection, call_id: str) -> Call: ...
        def _current(self, conn: sqlite3.Connection, call_id: str) -> Call: ...
        def _apply(
            self, conn: sqlite3.Connection, old: Call, fn: Fn
        ) -> tuple[Call, tuple[Effect, ...]]: ...
        def _insert_call(self, conn: sqlite3.Connection, call: Call, key: str | None) -> None: ...
        def _write_effects(
            self, conn: sqlite3.Connection, call: Call, effects: Sequence[Effect]
        ) -> None: ...
