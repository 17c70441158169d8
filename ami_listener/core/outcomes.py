"""Classify what Asterisk told us about one attempt into an outcome (CAUSES.md).

The tables below are CAUSES.md as data; ``classify`` only decides which fact to believe.
Order of belief (CAUSES.md §5: Asterisk itself calls the Originate reason lossy):

1. answered (our flag, or the far-end DialEnd said ANSWER) -> ``completed`` + AMD verdict;
2. the far-end Hangup cause (operator override first, then TechCause refinements);
   with DIALSTATUS CHANUNAVAIL/CONGESTION both are read (CAUSES.md §3);
3. DIALSTATUS, when there is no cause or only cause 0 / an unknown cause;
4. the OriginateResponse Reason;
5. nothing usable -> ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

from .models import OutcomeStatus


@dataclass(frozen=True, slots=True)
class AttemptFacts:
    """What Asterisk told us about one attempt, in our words.

    ``cause``/``cause_txt``/``tech_cause`` and ``dial_status`` are the FAR-END leg's;
    ``originate_reason`` is the OriginateResponse Reason (a fallback only).
    """

    answered: bool = False
    reached_ringing: bool = False
    cause: int | None = None
    cause_txt: str | None = None
    tech_cause: int | None = None
    dial_status: str | None = None
    originate_reason: int | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus
    permanent: bool
    reason: str
    answered: bool = False
    machine: bool = False
    facts: AttemptFacts = AttemptFacts()


@dataclass(frozen=True, slots=True)
class CauseOverride:
    """An operator's mapping for one cause on one trunk (carriers misreport)."""

    status: OutcomeStatus
    permanent: bool


CauseOverrides = Mapping[str, Mapping[int, CauseOverride]]
"""trunk name -> Q.850 cause -> override. Trunk ``"*"`` applies to every trunk."""


class CauseRow(NamedTuple):
    """One row of CAUSES.md §2: default status, whether never to retry, ``Cause-txt``."""

    status: OutcomeStatus
    permanent: bool
    text: str


_C = OutcomeStatus.COMPLETED
_NA = OutcomeStatus.NO_ANSWER
_B = OutcomeStatus.BUSY
_F = OutcomeStatus.FAILED
_E = OutcomeStatus.ERROR
_X = OutcomeStatus.CANCELED

# Texts are Asterisk's own (main/channel.c causes[]), so reasons match the Hangup event.
# 16 is "no-answer" here because classify only reads a cause when nothing was answered.
# "Y1" rows of CAUSES.md are not permanent: retry_on_statuses decides about failed/error.
_CAUSES: Final[dict[int, CauseRow]] = {
    0: CauseRow(_E, False, "Unknown"),
    1: CauseRow(_F, True, "Unallocated (unassigned) number"),
    2: CauseRow(_E, True, "No route to specified transmit network"),
    3: CauseRow(_E, True, "No route to destination"),
    5: CauseRow(_F, True, "Misdialed trunk prefix"),
    6: CauseRow(_E, False, "Channel unacceptable"),
    7: CauseRow(_E, False, "Call awarded and being delivered in an established channel"),
    8: CauseRow(_F, False, "Pre-empted"),
    14: CauseRow(_F, True, "Number ported elsewhere"),
    16: CauseRow(_NA, False, "Normal Clearing"),
    17: CauseRow(_B, False, "User busy"),
    18: CauseRow(_NA, False, "No user responding"),
    19: CauseRow(_NA, False, "User alerting, no answer"),
    20: CauseRow(_NA, False, "Subscriber absent"),
    21: CauseRow(_F, False, "Call Rejected"),
    22: CauseRow(_F, True, "Number changed"),
    23: CauseRow(_F, True, "Redirected to new destination"),
    26: CauseRow(_NA, False, "Answered elsewhere"),
    27: CauseRow(_F, False, "Destination out of order"),
    28: CauseRow(_F, True, "Invalid number format"),
    29: CauseRow(_E, True, "Facility rejected"),
    30: CauseRow(_E, False, "Response to STATus ENQuiry"),
    31: CauseRow(_F, False, "Normal, unspecified"),
    34: CauseRow(_F, False, "Circuit/channel congestion"),
    38: CauseRow(_E, False, "Network out of order"),
    41: CauseRow(_F, False, "Temporary failure"),
    42: CauseRow(_F, False, "Switching equipment congestion"),
    43: CauseRow(_E, False, "Access information discarded"),
    44: CauseRow(_E, False, "Requested channel not available"),
    50: CauseRow(_E, True, "Facility not subscribed"),
    52: CauseRow(_E, True, "Outgoing call barred"),
    54: CauseRow(_F, True, "Incoming call barred"),
    57: CauseRow(_E, True, "Bearer capability not authorized"),
    58: CauseRow(_E, True, "Bearer capability not available"),
    65: CauseRow(_E, True, "Bearer capability not implemented"),
    66: CauseRow(_E, True, "Channel not implemented"),
    69: CauseRow(_E, True, "Facility not implemented"),
    81: CauseRow(_E, False, "Invalid call reference value"),
    88: CauseRow(_F, True, "Incompatible destination"),
    95: CauseRow(_E, False, "Invalid message unspecified"),
    96: CauseRow(_E, False, "Mandatory information element is missing"),
    97: CauseRow(_E, False, "Message type nonexist."),
    98: CauseRow(_E, False, "Wrong message"),
    99: CauseRow(_E, False, "Info. element nonexist or not implemented"),
    100: CauseRow(_E, False, "Invalid information element contents"),
    101: CauseRow(_E, False, "Message not compatible with call state"),
    102: CauseRow(_F, False, "Recover on timer expiry"),
    103: CauseRow(_E, False, "Mandatory IE length error"),
    111: CauseRow(_E, False, "Protocol error, unspecified"),
    127: CauseRow(_E, False, "Interworking, unspecified"),
}
CAUSE_TABLE: Final[Mapping[int, CauseRow]] = MappingProxyType(_CAUSES)
"""CAUSES.md §2, read-only: Q.850 cause -> default (status, permanent, Cause-txt)."""

PERMANENT_CAUSES: Final[frozenset[int]] = frozenset(
    {1, 2, 3, 5, 14, 22, 23, 28, 29, 50, 52, 54, 57, 58, 65, 66, 69, 88}
)
"""CAUSES.md's default "Do-NOT-retry set" (plus 21 with SIP 401/403/407, see classify)."""

_SIP_AUTH_REJECTED: Final = frozenset({401, 403, 407})  # our credentials: config, not callee
_SIP_DECLINE: Final = 603
_SIP_REQUEST_TERMINATED: Final = 487

# CAUSES.md §3. Rows that depend on HANGUPCAUSE are handled where a cause is present.
_DIAL_STATUSES: Final[dict[str, tuple[OutcomeStatus, bool]]] = {
    "ANSWER": (_C, False),
    "BUSY": (_B, False),
    "NOANSWER": (_NA, False),
    "CANCEL": (_X, False),
    "CONGESTION": (_F, False),
    "CHANUNAVAIL": (_F, False),
    "DONTCALL": (_X, True),
    "TORTURE": (_X, True),
    "INVALIDARGS": (_E, True),
}
# app_dial folds unrelated causes into these two, so the cause alone would overstate
# ("no-answer" for an unregistered peer); they stay "failed" with the cause's permanence.
_READ_BOTH: Final = frozenset({"CHANUNAVAIL", "CONGESTION"})

# CAUSES.md §5, texts from ast_channel_reason2str().
_REASONS: Final[dict[int, tuple[OutcomeStatus, str]]] = {
    0: (_F, "Call Failure (not BUSY, and not NO_ANSWER, maybe Circuit busy or down?)"),
    1: (_X, "Hangup"),
    3: (_NA, "Remote end Ringing"),
    4: (_C, "Remote end has Answered"),
    5: (_B, "Remote end is Busy"),
    8: (_F, "Congestion (circuits busy)"),
}

_AMD_MACHINE = "MACHINE"
_AMD_NOTSURE = "NOTSURE"
_AMD_HANGUP = "HANGUP"
_AMD_KNOWN: Final = frozenset({_AMD_MACHINE, "HUMAN", _AMD_NOTSURE, _AMD_HANGUP})

# Reasons end up in logs and webhooks; peer-supplied words are reduced to a safe alphabet.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.*+-]")


def cause_text(cause: int) -> str:
    """Asterisk's ``Cause-txt`` for a Q.850 cause; ``Unknown`` for 0 and unlisted causes."""
    row = _CAUSES.get(cause)
    return row.text if row is not None else "Unknown"


def classify(
    facts: AttemptFacts,
    overrides: CauseOverrides | None = None,
    *,
    notsure_is_machine: bool = False,
) -> Outcome:
    """What one finished attempt amounted to. Never raises for any combination of facts."""
    dial_status = _word(facts.dial_status)
    if facts.answered or dial_status == "ANSWER":
        return _answered(facts, notsure_is_machine, "answered")
    cause = facts.cause
    if cause is not None:
        overridden = _override(facts, cause, overrides)
        if overridden is not None:
            return overridden
        if cause != 0 and cause in _CAUSES:
            return _from_cause(facts, cause, dial_status)
        if cause == 0 and facts.reached_ringing:
            # Originate timeouts reported 0 before Asterisk fixed asterisk#1660.
            return Outcome(_NA, False, f"{_cause_label(facts)} (rang, no answer)", facts=facts)
    if dial_status is not None and dial_status in _DIAL_STATUSES:
        status, permanent = _DIAL_STATUSES[dial_status]
        reason = f"DIALSTATUS {dial_status}"
        if cause:  # an unlisted cause: still worth showing
            reason = f"{reason} / {_cause_label(facts)}"
        return Outcome(status, permanent, reason, facts=facts)
    if facts.originate_reason in _REASONS:
        number = facts.originate_reason
        status, text = _REASONS[number]
        reason = f"Originate reason {number} ({text})"
        if status is _C:
            return _answered(facts, notsure_is_machine, reason)
        return Outcome(status, False, reason, facts=facts)
    if cause is not None:  # 0 without ringing, or a cause Asterisk does not list
        return Outcome(_E, False, _cause_label(facts), facts=facts)
    return Outcome(_E, False, "no outcome reported", facts=facts)


def _answered(facts: AttemptFacts, notsure_is_machine: bool, base: str) -> Outcome:
    amd = _word(facts.amd_status)
    machine = False
    if amd is None:
        reason = base if facts.amd_status is None else f"{base}, AMD did not start"
    elif amd == _AMD_HANGUP:
        reason = "AMD HANGUP: callee hung up during analysis"
    else:
        machine = amd == _AMD_MACHINE or (amd == _AMD_NOTSURE and notsure_is_machine)
        detail = _safe(facts.amd_cause.strip()) if facts.amd_cause else ""
        reason = f"AMD {amd} ({detail})" if detail else f"AMD {amd}"
        if amd == _AMD_NOTSURE:
            reason += ", counted as machine" if machine else ", counted as human"
        elif amd not in _AMD_KNOWN:
            reason += ", unrecognised AMD status"
    return Outcome(_C, False, reason, answered=True, machine=machine, facts=facts)


def _override(facts: AttemptFacts, cause: int, overrides: CauseOverrides | None) -> Outcome | None:
    if not overrides:
        return None
    for key in (facts.trunk, "*"):
        if key is None:
            continue
        found = overrides.get(key, {}).get(cause)
        if found is not None:
            reason = f"{_cause_label(facts)} (override {_safe(key)})"
            return Outcome(found.status, found.permanent, reason, facts=facts)
    return None


def _from_cause(facts: AttemptFacts, cause: int, dial_status: str | None) -> Outcome:
    status, permanent, _text = _CAUSES[cause]
    tech = facts.tech_cause
    note = ""
    if cause == 21 and tech == _SIP_DECLINE:
        # The callee pressed "decline": like busy, worth a later try, never permanent.
        status, permanent, note = _B, False, " (declined)"
    elif cause == 21 and tech in _SIP_AUTH_REJECTED:
        status, permanent, note = _E, True, " (carrier refused our credentials)"
    elif cause == 127 and tech == _SIP_REQUEST_TERMINATED and facts.reached_ringing:
        # 487 after ringing is our own CANCEL at the ring timeout, not a network fault.
        status, note = _NA, " (cancelled at ring timeout)"
    reason = _cause_label(facts) + note
    if dial_status in _READ_BOTH:
        # §3: status from DIALSTATUS, permanence from the cause (its {1,22,28} / {1} rule
        # is inside the Do-NOT-retry set); a configuration error stays an error.
        if status is not _E:
            status = _F
        reason = f"DIALSTATUS {dial_status} / {reason}"
    return Outcome(status, permanent, reason, facts=facts)


def _cause_label(facts: AttemptFacts) -> str:
    cause = facts.cause if facts.cause is not None else 0
    label = f"Q.850 {cause} {cause_text(cause)}"
    return f"SIP {facts.tech_cause} / {label}" if facts.tech_cause is not None else label


def _word(value: str | None) -> str | None:
    """An AMI keyword as we compare it: stripped, upper case, safe; None when empty."""
    if value is None:
        return None
    word = _safe(value.strip().upper())
    return word or None


def _safe(value: str) -> str:
    return _UNSAFE.sub("?", value[:40])
