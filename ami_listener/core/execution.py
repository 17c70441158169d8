"""The Bolna execution object: what ``GET /executions/{id}`` returns and every webhook carries.

Built from a ``Call`` alone, so the outbox can snapshot it in the same transaction as the
status change it reports (BOLNA.md, "Executions").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .models import LIVE_ATTEMPT_STATUSES, Attempt, Call, RetryConfig


def iso(at: datetime | None) -> str | None:
    """UTC ISO 8601 with ``Z``, as BOLNA.md's examples: seconds, milliseconds when present."""
    if at is None:
        return None
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    # Called a few times per outbox event: slicing off the "+00:00" that a UTC
    # isoformat always ends with is cheaper than str.replace.
    return at.isoformat(timespec="milliseconds" if at.microsecond else "seconds")[:-6] + "Z"


def _duration_s(attempt: Attempt | None) -> float:
    if attempt is None or attempt.answered_at is None or attempt.ended_at is None:
        return 0.0
    return round((attempt.ended_at - attempt.answered_at).total_seconds(), 3)


def history_entry(attempt: Attempt) -> dict[str, Any]:
    """One ``retry_history`` item: Bolna's ``attempt``/``status``/``at`` plus what Asterisk said."""
    return {
        "attempt": attempt.number,
        "status": attempt.status.value,
        "at": iso(attempt.ended_at or attempt.started_at),
        "answered_by_voice_mail": attempt.answered_by_voice_mail,
        "hangup_cause": attempt.cause,
        "hangup_cause_text": attempt.cause_txt,
        "sip_code": attempt.tech_cause,
        "dial_status": attempt.dial_status,
        "reason": attempt.reason,
        "permanent": attempt.permanent,
        "decision": attempt.decision,
        "provider_call_id": attempt.uniqueid,
    }


def execution_object(call: Call) -> dict[str, Any]:
    """The execution object of BOLNA.md for ``call``, JSON-ready."""
    last = call.last_attempt
    return {
        "id": call.id,
        "agent_id": call.target,
        "batch_id": call.batch_id,
        "status": call.status.value,
        "error_message": call.error_message,
        "answered_by_voice_mail": call.answered_by_voice_mail,
        "created_at": iso(call.created_at),
        "updated_at": iso(call.updated_at),
        "retry_count": call.retry_count,
        "retry_config": call.retry_config.model_dump(mode="json", exclude_none=True),
        "retry_history": [history_entry(a) for a in call.attempts if not a.live],
        "scheduled_at": iso(call.scheduled_at),
        "telephony_data": {
            "duration": _duration_s(last),
            "to_number": call.to_number,
            "from_number": call.from_number,
            "provider_call_id": last.uniqueid if last else None,
            "provider": "asterisk",
            "hangup_by": None,
            "hangup_reason": last.reason if last and not last.live else None,
            "hangup_provider_code": last.tech_cause if last else None,
        },
        "context_details": {"recipient_data": dict(call.variables)},
    }


_str = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (ensure_ascii)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _js(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _jn(value: int | None) -> str:
    if value is None:
        return "null"
    return int.__repr__(value) if type(value) is int else _dumps(value)  # bool is an int


def _jb(value: bool) -> str:
    return "true" if value is True else "false" if value is False else _dumps(value)


_LIVE = tuple(LIVE_ATTEMPT_STATUSES)


def _live(attempt: Attempt) -> bool:
    """``attempt.live`` without hashing the enum (its hash is Python code; a hot path)."""
    return attempt.status in _LIVE  # a tuple compares by identity first, then str ==: C


def _entry(attempt: Attempt, at: str) -> str:
    """``history_entry(attempt)`` as JSON text, ``at`` its instant already encoded."""
    a = attempt
    return "".join(
        (
            '{"attempt":', _jn(a.number), ',"status":', _str(a.status), ',"at":', at,
            ',"answered_by_voice_mail":', _jb(a.answered_by_voice_mail),
            ',"hangup_cause":', _jn(a.cause), ',"hangup_cause_text":', _js(a.cause_txt),
            ',"sip_code":', _jn(a.tech_cause), ',"dial_status":', _js(a.dial_status),
            ',"reason":', _js(a.reason), ',"permanent":', _jb(a.permanent),
            ',"decision":', _js(a.decision), ',"provider_call_id":', _js(a.uniqueid), "}",
        )
    )  # fmt: skip


class ExecutionJson:
    """``execution_object(call)`` as compact JSON text: the bytes ``json.dumps`` gives for
    it with ``separators=(",", ":")``.

    Built per outbox event, on the write path, so it is pieced together from text kept
    per call: what a call's state changes never touch (ids, created_at, retry_config,
    numbers, variables) and each ended attempt's ``retry_history`` entry are encoded
    once. Every piece is checked against the call before it is reused (identity for the
    immutable values, equality for the variables dict), so a call that changed where it
    "never" does is encoded afresh, never wrongly. ``forget`` drops a call's text.
    """

    def __init__(self, max_calls: int = 20_000) -> None:
        self._max = max_calls
        self._calls: dict[str, _Pieces] = {}
        self._configs: dict[int, tuple[RetryConfig, str]] = {}  # configs repeat across calls
        self._at: datetime | None = None  # one-entry memo of _time: an event's instants
        self._at_text = "null"  # repeat (updated_at is the ended attempt's "at")

    def __call__(self, call: Call) -> str:
        p = self._calls.get(call.id)
        if p is None or not p.fits(call):
            p = self._calls[call.id] = _Pieces(call, self._config(call.retry_config))
            if len(self._calls) > self._max:
                del self._calls[next(iter(self._calls))]
        history = p.history(call.attempts, self._time)
        last = call.attempts[-1] if call.attempts else None
        if last is None:
            provider_call_id = reason = code = "null"
        else:
            provider_call_id = _js(last.uniqueid)
            reason = "null" if _live(last) else _js(last.reason)
            code = _jn(last.tech_cause)
        return "".join(
            (
                p.head,
                _str(call.status),  # a StrEnum is its value's text: no .value lookup
                ',"error_message":',
                _js(call.error_message),
                ',"answered_by_voice_mail":',
                _jb(call.answered_by_voice_mail),
                p.created,
                self._time(call.updated_at),
                ',"retry_count":',
                _jn(call.retry_count),
                p.config,
                history,
                '],"scheduled_at":',
                self._time(call.scheduled_at),
                ',"telephony_data":{"duration":',
                float.__repr__(_duration_s(last)),
                p.numbers,
                provider_call_id,
                ',"provider":"asterisk","hangup_by":null,"hangup_reason":',
                reason,
                ',"hangup_provider_code":',
                code,
                p.context,
            )
        )

    def _time(self, at: datetime | None) -> str:
        if at is None:
            return "null"
        if at is not self._at:
            self._at_text = f'"{iso(at)}"'
            self._at = at
        return self._at_text

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def _config(self, config: RetryConfig) -> str:
        hit = self._configs.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        if len(self._configs) > 4096:
            self._configs.clear()
        text = _dumps(config.model_dump(mode="json", exclude_none=True))
        self._configs[id(config)] = (config, text)  # holding config keeps its id() unique
        return text


class _Pieces:
    """The JSON text of one call's parts that its state changes leave alone."""

    __slots__ = (
        "call",
        "config",
        "context",
        "created",
        "entries",
        "head",
        "numbers",
        "variables",
    )

    def __init__(self, call: Call, config: str) -> None:
        self.call = call
        self.variables = list(call.variables.items())  # a dict may change in place
        self.head = (
            '{"id":' + _str(call.id) + ',"agent_id":' + _str(call.target)
            + ',"batch_id":' + _js(call.batch_id) + ',"status":'
        )  # fmt: skip
        self.created = ',"created_at":"' + str(iso(call.created_at)) + '","updated_at":'
        self.config = ',"retry_config":' + config + ',"retry_history":['
        self.numbers = (
            ',"to_number":' + _str(call.to_number) + ',"from_number":' + _js(call.from_number)
            + ',"provider_call_id":'
        )  # fmt: skip
        context = _dumps(dict(call.variables))
        self.context = '},"context_details":{"recipient_data":' + context + "}}"
        self.entries: list[tuple[Attempt, str]] = []

    def fits(self, call: Call) -> bool:
        was = self.call
        if call is was:
            return True
        if not (
            call.id is was.id
            and call.target is was.target
            and call.batch_id is was.batch_id
            and call.created_at is was.created_at
            and call.retry_config is was.retry_config
            and call.to_number is was.to_number
            and call.from_number is was.from_number
            and list(call.variables.items()) == self.variables
        ):
            return False
        self.call = call
        return True

    def history(self, attempts: tuple[Attempt, ...], time: Callable[[datetime], str]) -> str:
        """The ``retry_history`` items, comma-separated: ended attempts, cached by identity."""
        entries = self.entries
        out = []
        i = 0
        for attempt in attempts:
            if _live(attempt):
                continue
            if i < len(entries) and entries[i][0] is attempt:
                out.append(entries[i][1])
            else:
                text = _entry(attempt, time(attempt.ended_at or attempt.started_at))
                del entries[i:]
                entries.append((attempt, text))
                out.append(text)
            i += 1
        del entries[i:]
        return ",".join(out)
