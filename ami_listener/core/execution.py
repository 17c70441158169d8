"""The Bolna execution object: what ``GET /executions/{id}`` returns and every webhook carries.

Built from a ``Call`` alone, so the outbox can snapshot it in the same transaction as the
status change it reports (BOLNA.md, "Executions").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .models import Attempt, Call


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
