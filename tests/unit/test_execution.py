"""The execution object matches BOLNA.md's shape, including its retry webhook example."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ami_listener.core.execution import execution_object, iso
from ami_listener.core.lifecycle import AttemptEnded, Dispatch, advance, new_call
from ami_listener.core.models import CallRequest, OutcomeStatus
from ami_listener.core.outcomes import AttemptFacts, Outcome

T0 = datetime(2026, 1, 26, 9, 59, 30, tzinfo=UTC)
NO_ANSWER = Outcome(
    OutcomeStatus.NO_ANSWER,
    False,
    "Q.850 19 User alerting, no answer",
    facts=AttemptFacts(cause=19, cause_txt="User alerting, no answer", tech_cause=480),
)


def test_bolna_retry_example_fields_match() -> None:
    request = CallRequest.model_validate(
        {
            "agent_id": "sales-ivr",
            "recipient_phone_number": "+12025550123",
            "retry_config": {"enabled": True, "max_retries": 3},
            "user_data": {"name": "Ann"},
        }
    )
    call, _ = new_call("execution-id", request, T0)
    call, _ = advance(call, Dispatch(T0, "a1"))
    ended = datetime(2026, 1, 26, 10, 0, tzinfo=UTC)
    call, _ = advance(call, AttemptEnded(ended, "a1", NO_ANSWER, uniqueid="1795861722.0"))
    body = json.loads(json.dumps(execution_object(call)))
    # BOLNA.md: {"id", "status": "scheduled", "retry_count": 1, "retry_config": {...},
    #  "retry_history": [{"attempt": 1, "status": "no-answer", "at": ...}], "scheduled_at"}
    assert body["id"] == "execution-id" and body["status"] == "scheduled"
    assert body["retry_count"] == 1
    assert body["retry_config"]["enabled"] is True and body["retry_config"]["max_retries"] == 3
    (entry,) = body["retry_history"]
    assert {k: entry[k] for k in ("attempt", "status", "at")} == {
        "attempt": 1,
        "status": "no-answer",
        "at": "2026-01-26T10:00:00Z",
    }
    assert entry["hangup_cause"] == 19 and entry["sip_code"] == 480
    assert entry["decision"] and "retry" in entry["decision"]
    assert body["scheduled_at"] == "2026-01-26T10:30:00Z"
    assert body["telephony_data"]["provider"] == "asterisk"
    assert body["telephony_data"]["provider_call_id"] == "1795861722.0"
    assert body["telephony_data"]["hangup_provider_code"] == 480
    assert body["telephony_data"]["duration"] == 0.0
    assert body["context_details"] == {"recipient_data": {"name": "Ann"}}
    assert body["agent_id"] == "sales-ivr" and body["batch_id"] is None


def test_live_attempts_are_not_history_and_duration_counts_from_answer() -> None:
    request = CallRequest(agent_id="t", recipient_phone_number="+12025550123")
    call, _ = new_call("c", request, T0)
    call, _ = advance(call, Dispatch(T0, "a1"))
    assert execution_object(call)["retry_history"] == []
    answered = Outcome(OutcomeStatus.COMPLETED, False, "answered", answered=True)
    call, _ = advance(call, AttemptEnded(T0 + timedelta(seconds=42.5), "a1", answered))
    body = execution_object(call)
    assert body["status"] == "completed"
    assert body["telephony_data"]["duration"] == 0.0  # answered_at == ended_at here
    assert body["retry_history"][0]["at"] == "2026-01-26T10:00:12.500Z"


def test_iso_keeps_milliseconds_only_when_present() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
    assert iso(datetime(2026, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)) == "2026-01-01T00:00:00.001Z"
