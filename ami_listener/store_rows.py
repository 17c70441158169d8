"""Values <-> rows for calls and attempts, and the SQL that writes them.

Instants are stored as TEXT in one format, aware UTC with microseconds
(``2026-01-26T10:00:00.000000+00:00``), so string order is time order and the indexes
sort correctly. Columns are named as the dataclass fields and selected in field order.
The write path runs once per state change, so its SQL text is built once per shape and
kept, and a diff names only the columns that changed.
"""

# ruff: noqa: S608 -- SQL text here is built only from field names (module constants);
# every value goes through ``?`` parameters.
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from itertools import compress
from operator import attrgetter, is_not
from typing import Any

from .core.models import Attempt, AttemptStatus, Call, CallStatus, RetryConfig
from .errors import StoreError


def ts(at: datetime) -> str:
    """The one stored form of an instant; refuses naive datetimes (they are bugs)."""
    if at.tzinfo is not UTC:
        if at.utcoffset() is None:
            raise StoreError(f"naive datetime {at!r}: instants must be aware UTC")
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


class Stamps:
    """``ts`` with a one-entry memo, per store: a state change stores one instant in several
    columns (updated_at, an attempt's ended_at, the event's created_at and next_at), and
    datetimes are immutable, so the same object has the same text."""

    __slots__ = ("_at", "_text")

    def __init__(self) -> None:
        self._at: datetime | None = None
        self._text = ""

    def __call__(self, at: datetime) -> str:
        if at is not self._at:
            self._text = ts(at)
            self._at = at
        return self._text

    def or_none(self, at: datetime | None) -> str | None:
        return None if at is None else self(at)


def ts_or_none(at: datetime | None) -> str | None:
    return None if at is None else ts(at)


def dt_or_none(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class Configs:
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


Encode = Callable[[Any], Any] | None


class Rows:
    """How one dataclass maps to its table: columns, encoders, INSERT and diff UPDATEs.

    ``encoders[i]`` turns field ``i`` into its column value; ``None`` binds the value as
    it is (str, int, None, bool as 0/1, StrEnum as str). ``key`` names the fields of the
    UPDATE's WHERE clause.
    """

    def __init__(
        self, table: str, names: tuple[str, ...], encoders: dict[str, Encode], key: tuple[str, ...]
    ) -> None:
        self.table = table
        self.names = names
        self.get = attrgetter(*names)
        self.encoders = tuple(encoders.get(n) for n in names)
        self.cols = ", ".join(names)
        self.insert_sql = (
            f"INSERT INTO {table} ({self.cols}) VALUES ({', '.join('?' * len(names))})"
        )
        self._key = attrgetter(*key)
        self._where = " AND ".join(f"{k} = ?" for k in key)
        self._updates: dict[tuple[int, ...], str] = {}
        self._index = range(len(names))

    def values(self, obj: Any) -> list[Any]:
        return [v if e is None else e(v) for v, e in zip(self.get(obj), self.encoders, strict=True)]

    def update(self, old: Any, new: Any) -> tuple[str, list[Any]] | None:
        """The UPDATE of only the columns whose values changed, or None if none did.

        SQLite rewrites every index on a column named in SET, changed or not; naming only
        changed columns keeps a commit to the pages it must dirty.
        """
        was, now = self.get(old), self.get(new)
        # A transition copies the fields it leaves alone (same objects): find the others
        # in C, then compare only those by value.
        changed = tuple(
            [i for i in compress(self._index, map(is_not, now, was)) if now[i] != was[i]]
        )
        if not changed:
            return None
        sql = self._updates.get(changed)
        if sql is None:
            sets = ", ".join(f"{self.names[i]} = ?" for i in changed)
            sql = self._updates[changed] = f"UPDATE {self.table} SET {sets} WHERE {self._where}"
        enc = self.encoders
        args = [now[i] if enc[i] is None else enc[i](now[i]) for i in changed]  # type: ignore[misc]
        key = self._key(new)
        args.extend(key if isinstance(key, tuple) else (key,))
        return sql, args


CALL_FIELDS = tuple(f.name for f in fields(Call) if f.name != "attempts")
ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))


def attempt_rows(stamp: Callable[[datetime], str] = ts) -> Rows:
    or_none = stamp.or_none if isinstance(stamp, Stamps) else ts_or_none
    encoders: dict[str, Encode] = {"started_at": stamp, "ended_at": or_none, "answered_at": or_none}
    return Rows("attempts", ATTEMPT_FIELDS, encoders, key=("call_id", "number"))


ATTEMPTS = attempt_rows()


def call_rows(configs: Configs, stamp: Callable[[datetime], str] = ts) -> Rows:
    """Calls' mapping; its retry_config encoder is the store's memo."""
    or_none = stamp.or_none if isinstance(stamp, Stamps) else ts_or_none
    encoders: dict[str, Encode] = {
        "retry_config": configs.dump,
        "created_at": stamp,
        "updated_at": stamp,
        "scheduled_at": or_none,
        "variables": json.dumps,
    }
    return Rows("calls", CALL_FIELDS, encoders, key=("id",))


SELECT_CALL = f"SELECT {', '.join(CALL_FIELDS)} FROM calls WHERE id = ?"
SELECT_ATTEMPTS = f"SELECT {ATTEMPTS.cols} FROM attempts WHERE call_id = ? ORDER BY number"
INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_FIELDS)}, idempotency_key) "
    f"VALUES ({', '.join('?' * (len(CALL_FIELDS) + 1))})"
)


def attempt_of(row: tuple[Any, ...]) -> Attempt:
    return Attempt(
        row[0], row[1], row[2], AttemptStatus(row[3]), datetime.fromisoformat(row[4]),
        dt_or_none(row[5]), dt_or_none(row[6]), row[7], row[8], row[9], row[10], row[11],
        row[12], row[13], bool(row[14]), bool(row[15]), row[16], row[17], row[18],
    )  # fmt: skip


def call_of(row: tuple[Any, ...], attempts: list[tuple[Any, ...]], configs: Configs) -> Call:
    return Call(
        row[0], row[1], row[2], CallStatus(row[3]), configs.load(row[4]),
        datetime.fromisoformat(row[5]), datetime.fromisoformat(row[6]), dt_or_none(row[7]),
        row[8], row[9], json.loads(row[10]), row[11], row[12], bool(row[13]),
        bool(row[14]), row[15], row[16], row[17], tuple(attempt_of(a) for a in attempts),
    )  # fmt: skip
