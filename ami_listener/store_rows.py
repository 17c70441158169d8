"""Values <-> rows for calls (their attempts inside them), and the SQL that writes them.

Instants are stored as TEXT in one format, aware UTC with microseconds
(``2026-01-26T10:00:00.000000+00:00``), so string order is time order and the indexes
sort correctly. Columns are named as the dataclass fields and selected in field order.
The write path runs once per state change, so its SQL text is built once per shape and
kept, and a diff names only the columns that changed. A call's attempts are one column,
a JSON array with one array per attempt (``ATTEMPT_FIELDS`` in order): ``AttemptsText``
writes it, each attempt encoded once and its text reused while the attempt is unchanged.
"""

# ruff: noqa: S608 -- SQL text here is built only from field names (module constants);
# every value goes through ``?`` parameters.
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from itertools import compress
from operator import attrgetter, is_not
from typing import Any

from .core.models import (
    LIVE_ATTEMPT_STATUSES,
    Attempt,
    AttemptStatus,
    Call,
    CallStatus,
    RetryConfig,
)
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
        self._key = attrgetter(*key)
        self._where = " AND ".join(f"{k} = ?" for k in key)
        self._updates: dict[tuple[tuple[int, ...], tuple[str, ...]], str] = {}
        self._index = range(len(names))

    def values(self, obj: Any) -> list[Any]:
        return [v if e is None else e(v) for v, e in zip(self.get(obj), self.encoders, strict=True)]

    def update(
        self, old: Any, new: Any, extra: tuple[str, ...] = (), extra_values: Sequence[Any] = ()
    ) -> tuple[str, list[Any]] | None:
        """The UPDATE of only the columns whose values changed, or None if none did.

        SQLite rewrites every index on a column named in SET, changed or not; naming only
        changed columns keeps a commit to the pages it must dirty. ``extra`` names more
        columns to set (not fields), to ``extra_values``.
        """
        was, now = self.get(old), self.get(new)
        # A transition copies the fields it leaves alone (same objects): find the others
        # in C, then compare only those by value.
        changed = tuple(
            [i for i in compress(self._index, map(is_not, now, was)) if now[i] != was[i]]
        )
        if not changed and not extra:
            return None
        sql = self._updates.get((changed, extra))
        if sql is None:
            sets = ", ".join(
                [*(f"{self.names[i]} = ?" for i in changed), *(f"{n} = ?" for n in extra)]
            )
            sql = f"UPDATE {self.table} SET {sets} WHERE {self._where}"
            self._updates[changed, extra] = sql
        enc = self.encoders
        args = [now[i] if enc[i] is None else enc[i](now[i]) for i in changed]  # type: ignore[misc]
        args.extend(extra_values)
        key = self._key(new)
        args.extend(key if isinstance(key, tuple) else (key,))
        return sql, args


CALL_FIELDS = tuple(f.name for f in fields(Call) if f.name != "attempts")
# An attempt's fields as stored in its call's attempts column: call_id is the call's.
ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt) if f.name != "call_id")
_ATTEMPT_GET = attrgetter(*ATTEMPT_FIELDS)
# What json.dumps(..., separators=(",", ":")) runs for a list, less its Python layers.
_encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, None, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
)


def _dumps(values: list[Any]) -> str:
    return "".join(_encoder(values, 0))


# A tuple: `in` compares by identity first, then str ==, all in C (a set would hash the
# enum member in Python; this runs per state change).
_LIVE = tuple(LIVE_ATTEMPT_STATUSES)


def live_start(attempts: tuple[Attempt, ...]) -> datetime | None:
    """The started_at of the first live attempt (the calls_live key), None when none is.

    ``Attempt.live`` without its set lookup (see _LIVE): this runs per state change.
    """
    for attempt in attempts:
        if attempt.status in _LIVE:
            return attempt.started_at
    return None


class AttemptsText:
    """Calls' attempts as their column text, each attempt's JSON kept while it is unchanged.

    A state change replaces one attempt or appends one; the others are the same objects
    (attempts are immutable), so their text is reused, found by identity, and an attempt
    replaced by its next version reuses the instants' text that version kept. ``forget``
    drops a call's texts; at most ``max_calls`` calls are kept, the oldest written dropped.
    """

    def __init__(self, stamp: Stamps, max_calls: int = 20_000) -> None:
        self._stamp = stamp
        self._max = max_calls
        self._calls: dict[str, list[_Text]] = {}

    def __call__(self, call: Call) -> str:
        calls = self._calls
        kept = calls.pop(call.id, None) or []
        entries = []
        number = 0
        for i, attempt in enumerate(call.attempts):
            entry = kept[i] if i < len(kept) else None
            if entry is None or entry[0] is not attempt:
                entry = self._encode(call.id, attempt, entry)
            entries.append(entry)
            if attempt.number <= number:
                raise StoreError(f"call {call.id}: attempt numbers must increase")
            number = attempt.number
        calls[call.id] = entries
        if len(calls) > self._max:
            del calls[next(iter(calls))]
        if len(entries) == 1:
            return "[" + entries[0][2] + "]"
        return "[" + ",".join([entry[2] for entry in entries]) + "]"

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def _encode(self, call_id: str, attempt: Attempt, was: _Text | None) -> _Text:
        if attempt.call_id != call_id:
            raise StoreError(f"attempt {attempt.id} of call {attempt.call_id} given to {call_id}")
        values = list(_ATTEMPT_GET(attempt))
        # started_at, ended_at, answered_at (3, 4, 5): the text of the version before when
        # the instant is the same object, else encoded.
        stamp = self._stamp
        if was is None:
            values[3] = stamp(values[3])
            values[4] = stamp.or_none(values[4])
            values[5] = stamp.or_none(values[5])
        else:
            before, texts = was[0], was[1]
            at = values[3]
            values[3] = texts[0] if at is before.started_at else stamp(at)
            at = values[4]
            values[4] = texts[1] if at is before.ended_at else stamp.or_none(at)
            at = values[5]
            values[5] = texts[2] if at is before.answered_at else stamp.or_none(at)
        return attempt, (values[3], values[4], values[5]), _dumps(values)


_Text = tuple[Attempt, tuple[str | None, str | None, str | None], str]


def attempt_of(call_id: str, r: list[Any]) -> Attempt:
    return Attempt(
        r[0], call_id, r[1], AttemptStatus(r[2]), datetime.fromisoformat(r[3]),
        dt_or_none(r[4]), dt_or_none(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
        r[12], bool(r[13]), bool(r[14]), r[15], r[16], r[17],
    )  # fmt: skip


def attempts_of(call_id: str, text: str) -> tuple[Attempt, ...]:
    return tuple([attempt_of(call_id, r) for r in json.loads(text)])


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


SELECT_CALL = f"SELECT {', '.join(CALL_FIELDS)}, attempts FROM calls WHERE id = ?"
INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_FIELDS)}, idempotency_key, live_at, attempts) "
    f"VALUES ({', '.join('?' * (len(CALL_FIELDS) + 3))})"
)


def call_of(row: tuple[Any, ...], configs: Configs) -> Call:
    return Call(
        row[0], row[1], row[2], CallStatus(row[3]), configs.load(row[4]),
        datetime.fromisoformat(row[5]), datetime.fromisoformat(row[6]), dt_or_none(row[7]),
        row[8], row[9], json.loads(row[10]), row[11], row[12], bool(row[13]),
        bool(row[14]), row[15], row[16], row[17], attempts_of(row[0], row[18]),
    )  # fmt: skip
