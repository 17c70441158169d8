"""The one thread that owns the database (datasette's single write thread).

SQLite allows one writer at a time and its calls block; the daemon's coroutines hand their
store work to this thread, so the event loop never waits on a commit's fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from .store import Store

T = TypeVar("T")


class Writer:
    def __init__(self, path: Path | str, *, synchronous: str = "full") -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="autoretry-db")
        self._store: Store | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        # Opened in the writer thread: sqlite3 connections belong to the thread that made them.
        self._store = await loop.run_in_executor(
            self._executor, lambda: Store.open(self._path, synchronous=self._synchronous)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._store.close)
            self._store = None
        self._executor.shutdown(wait=True)

    async def __call__(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` in the writer thread and return its result."""
        store = self._store
        if store is None:
            raise RuntimeError("Writer used outside `async with`")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, store)
