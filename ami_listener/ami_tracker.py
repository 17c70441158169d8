"""Correlate AMI events into facts about our attempts (no I/O, no clock: ``at`` is passed).

Every attempt is registered with ``expect()`` before its Originate (or call file) goes out.
Channels are tied to it by, in order of strength: the ChannelId we chose (its Uniqueid),
the Linkedid of a root channel of ours (every leg of the call shares it), our variables in
VarSet (``<prefix>ATTEMPT_ID``, or ``<prefix>CALL_ID``: at most one live attempt per call),
the OriginateResponse Uniqueid, and links between channels: the two halves of a Local
channel (LocalBridge, or the ``;1``/``;2`` name) and Dial legs (DialBegin).

Events come in any order across channels (transcripts README point 1), so every fact is
kept per channel and is monotonic (a flag once set stays set), channels not yet known to be
ours are kept (bounded) until they are, and the outcome is computed only at the end from
the FAR-END leg: the non-Local channel that answered first, else the last non-Local one,
else the deepest Local ``;2`` half (README point 4: ``;1`` often ends with cause 0).
An attempt ends when every channel it had is gone (a Local half implies its other half)
and the OriginateResponse has come. One that never got a channel (unknown technology,
unregistered peer, a lost Originate) is ended by ``expire()``, which the listener calls
every second or so: a failed OriginateResponse can overtake its channel's first events.
The attempts and the indexes that tie channels to them live in ``ami_tracker_attempts``; the
channels themselves (orphans, Local halves, links, the far end) in ``ami_channels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .ami_channels import Channel, ChannelTable, age_key, apply_channel_event, as_int, far_end, text
from .ami_tracker_attempts import AttemptTable, TrackedAttempt
from .core.outcomes import AttemptFacts


@dataclass(frozen=True, slots=True)
class Ringing:
    attempt_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Answered:
    attempt_id: str
    at: datetime
    uniqueid: str | None
    """The originated (root) channel: the one to hang up to end the call."""


@dataclass(frozen=True, slots=True)
class Finished:
    attempt_id: str
    at: datetime
    facts: AttemptFacts
    uniqueid: str | None
    detail: str | None = None
    """Why there are no facts: Asterisk's refusal message, or ``no AMI event``."""


Update = Ringing | Answered | Finished


class AttemptTracker:
    def __init__(
        self,
        *,
        variable_prefix: str = "AUTORETRY_",
        amd_event: str = "AutoretryAMD",
        report_event: str = "AutoretryReport",
    ) -> None:
        self._var_attempt_id = f"{variable_prefix}ATTEMPT_ID"
        self._var_call_id = f"{variable_prefix}CALL_ID"
        self._var_attempt = f"{variable_prefix}ATTEMPT"
        self._amd_event = amd_event
        self._report_event = report_event
        self._chans = ChannelTable()
        self._attempts = AttemptTable(
            self._chans,
            var_attempt_id=self._var_attempt_id,
            var_call_id=self._var_call_id,
            var_attempt=self._var_attempt,
        )

    @property
    def channels_tracked(self) -> int:
        """Channels remembered, ours or not yet (memory check)."""
        return len(self._chans)

    # ---- registration -------------------------------------------------------------

    def expect(
        self,
        attempt_id: str,
        *,
        call_id: str,
        attempt_number: int,
        channel_id: str | None,
        action_id: str | None,
        at: datetime,
    ) -> None:
        """Register an attempt before its Originate goes out. ``action_id=None``: no
        OriginateResponse will come (call file, synchronous originate)."""
        self._attempts.add(
            TrackedAttempt(attempt_id, call_id, attempt_number, channel_id, action_id, at)
        )

    def refused(self, attempt_id: str, message: str, at: datetime) -> Finished:
        """The Originate action got an Error reply: no channel was or will be created."""
        attempt = self._attempts.get(attempt_id)
        root = attempt.root if attempt else None
        self.forget(attempt_id)
        return Finished(attempt_id, at, AttemptFacts(), root, detail=message)

    def expire(
        self,
        now: datetime,
        older_than: timedelta,
        *,
        failed_grace: timedelta = timedelta(seconds=2),
    ) -> list[Finished]:
        """Finish attempts that still have no channel: registered ``older_than`` ago and
        no event at all, or whose Originate failed ``failed_grace`` ago (unknown technology,
        unregistered peer). Call it every second or so. Also forget channels not ours that
        were last seen ``older_than`` ago."""
        done = []
        for attempt in list(self._attempts):
            if attempt.channels:
                continue
            if attempt.responded_at is not None:
                if attempt.originate_ok or attempt.responded_at > now - failed_grace:
                    continue
                detail = None
            elif attempt.expected_at <= now - older_than:
                detail = "no AMI event"
            else:
                continue
            facts = self._facts(attempt, [], None)
            done.append(Finished(attempt.attempt_id, now, facts, None, detail=detail))
            self.forget(attempt.attempt_id)
        cutoff = now - older_than
        self._chans.drop_orphans(cutoff)
        return done

    def live_uniqueids(self) -> dict[str, frozenset[str]]:
        """attempt id -> Uniqueids of its channels not yet hung up (for reconcile)."""
        return {
            a.attempt_id: frozenset(u for u in a.channels if not self._chans[u].gone)
            for a in self._attempts
        }

    def forget(self, attempt_id: str) -> None:
        self._attempts.forget(attempt_id)

    # ---- events -------------------------------------------------------------------

    def feed(self, msg: Mapping[str, str], at: datetime) -> list[Update]:
        name = msg.get("Event")
        touched: set[str] = set()
        if name == "OriginateResponse":
            self._originate_response(msg, at, touched)
        elif name == "UserEvent" and msg.get("UserEvent") == self._report_event:
            self._reported(msg, touched)
        else:
            chans = self._chans.of_event(msg, at)
            if not chans:
                return []
            self._apply(name, msg, chans, touched)
            for chan in chans:
                self._attempts.attribute(chan, touched)
        return self._updates(touched, at)

    def _apply(
        self, name: str | None, msg: Mapping[str, str], chans: list[Channel], touched: set[str]
    ) -> None:
        apply_channel_event(name, msg, chans)
        first = chans[0]
        if name == "VarSet":
            variable = (msg.get("Variable") or "").lstrip("_")
            if variable.startswith((self._var_call_id, self._var_attempt)):
                first.variables[variable] = msg.get("Value") or ""
        elif name == "UserEvent" and msg.get("UserEvent") == self._amd_event:
            amd = (text(msg, "AMDSTATUS"), text(msg, "AMDCAUSE"))
            attempt_id = text(msg, self._var_attempt_id) or first.attempt_id
            attempt = self._attempts.get(attempt_id) if attempt_id else None
            if attempt is None:
                first.amd = amd  # kept with the channel until we learn whose it is
            else:
                attempt.amd_status, attempt.amd_cause = amd
                touched.add(attempt.attempt_id)

    def _reported(self, msg: Mapping[str, str], touched: set[str]) -> None:
        """The dialplan's report hook (call files' ``failed``/``h`` extensions). Used only
        when we saw no channel of the attempt: where the AMI user receives no call events."""
        attempt_id = text(msg, self._var_attempt_id)
        attempt = self._attempts.get(attempt_id) if attempt_id else None
        if attempt is None or attempt.channels:
            return
        answered = msg.get("DIALSTATUS") == "ANSWER" or msg.get("HOOK") == "h"
        attempt.report = AttemptFacts(
            answered=answered,
            cause=as_int(text(msg, "HANGUPCAUSE")),
            dial_status=text(msg, "DIALSTATUS"),
            originate_reason=as_int(text(msg, "REASON")),
        )
        touched.add(attempt.attempt_id)

    def _originate_response(self, msg: Mapping[str, str], at: datetime, touched: set[str]) -> None:
        attempt = self._attempts.by_action(msg.get("ActionID") or "")
        if attempt is None:
            return
        attempt.responded_at = at
        attempt.originate_ok = msg.get("Response") == "Success"
        attempt.originate_reason = as_int(text(msg, "Reason"))
        touched.add(attempt.attempt_id)
        uniqueid = text(msg, "Uniqueid")
        if uniqueid is not None:
            attempt.root = attempt.root or uniqueid
            chan = self._chans.channel(uniqueid, at, text(msg, "Channel"), None)
            chan.up |= attempt.originate_ok
            self._attempts.attach(chan, attempt, touched)

    # ---- outcome ------------------------------------------------------------------

    def _updates(self, touched: set[str], at: datetime) -> list[Update]:
        updates: list[Update] = []
        for attempt_id in sorted(touched):
            attempt = self._attempts.get(attempt_id)
            if attempt is None:
                continue
            chans = [self._chans[u] for u in attempt.channels]
            far = far_end(chans)
            if not attempt.ringing_sent and any(c.ringing or c.up for c in chans):
                attempt.ringing_sent = True
                updates.append(Ringing(attempt_id, at))
            if not attempt.answered_sent and far is not None and far.up:
                attempt.answered_sent = True
                updates.append(Answered(attempt_id, at, attempt.root))
            if self._is_over(attempt, chans):
                facts = self._facts(attempt, chans, far)
                updates.append(Finished(attempt_id, at, facts, attempt.root))
                self.forget(attempt_id)
        return updates

    def _is_over(self, attempt: TrackedAttempt, chans: list[Channel]) -> bool:
        if attempt.action_id is not None and attempt.responded_at is None:
            return False
        if not chans:
            # A failed OriginateResponse may overtake the events of the channel it is about
            # (they take another path inside Asterisk), and without a ChannelId a channel
            # is ours only once its VarSet came: "no channel at all" is expire()'s call,
            # unless our report hook told us how it ended.
            return attempt.report is not None
        for chan in chans:
            if not chan.gone:
                return False
            peer = chan.local_peer
            if peer is not None and self._chans.named(peer) not in attempt.channels:
                return False  # the other half exists; we have not heard of it yet
        return True

    @staticmethod
    def _facts(attempt: TrackedAttempt, chans: list[Channel], far: Channel | None) -> AttemptFacts:
        if far is None and attempt.report is not None:
            return attempt.report
        dial_status = far.dial_status if far is not None else None
        if dial_status is None:
            dialed = [c for c in chans if c.dial_status is not None]
            if dialed:
                dial_status = max(dialed, key=lambda c: age_key(c.uniqueid)).dial_status
        trunk = None
        if far is not None and not far.is_local and "/" in far.name:
            trunk = far.name.split("/", 1)[1].rpartition("-")[0] or None
        return AttemptFacts(
            answered=far is not None and far.up,
            reached_ringing=any(c.ringing or c.up for c in chans),  # same rule as Ringing
            cause=far.cause if far else None,
            cause_txt=far.cause_txt if far else None,
            tech_cause=far.tech_cause if far else None,
            dial_status=dial_status,
            originate_reason=attempt.originate_reason,
            amd_status=attempt.amd_status,
            amd_cause=attempt.amd_cause,
            trunk=trunk,
        )
