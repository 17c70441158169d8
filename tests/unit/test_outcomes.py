"""classify(): every row of CAUSES.md is a test row, plus precedence, overrides, properties.

Expected values are copied from /work/shared/asterisk/CAUSES.md by hand (not read from the
module's tables), so a wrong table entry fails here.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ami_listener.core.models import OutcomeStatus
from ami_listener.core.outcomes import (
    CAUSE_TABLE,
    PERMANENT_CAUSES,
    AttemptFacts,
    CauseOverride,
    CauseOverrides,
    Outcome,
    cause_text,
    classify,
)

COMPLETED = OutcomeStatus.COMPLETED
NO_ANSWER = OutcomeStatus.NO_ANSWER
BUSY = OutcomeStatus.BUSY
FAILED = OutcomeStatus.FAILED
ERROR = OutcomeStatus.ERROR
CANCELED = OutcomeStatus.CANCELED

# CAUSES.md §2: cause, Cause-txt, Bolna status (pre-answer, no TechCause), Retry? == N.
# 95..101 and 103 say "(protocol texts)": the texts are main/channel.c causes[].
CAUSE_ROWS = [
    (0, "Unknown", ERROR, False),
    (1, "Unallocated (unassigned) number", FAILED, True),
    (2, "No route to specified transmit network", ERROR, True),
    (3, "No route to destination", ERROR, True),
    (5, "Misdialed trunk prefix", FAILED, True),
    (6, "Channel unacceptable", ERROR, False),
    (7, "Call awarded and being delivered in an established channel", ERROR, False),
    (8, "Pre-empted", FAILED, False),
    (14, "Number ported elsewhere", FAILED, True),
    (16, "Normal Clearing", NO_ANSWER, False),
    (17, "User busy", BUSY, False),
    (18, "No user responding", NO_ANSWER, False),
    (19, "User alerting, no answer", NO_ANSWER, False),
    (20, "Subscriber absent", NO_ANSWER, False),
    (21, "Call Rejected", FAILED, False),
    (22, "Number changed", FAILED, True),
    (23, "Redirected to new destination", FAILED, True),
    (26, "Answered elsewhere", NO_ANSWER, False),
    (27, "Destination out of order", FAILED, False),
    (28, "Invalid number format", FAILED, True),
    (29, "Facility rejected", ERROR, True),
    (30, "Response to STATus ENQuiry", ERROR, False),
    (31, "Normal, unspecified", FAILED, False),
    (34, "Circuit/channel congestion", FAILED, False),
    (38, "Network out of order", ERROR, False),
    (41, "Temporary failure", FAILED, False),
    (42, "Switching equipment congestion", FAILED, False),
    (43, "Access information discarded", ERROR, False),
    (44, "Requested channel not available", ERROR, False),
    (50, "Facility not subscribed", ERROR, True),
    (52, "Outgoing call barred", ERROR, True),
    (54, "Incoming call barred", FAILED, True),
    (57, "Bearer capability not authorized", ERROR, True),
    (58, "Bearer capability not available", ERROR, True),
    (65, "Bearer capability not implemented", ERROR, True),
    (66, "Channel not implemented", ERROR, True),
    (69, "Facility not implemented", ERROR, True),
    (81, "Invalid call reference value", ERROR, False),
    (88, "Incompatible destination", FAILED, True),
    (95, "Invalid message unspecified", ERROR, False),
    (96, "Mandatory information element is missing", ERROR, False),
    (97, "Message type nonexist.", ERROR, False),
    (98, "Wrong message", ERROR, False),
    (99, "Info. element nonexist or not implemented", ERROR, False),
    (100, "Invalid information element contents", ERROR, False),
    (101, "Message not compatible with call state", ERROR, False),
    (102, "Recover on timer expiry", FAILED, False),
    (103, "Mandatory IE length error", ERROR, False),
    (111, "Protocol error, unspecified", ERROR, False),
    (127, "Interworking, unspecified", ERROR, False),
]
DO_NOT_RETRY = {1, 2, 3, 5, 14, 22, 23, 28, 29, 50, 52, 54, 57, 58, 65, 66, 69, 88}
TEMPORARY = {17, 18, 19, 20, 26, 27, 31, 34, 41, 42, 44, 102, 16}


@pytest.mark.parametrize(("cause", "text", "status", "permanent"), CAUSE_ROWS)
def test_cause_row(cause: int, text: str, status: OutcomeStatus, permanent: bool) -> None:
    outcome = classify(AttemptFacts(cause=cause))
    assert outcome.status is status
    assert outcome.permanent is permanent
    assert outcome.reason == f"Q.850 {cause} {text}"
    assert outcome.answered is False
    assert outcome.machine is False
    assert cause_text(cause) == text


def test_tables_cover_exactly_the_documented_causes() -> None:
    assert set(CAUSE_TABLE) == {row[0] for row in CAUSE_ROWS}
    assert frozenset(DO_NOT_RETRY) == PERMANENT_CAUSES
    assert {c for c, row in CAUSE_TABLE.items() if row.permanent} == DO_NOT_RETRY
    assert not TEMPORARY & PERMANENT_CAUSES


@pytest.mark.parametrize("cause", [4, 9, 63, 104, 128, 255, -1])
def test_unlisted_cause_text_is_unknown(cause: int) -> None:
    assert cause_text(cause) == "Unknown"
    outcome = classify(AttemptFacts(cause=cause))
    assert (outcome.status, outcome.permanent) == (ERROR, False)
    assert outcome.reason == f"Q.850 {cause} Unknown"


# TechCause (SIP code) refinements named in CAUSES.md §2.
@pytest.mark.parametrize(
    ("cause", "sip", "ringing", "status", "permanent", "reason"),
    [
        (21, 603, False, BUSY, False, "SIP 603 / Q.850 21 Call Rejected (declined)"),
        (21, 401, False, ERROR, True, "SIP 401 / Q.850 21 Call Rejected"),
        (21, 403, False, ERROR, True, "SIP 403 / Q.850 21 Call Rejected"),
        (21, 407, False, ERROR, True, "SIP 407 / Q.850 21 Call Rejected"),
        (21, 404, False, FAILED, False, "SIP 404 / Q.850 21 Call Rejected"),
        (127, 487, True, NO_ANSWER, False, "SIP 487 / Q.850 127 Interworking, unspecified"),
        (127, 487, False, ERROR, False, "SIP 487 / Q.850 127 Interworking, unspecified"),
        (127, 405, True, ERROR, False, "SIP 405 / Q.850 127 Interworking, unspecified"),
        (17, 486, False, BUSY, False, "SIP 486 / Q.850 17 User busy"),
        (17, 600, False, BUSY, False, "SIP 600 / Q.850 17 User busy"),
        (1, 404, False, FAILED, True, "SIP 404 / Q.850 1 Unallocated (unassigned) number"),
        (58, 488, False, ERROR, True, "SIP 488 / Q.850 58 Bearer capability not available"),
        (34, 503, False, FAILED, False, "SIP 503 / Q.850 34 Circuit/channel congestion"),
        (16, None, True, NO_ANSWER, False, "Q.850 16 Normal Clearing"),
        (0, None, True, NO_ANSWER, False, "Q.850 0 Unknown (rang, no answer)"),
        (0, None, False, ERROR, False, "Q.850 0 Unknown"),
    ],
)
def test_tech_cause_refinements(
    cause: int,
    sip: int | None,
    ringing: bool,
    status: OutcomeStatus,
    permanent: bool,
    reason: str,
) -> None:
    facts = AttemptFacts(cause=cause, tech_cause=sip, reached_ringing=ringing)
    outcome = classify(facts)
    assert (outcome.status, outcome.permanent) == (status, permanent)
    assert outcome.reason.startswith(reason)


def test_reason_example_from_the_issue() -> None:
    outcome = classify(AttemptFacts(cause=17, tech_cause=486))
    assert outcome.reason == "SIP 486 / Q.850 17 User busy"
    assert classify(AttemptFacts(cause=19)).reason == "Q.850 19 User alerting, no answer"


# CAUSES.md §3, DIALSTATUS alone (no usable cause).
@pytest.mark.parametrize(
    ("dial_status", "status", "permanent"),
    [
        ("ANSWER", COMPLETED, False),
        ("BUSY", BUSY, False),
        ("NOANSWER", NO_ANSWER, False),
        ("CANCEL", CANCELED, False),
        ("CONGESTION", FAILED, False),
        ("CHANUNAVAIL", FAILED, False),
        ("DONTCALL", CANCELED, True),
        ("TORTURE", CANCELED, True),
        ("INVALIDARGS", ERROR, True),
    ],
)
def test_dial_status_row(dial_status: str, status: OutcomeStatus, permanent: bool) -> None:
    for cause in (None, 0):
        outcome = classify(AttemptFacts(cause=cause, dial_status=dial_status))
        assert (outcome.status, outcome.permanent) == (status, permanent)
        assert outcome.answered is (status is COMPLETED)
        expected = "answered" if status is COMPLETED else f"DIALSTATUS {dial_status}"
        assert outcome.reason == expected


# §3 "look at both": CHANUNAVAIL/CONGESTION with a HANGUPCAUSE.
@pytest.mark.parametrize(
    ("dial_status", "cause", "status", "permanent"),
    [
        ("CHANUNAVAIL", 1, FAILED, True),
        ("CHANUNAVAIL", 28, FAILED, True),
        ("CHANUNAVAIL", 22, FAILED, True),
        ("CHANUNAVAIL", 18, FAILED, False),
        ("CHANUNAVAIL", 20, FAILED, False),
        ("CHANUNAVAIL", 34, FAILED, False),
        ("CHANUNAVAIL", 41, FAILED, False),
        ("CHANUNAVAIL", 3, ERROR, True),  # a routing error stays a (config) error
        ("CONGESTION", 1, FAILED, True),
        ("CONGESTION", 34, FAILED, False),
        ("CONGESTION", 42, FAILED, False),
        ("CONGESTION", 38, ERROR, False),
    ],
)
def test_dial_status_read_with_cause(
    dial_status: str, cause: int, status: OutcomeStatus, permanent: bool
) -> None:
    outcome = classify(AttemptFacts(cause=cause, dial_status=dial_status))
    assert (outcome.status, outcome.permanent) == (status, permanent)
    assert outcome.reason == f"DIALSTATUS {dial_status} / Q.850 {cause} {cause_text(cause)}"


def test_dial_status_example_reason_and_normalisation() -> None:
    assert classify(AttemptFacts(dial_status="CHANUNAVAIL")).reason == "DIALSTATUS CHANUNAVAIL"
    outcome = classify(AttemptFacts(dial_status=" busy\r\n"))
    assert (outcome.status, outcome.reason) == (BUSY, "DIALSTATUS BUSY")
    # An unlisted cause is carried along in the reason.
    outcome = classify(AttemptFacts(cause=4, dial_status="CHANUNAVAIL"))
    assert (outcome.status, outcome.permanent) == (FAILED, False)
    assert outcome.reason == "DIALSTATUS CHANUNAVAIL / Q.850 4 Unknown"


# CAUSES.md §4. Answered calls: status completed, AMD only sets the voicemail flag.
@pytest.mark.parametrize(
    ("amd_status", "amd_cause", "notsure_is_machine", "machine", "reason"),
    [
        (
            "MACHINE",
            "INITIALSILENCE-2500-2500",
            False,
            True,
            "AMD MACHINE (INITIALSILENCE-2500-2500)",
        ),
        ("MACHINE", "LONGGREETING-1500-1500", False, True, "AMD MACHINE (LONGGREETING-1500-1500)"),
        ("MACHINE", "MAXWORDS-3-2", False, True, "AMD MACHINE (MAXWORDS-3-2)"),
        ("MACHINE", "MAXWORDLENGTH-5000", False, True, "AMD MACHINE (MAXWORDLENGTH-5000)"),
        ("HUMAN", "HUMAN-800-800", False, False, "AMD HUMAN (HUMAN-800-800)"),
        ("HUMAN", "HUMAN-800-800", True, False, "AMD HUMAN (HUMAN-800-800)"),
        ("NOTSURE", "TOOLONG-5000", False, False, "AMD NOTSURE (TOOLONG-5000), counted as human"),
        (
            "NOTSURE",
            "NOAUDIODATA-5000",
            True,
            True,
            "AMD NOTSURE (NOAUDIODATA-5000), counted as machine",
        ),
        ("HANGUP", "", False, False, "AMD HANGUP: callee hung up during analysis"),
        ("HANGUP", None, True, False, "AMD HANGUP: callee hung up during analysis"),
        ("", "", False, False, "answered, AMD did not start"),
        (None, None, False, False, "answered"),
        ("MACHINE", None, False, True, "AMD MACHINE"),
        ("PARROT", "X-1", True, False, "AMD PARROT (X-1), unrecognised AMD status"),
    ],
)
def test_amd_row(
    amd_status: str | None,
    amd_cause: str | None,
    notsure_is_machine: bool,
    machine: bool,
    reason: str,
) -> None:
    facts = AttemptFacts(answered=True, cause=16, amd_status=amd_status, amd_cause=amd_cause)
    outcome = classify(facts, notsure_is_machine=notsure_is_machine)
    assert outcome.status is COMPLETED
    assert outcome.permanent is False
    assert outcome.answered is True
    assert outcome.machine is machine
    assert outcome.reason == reason


# CAUSES.md §5: the OriginateResponse Reason, used only when nothing better is known.
@pytest.mark.parametrize(
    ("reason_code", "status", "text"),
    [
        (0, FAILED, "Call Failure (not BUSY, and not NO_ANSWER, maybe Circuit busy or down?)"),
        (1, CANCELED, "Hangup"),
        (3, NO_ANSWER, "Remote end Ringing"),
        (4, COMPLETED, "Remote end has Answered"),
        (5, BUSY, "Remote end is Busy"),
        (8, FAILED, "Congestion (circuits busy)"),
    ],
)
def test_originate_reason_row(reason_code: int, status: OutcomeStatus, text: str) -> None:
    outcome = classify(AttemptFacts(originate_reason=reason_code))
    assert (outcome.status, outcome.permanent) == (status, False)
    assert outcome.reason == f"Originate reason {reason_code} ({text})"
    assert outcome.answered is (status is COMPLETED)


def test_originate_reason_answered_still_reads_amd() -> None:
    facts = AttemptFacts(originate_reason=4, amd_status="MACHINE", amd_cause="MAXWORDS-3-2")
    outcome = classify(facts)
    assert (outcome.status, outcome.machine) == (COMPLETED, True)


@pytest.mark.parametrize("reason_code", [2, 6, 7, 9, -1])
def test_unlisted_originate_reason_is_no_outcome(reason_code: int) -> None:
    outcome = classify(AttemptFacts(originate_reason=reason_code))
    assert (outcome.status, outcome.permanent) == (ERROR, False)
    assert outcome.reason == "no outcome reported"


def test_nothing_reported_is_an_error() -> None:
    facts = AttemptFacts(trunk="acme")
    assert classify(facts) == Outcome(ERROR, False, "no outcome reported", facts=facts)


@pytest.mark.parametrize(
    ("facts", "status", "permanent"),
    [
        # SIP 480 trap: Reason says busy (5), the far-end cause says nobody there.
        (AttemptFacts(cause=19, tech_cause=480, originate_reason=5), NO_ANSWER, False),
        (AttemptFacts(cause=20, tech_cause=480, originate_reason=5), NO_ANSWER, False),
        # The cause wins over DIALSTATUS (404 is reported as NOANSWER by app_dial).
        (AttemptFacts(cause=1, dial_status="NOANSWER", originate_reason=0), FAILED, True),
        (AttemptFacts(cause=21, dial_status="NOANSWER"), FAILED, False),
        (AttemptFacts(cause=17, dial_status="NOANSWER"), BUSY, False),
        # Answered beats any cause; the cause is then the normal end of the call.
        (AttemptFacts(answered=True, cause=17, dial_status="BUSY"), COMPLETED, False),
        (AttemptFacts(cause=16, dial_status="ANSWER", originate_reason=0), COMPLETED, False),
        # Cause 0 without ringing says nothing: DIALSTATUS, then Reason decide.
        (AttemptFacts(cause=0, dial_status="BUSY", originate_reason=0), BUSY, False),
        (AttemptFacts(cause=0, originate_reason=8), FAILED, False),
        (AttemptFacts(cause=0, reached_ringing=True, dial_status="BUSY"), NO_ANSWER, False),
        # DIALSTATUS beats Reason; an unknown DIALSTATUS is ignored.
        (AttemptFacts(dial_status="BUSY", originate_reason=0), BUSY, False),
        (AttemptFacts(dial_status="WHATEVER", originate_reason=5), BUSY, False),
        (AttemptFacts(cause=4, originate_reason=3), NO_ANSWER, False),
        # AMD facts are read only for answered calls.
        (AttemptFacts(cause=17, amd_status="MACHINE"), BUSY, False),
    ],
)
def test_precedence(facts: AttemptFacts, status: OutcomeStatus, permanent: bool) -> None:
    outcome = classify(facts)
    assert (outcome.status, outcome.permanent) == (status, permanent)
    assert outcome.facts is facts


def test_sip_480_reason_names_the_cause_not_the_originate_reason() -> None:
    outcome = classify(AttemptFacts(cause=19, tech_cause=480, originate_reason=5))
    assert outcome.reason == "SIP 480 / Q.850 19 User alerting, no answer"


# Far-end facts as recorded in /work/shared/asterisk/transcripts (*.summary.json).
RING = {"reached_ringing": True}
RECORDED = {
    "sip-busy": (dict(cause=17, dial_status="BUSY", originate_reason=5), BUSY, False),
    "sip-notfound": (dict(cause=1, dial_status="NOANSWER", originate_reason=0), FAILED, True),
    "sip-ring": (dict(RING, cause=19, originate_reason=3), NO_ANSWER, False),
    "sip-ring-amihangup": (
        dict(RING, cause=16, dial_status="NOANSWER", originate_reason=0),
        NO_ANSWER,
        False,
    ),
    "siplocal-ring": (
        dict(RING, cause=16, dial_status="NOANSWER", originate_reason=0),
        NO_ANSWER,
        False,
    ),
    "local-chanunavail": (
        dict(cause=20, dial_status="CHANUNAVAIL", originate_reason=0),
        FAILED,
        False,
    ),
    "local-congestion": (
        dict(cause=34, dial_status="CONGESTION", originate_reason=8),
        FAILED,
        False,
    ),
    "local-rejected": (dict(cause=21, dial_status="NOANSWER", originate_reason=0), FAILED, False),
    "local-nosuch": (dict(cause=0, originate_reason=0), FAILED, False),
    "notech": (dict(originate_reason=0), FAILED, False),
    "local-answer-app": (dict(cause=0, dial_status="ANSWER", originate_reason=4), COMPLETED, False),
}


@pytest.mark.parametrize("scenario", sorted(RECORDED))
def test_recorded_scenarios(scenario: str) -> None:
    fields, status, permanent = RECORDED[scenario]
    outcome = classify(AttemptFacts(**fields))  # type: ignore[arg-type]
    assert (outcome.status, outcome.permanent) == (status, permanent)


@pytest.mark.parametrize(
    ("amd_status", "amd_cause", "machine"),
    [("MACHINE", "LONGGREETING-1500-1500", True), ("HUMAN", "HUMAN-800-800", False)],
    ids=["amd-sip-machine", "amd-sip-greeting"],
)
def test_recorded_amd_scenarios(amd_status: str, amd_cause: str, machine: bool) -> None:
    facts = AttemptFacts(
        answered=True,
        cause=16,
        dial_status="ANSWER",
        originate_reason=4,
        amd_status=amd_status,
        amd_cause=amd_cause,
    )
    outcome = classify(facts)
    assert (outcome.status, outcome.machine) == (COMPLETED, machine)
    assert outcome.reason == f"AMD {amd_status} ({amd_cause})"


OVERRIDES: CauseOverrides = {
    "acme": {1: CauseOverride(NO_ANSWER, False), 21: CauseOverride(BUSY, False)},
    "*": {1: CauseOverride(FAILED, False), 0: CauseOverride(NO_ANSWER, False)},
}


@pytest.mark.parametrize(
    ("facts", "status", "permanent", "reason"),
    [
        # Trunk entry first (the surveda#1073 carrier that says 1 for unanswered) ...
        (AttemptFacts(cause=1, trunk="acme"), NO_ANSWER, False,
         "Q.850 1 Unallocated (unassigned) number (override acme)"),
        # ... then "*", for any other trunk and for an unknown trunk.
        (AttemptFacts(cause=1, trunk="other"), FAILED, False,
         "Q.850 1 Unallocated (unassigned) number (override *)"),
        (AttemptFacts(cause=1), FAILED, False,
         "Q.850 1 Unallocated (unassigned) number (override *)"),
        (AttemptFacts(cause=0, trunk="acme"), NO_ANSWER, False, "Q.850 0 Unknown (override *)"),
        # The override beats TechCause refinements and the DIALSTATUS reading.
        (AttemptFacts(cause=21, tech_cause=403, trunk="acme"), BUSY, False,
         "SIP 403 / Q.850 21 Call Rejected (override acme)"),
        (AttemptFacts(cause=1, dial_status="CHANUNAVAIL", trunk="acme"), NO_ANSWER, False,
         "Q.850 1 Unallocated (unassigned) number (override acme)"),
        # Causes without an entry keep the default mapping.
        (AttemptFacts(cause=17, trunk="acme"), BUSY, False, "Q.850 17 User busy"),
        (AttemptFacts(cause=21, trunk="other"), FAILED, False, "Q.850 21 Call Rejected"),
        # Answered calls are never overridden.
        (AttemptFacts(answered=True, cause=1, trunk="acme"), COMPLETED, False, "answered"),
        # No cause: nothing to override.
        (AttemptFacts(dial_status="BUSY", trunk="acme"), BUSY, False, "DIALSTATUS BUSY"),
    ],
)  # fmt: skip
def test_overrides(
    facts: AttemptFacts, status: OutcomeStatus, permanent: bool, reason: str
) -> None:
    outcome = classify(facts, OVERRIDES)
    assert (outcome.status, outcome.permanent, outcome.reason) == (status, permanent, reason)


def test_override_can_make_a_cause_permanent() -> None:
    overrides: CauseOverrides = {"acme": {18: CauseOverride(FAILED, True)}}
    assert classify(AttemptFacts(cause=18, trunk="acme"), overrides).permanent is True
    assert classify(AttemptFacts(cause=18, trunk="beta"), overrides).permanent is False
    assert classify(AttemptFacts(cause=1, trunk="acme"), {}).permanent is True


def test_peer_words_cannot_inject_lines_into_reasons() -> None:
    facts = AttemptFacts(
        answered=True, amd_status="MACHINE\r\nAction: Hangup", amd_cause="X\r\nY;Z,W"
    )
    reason = classify(facts).reason
    assert "\r" not in reason and "\n" not in reason and ";" not in reason
    overrides: CauseOverrides = {"bad\ntrunk": {17: CauseOverride(NO_ANSWER, False)}}
    reason = classify(AttemptFacts(cause=17, trunk="bad\ntrunk"), overrides).reason
    assert reason == "Q.850 17 User busy (override bad?trunk)"


DIAL_STATUS_VALUES = [
    "ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL",
    "DONTCALL", "TORTURE", "INVALIDARGS",
]  # fmt: skip
AMD_VALUES = ["MACHINE", "HUMAN", "NOTSURE", "HANGUP", ""]

facts_strategy = st.builds(
    AttemptFacts,
    answered=st.booleans(),
    reached_ringing=st.booleans(),
    cause=st.none() | st.integers(0, 127),
    tech_cause=st.none() | st.integers(100, 699),
    dial_status=st.none() | st.sampled_from(DIAL_STATUS_VALUES) | st.text(max_size=12),
    originate_reason=st.none() | st.integers(0, 8),
    amd_status=st.none() | st.sampled_from(AMD_VALUES) | st.text(max_size=12),
    amd_cause=st.none() | st.sampled_from(["TOOLONG-5000", "HUMAN-800-800"]) | st.text(max_size=20),
    trunk=st.none() | st.sampled_from(["acme", "other"]),
)


@given(facts=facts_strategy, notsure_is_machine=st.booleans(), use_overrides=st.booleans())
def test_classify_never_raises_and_is_well_formed(
    facts: AttemptFacts, notsure_is_machine: bool, use_overrides: bool
) -> None:
    overrides = OVERRIDES if use_overrides else None
    outcome = classify(facts, overrides, notsure_is_machine=notsure_is_machine)
    assert isinstance(outcome.status, OutcomeStatus)
    assert outcome.reason and outcome.reason.isprintable()
    assert outcome.facts is facts
    if facts.answered:
        assert (outcome.status, outcome.permanent, outcome.answered) == (COMPLETED, False, True)
    if outcome.machine:
        assert outcome.status is COMPLETED and outcome.answered
    if not use_overrides and outcome.status in (COMPLETED, NO_ANSWER, BUSY):
        assert outcome.permanent is False  # never blacklist a number that rang or was busy
