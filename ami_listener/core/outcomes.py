"""Classify what Asterisk told us about one attempt into an outcome (CAUSES.md).

INTERFACE STUB written by the lead; the outcomes helper replaces the body of classify().
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


def classify(facts: AttemptFacts, overrides: CauseOverrides | None = None) -> Outcome:
    raise NotImplementedError
